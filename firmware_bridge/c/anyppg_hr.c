/* anyppg_hr.c: see anyppg_hr.h for the definition and the API.
 *
 * Cost per window: (candidates rounded up to 8) x ANYPPG_WINDOW_LEN x about 3.75 instructions
 * on a Cortex-M4F (three float operations per candidate and sample, the int8 load and convert
 * shared by the 8 candidates of a pass), plus a few hundred per candidate for its sines, log,
 * exp and weight: 448 k for 81 candidates (radius 40 bpm) over 1250 samples, measured by
 * `anyppg mcu`. No state, no tables; stack: ANYPPG_HR_REFINE_MAX_USED floats and a few dozen.
 *
 * Why Reinsch: the plain Goertzel recurrence s[n] = x[n] + 2 cos(w) s[n-1] - s[n-2] has, at
 * w = 2 pi (30..230 bpm / 60) / 125 Hz, poles 0.025 to 0.19 from z = 1, and its rounding errors
 * grow with 1 / sin(w)^2: in float32 over 1250 int8 samples, errors up to 2.7e-4 of the peak
 * power (100 times Reinsch's, emulated on synthetic pulse windows). Reinsch's form carries
 * d[n] = s[n] - s[n-1] instead, with the small coefficient -4 sin^2(w / 2) computed directly
 * (never as 2 cos(w) - 2), and stays accurate at every w here.
 */
#include "anyppg_hr.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

#if ANYPPG_HAS_HR_REFINE

#if ANYPPG_HR_REFINE_MAX_USED < 1
#error "ANYPPG_HR_REFINE_MAX_USED must be at least 1"
#endif

#define ANYPPG_HR_BLOCK 8 /* candidates per pass over the window: ANYPPG_HR_FOR_BLOCK */
#if defined(__GNUC__)
#define ANYPPG_HR_NOINLINE __attribute__((noinline))
#else
#define ANYPPG_HR_NOINLINE
#endif
#define ANYPPG_HR_LN2_HI 0.693145752f    /* 0x3f317200: k * LN2_HI is exact for |k| < 2^9 */
#define ANYPPG_HR_LN2_LO 1.42860677e-06f
#define ANYPPG_HR_INV_LN2 1.44269502f

/* Candidate k in bpm, one rounding of BIN_MIN + k * STEP. */
static float anyppg_hr_candidate(int k)
{
    return fmaf((float)k, ANYPPG_HR_REFINE_STEP_BPM, ANYPPG_HR_BIN_MIN_BPM);
}

/* sin t for 0 <= t <= pi / 2 (settings.py guarantees the range): the Taylor polynomial to
 * t^13, whose remainder is below float32's resolution there. */
static ANYPPG_HR_NOINLINE float anyppg_hr_sin(float t)
{
    const float t2 = t * t;
    float p = 1.6059044e-10f;                  /* 1/13! */
    p = fmaf(p, t2, -2.5052108e-08f);          /* -1/11! */
    p = fmaf(p, t2, 2.7557319e-06f);           /* 1/9! */
    p = fmaf(p, t2, -1.9841270e-04f);          /* -1/7! */
    p = fmaf(p, t2, 8.3333333e-03f);           /* 1/5! */
    p = fmaf(p, t2, -1.6666667e-01f);          /* -1/3! */
    return fmaf(t * t2, p, t);
}

/* ln r for 0 < r <= 1: r = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m-1)/(m+1)). */
static ANYPPG_HR_NOINLINE float anyppg_hr_log(float r)
{
    int e;
    float m = frexpf(r, &e);
    if (m < 0.70710678f) {
        m = m + m;
        e -= 1;
    }
    const float t = (m - 1.0f) / (m + 1.0f);
    const float t2 = t * t;
    float p = 0.11111111f;                      /* 1/9 */
    p = fmaf(p, t2, 0.14285714f);               /* 1/7 */
    p = fmaf(p, t2, 0.2f);
    p = fmaf(p, t2, 0.33333333f);
    const float lm = fmaf(2.0f * t * t2, p, 2.0f * t);
    const float fe = (float)e;
    return fmaf(fe, ANYPPG_HR_LN2_HI, fmaf(fe, ANYPPG_HR_LN2_LO, lm));
}

/* exp y for y <= 0 (0 below -87, where float32 runs out): 2^k exp(r), |r| <= ln(2) / 2. */
static ANYPPG_HR_NOINLINE float anyppg_hr_exp(float y)
{
    if (!(y > -87.0f)) {
        return 0.0f;
    }
    const int k = (int)(y * ANYPPG_HR_INV_LN2 - 0.5f); /* y <= 0: truncation rounds to nearest */
    const float kf = (float)k;
    const float r = fmaf(-kf, ANYPPG_HR_LN2_LO, fmaf(-kf, ANYPPG_HR_LN2_HI, y));
    float p = 2.4801587e-05f;                   /* 1/8! */
    p = fmaf(p, r, 1.9841270e-04f);             /* 1/7! */
    p = fmaf(p, r, 1.3888889e-03f);
    p = fmaf(p, r, 8.3333333e-03f);
    p = fmaf(p, r, 4.1666667e-02f);
    p = fmaf(p, r, 0.16666667f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    union {
        float f;
        uint32_t u;
    } two_k = {.u = (uint32_t)(k + 127) << 23}; /* 2^k, k in [-126, 0] */
    return p * two_k.f;
}

/* |g - hr| <= radius, decided on the exact difference (edge_runtime's float64 is exact here):
 * the float32 difference is monotone, so only a rounded difference equal to the radius needs
 * its rounding error (Knuth's two-sum). */
static int anyppg_hr_near(float g, float hr)
{
    const float d = g - hr;
    const float a = fabsf(d);
    if (a != ANYPPG_HR_REFINE_RADIUS_BPM) {
        return a < ANYPPG_HR_REFINE_RADIUS_BPM;
    }
    const float bv = d - g;
    const float e = (g - (d - bv)) + (-hr - bv);
    return d > 0.0f ? e <= 0.0f : e >= 0.0f;
}

/* The block's candidates, as macro arguments: each keeps d, s and lam in registers. */
#define ANYPPG_HR_FOR_BLOCK(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define ANYPPG_HR_DECLARE(i) const float l##i = lam[i]; float d##i = 0.0f, s##i = 0.0f;
/* One Reinsch step: d += x + lam s (the add, then one fused multiply-add), s += d. */
#define ANYPPG_HR_STEP(i) d##i = fmaf(l##i, s##i, d##i + x); s##i = s##i + d##i;
#define ANYPPG_HR_STORE(i) d[i] = d##i; s[i] = s##i;

/* |DFT|^2 of the window at candidates k0 .. k0 + n - 1 (n <= ANYPPG_HR_BLOCK; the block is
 * padded with the last one) into p[0 .. n - 1]. P = (d - mu s)^2 + (sin(w) s)^2 with
 * mu = 2 sin^2(w / 2), s and d after the last sample. */
static ANYPPG_HR_NOINLINE void anyppg_hr_power(const int8_t *in, int32_t zero_point, int k0, int n, float *p)
{
    float lam[ANYPPG_HR_BLOCK], mu[ANYPPG_HR_BLOCK], sw[ANYPPG_HR_BLOCK];
    for (int i = 0; i < ANYPPG_HR_BLOCK; ++i) {
        const float t = anyppg_hr_candidate(k0 + (i < n ? i : n - 1)) * ANYPPG_HR_REFINE_HALF_RAD_PER_BPM;
        const float sn = anyppg_hr_sin(t);
        const float s2 = sn * sn;
        lam[i] = -4.0f * s2;
        mu[i] = 2.0f * s2;
        sw[i] = anyppg_hr_sin(t + t);
    }
    ANYPPG_HR_FOR_BLOCK(ANYPPG_HR_DECLARE)
    for (int j = 0; j < ANYPPG_WINDOW_LEN; ++j) {
        const float x = (float)((int32_t)in[j] - zero_point);
        ANYPPG_HR_FOR_BLOCK(ANYPPG_HR_STEP)
    }
    float s[ANYPPG_HR_BLOCK], d[ANYPPG_HR_BLOCK];
    ANYPPG_HR_FOR_BLOCK(ANYPPG_HR_STORE)
    for (int i = 0; i < n; ++i) {
        const float re = fmaf(-mu[i], s[i], d[i]);
        const float im = sw[i] * s[i];
        p[i] = fmaf(re, re, im * im);
    }
}

/* The weighted mean of the candidates k0 .. k0 + n - 1 (n >= 1), whose powers p the call
 * overwrites with log-weights; hr where the window has no power at any of them. */
static float anyppg_hr_mean(float *p, int k0, int n, float hr)
{
    float pmax = 0.0f;
    for (int i = 0; i < n; ++i) {
        pmax = p[i] > pmax ? p[i] : pmax;
    }
    if (!(pmax > 0.0f) || !isfinite(pmax)) {
        return hr;
    }
    float lmax = -FLT_MAX;
    for (int i = 0; i < n; ++i) {
        const float z = (anyppg_hr_candidate(k0 + i) - hr) / ANYPPG_HR_REFINE_SIGMA_BPM;
        const float lp = p[i] > 0.0f ? ANYPPG_HR_REFINE_POWER * anyppg_hr_log(p[i] / pmax) : -FLT_MAX;
        p[i] = p[i] > 0.0f ? fmaf(-0.5f * z, z, lp) : -FLT_MAX;
        lmax = p[i] > lmax ? p[i] : lmax;
    }
    /* exp(l - lmax): the same ratio as exp(l), and never all zero in float32 */
    float num = 0.0f, den = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float w = anyppg_hr_exp(p[i] - lmax);
        num = fmaf(w, anyppg_hr_candidate(k0 + i), num);
        den = den + w;
    }
    return num / den;
}

static float anyppg_hr_refined(const int8_t *in, int32_t zero_point, float hr)
{
    if (!isfinite(hr)) {
        return hr;
    }
    int first = -1, last = -1;
    for (int k = 0; k < ANYPPG_HR_REFINE_N_CANDIDATES; ++k) {
        if (anyppg_hr_near(anyppg_hr_candidate(k), hr)) {
            first = first < 0 ? k : first;
            last = k;
        }
    }
    if (first < 0) {
        return hr;
    }
    const int n = last - first + 1 < ANYPPG_HR_REFINE_MAX_USED ? last - first + 1 : ANYPPG_HR_REFINE_MAX_USED;
    float p[ANYPPG_HR_REFINE_MAX_USED];
    for (int j = 0; j < n; j += ANYPPG_HR_BLOCK) {
        anyppg_hr_power(in, zero_point, first + j, n - j < ANYPPG_HR_BLOCK ? n - j : ANYPPG_HR_BLOCK, p + j);
    }
    return anyppg_hr_mean(p, first, n, hr);
}

#endif /* ANYPPG_HAS_HR_REFINE */

int anyppg_hr_refine(const int8_t *in, int32_t zero_point, float hr_bpm, float *hr_out)
{
    if (in == NULL || hr_out == NULL) {
        return ANYPPG_HR_ERR_NULL;
    }
#if ANYPPG_HAS_HR_REFINE
    *hr_out = anyppg_hr_refined(in, zero_point, hr_bpm);
#else
    (void)zero_point; /* no refinement in this model's sidecar: the network's hr as it is */
    *hr_out = hr_bpm;
#endif
    return ANYPPG_HR_OK;
}

#if defined(ANYPPG_OUTPUT_HR_SCALE) && defined(ANYPPG_FLAGS_LOW_QUALITY) /* headers since anyppg_hr_show */
#if ANYPPG_HAS_AF_BEATS
/* The beat rate of the int8 window (edge_runtime/af_beats.py, same integers, same float32
 * threshold and quotient): 1 with *hr set, 0 under three peaks. The level is an order statistic
 * from a 256-bin histogram (512 bytes of stack), so no sort. */
static int anyppg_hr_beats(const int8_t *in, int32_t zero_point, float *hr)
{
    uint16_t hist[256] = {0};
    for (int n = 0; n < ANYPPG_WINDOW_LEN; ++n) {
        hist[(int32_t)in[n] + 128]++;
    }
    int32_t v = 0, seen = 0;
    for (; v < 255; ++v) {
        seen += hist[v];
        if (seen > ANYPPG_AF_BEATS_LEVEL_RANK) {
            break;
        }
    }
    const float thr = ANYPPG_AF_BEATS_FRACTION * (float)(v - 128 - zero_point);
    int32_t first = -1, last = -1, count = 0;
    for (int32_t i = 1; i < ANYPPG_WINDOW_LEN - 1; ++i) {
        const int32_t x = (int32_t)in[i];
        if (!(x > (int32_t)in[i - 1] && x >= (int32_t)in[i + 1] && (float)(x - zero_point) > thr)) {
            continue;
        }
        if (count > 0 && i - last < ANYPPG_AF_BEATS_MIN_GAP) { /* too close: keep the higher */
            if (x > (int32_t)in[last]) {
                first = count == 1 ? i : first;
                last = i;
            }
            continue;
        }
        first = count == 0 ? i : first;
        last = i;
        count++;
    }
    if (count < 3) {
        return 0;
    }
    *hr = ANYPPG_AF_BEATS_60FS * (float)(count - 1) / (float)(last - first);
    return 1;
}
#endif

/* a function, not an inline comparison: a threshold of -128 or 128 (every code passes / none
 * does) is a constant comparison that -Wtype-limits would reject */
static int anyppg_hr_below(int8_t q, int32_t min_q)
{
    return (int32_t)q < min_q;
}

int anyppg_hr_show(uint8_t flags, int8_t quality_logit, int8_t hr_confidence, int8_t hr,
                   int8_t af_logit, const int8_t *in, int32_t zero_point, anyppg_shown_t *shown)
{
    if (in == NULL || shown == NULL) {
        return ANYPPG_HR_ERR_NULL;
    }
#if !ANYPPG_HAS_AF_BEATS
    (void)af_logit;
#endif
    shown->show = 0u;
    shown->withheld = 0u;
    shown->hr_bpm = NAN;
    if ((flags & ANYPPG_FLAGS_LOW_QUALITY) != 0u) {
        shown->withheld = ANYPPG_WITHHELD_FLAGS;
    } else if (anyppg_hr_below(quality_logit, ANYPPG_SHOW_QUALITY_LOGIT_MIN_Q)) {
        shown->withheld = ANYPPG_WITHHELD_MODEL_QUALITY;
    } else if (anyppg_hr_below(hr_confidence, ANYPPG_SHOW_HR_CONFIDENCE_MIN_Q)) {
        shown->show = ANYPPG_SHOW_VALUES;
        shown->withheld = ANYPPG_WITHHELD_HR_CONFIDENCE;
    } else {
        /* (hr - zero point) is a small integer: one float32 rounding, as edge_runtime's */
        float bpm = ANYPPG_OUTPUT_HR_SCALE * (float)((int32_t)hr - ANYPPG_OUTPUT_HR_ZERO_POINT);
        if ((flags & ANYPPG_FLAG_TOO_SHORT) == 0u) { /* a padded window's spectrum is a comb */
#if ANYPPG_HAS_AF_BEATS
            if (anyppg_hr_below(af_logit, ANYPPG_AF_BEATS_AF_LOGIT_MIN_Q) || !anyppg_hr_beats(in, zero_point, &bpm)) {
                (void)anyppg_hr_refine(in, zero_point, bpm, &bpm);
            }
#else
            (void)anyppg_hr_refine(in, zero_point, bpm, &bpm);
#endif
        }
        shown->show = ANYPPG_SHOW_VALUES | ANYPPG_SHOW_HR;
        shown->hr_bpm = bpm;
    }
    return ANYPPG_HR_OK;
}
#endif
