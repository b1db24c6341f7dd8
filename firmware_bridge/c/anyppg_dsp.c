/* anyppg_dsp.c: see anyppg_dsp.h for the API and the definition it follows.
 *
 * Arithmetic is float32 throughout (the Cortex-M4F has a single-precision FPU only). Two
 * choices keep it close to edge_runtime's float64 on real sensors, whose DC level is often
 * thousands of times their pulse amplitude:
 *  - the resampler works on samples minus the stream's first sample (`offset`), and adds back
 *    offset * (sum of the phase's taps - 1), which is the same sum in exact arithmetic;
 *  - a window is centred on its mean before the band-pass, which removes a constant exactly
 *    (zero gain at DC, steady-state initial conditions), so the result is unchanged.
 */
#include "anyppg_dsp.h"

#include <math.h>
#include <string.h>

#define ANYPPG_DSP_MAGIC 0x41505047u /* "APPG" */
#define ANYPPG_RUN_OPEN INT64_MAX
#define ANYPPG_HIST_MASK ((uint32_t)ANYPPG_RS_HIST - 1u)

#if (ANYPPG_RS_HIST & (ANYPPG_RS_HIST - 1)) != 0 || ANYPPG_RS_HIST < ANYPPG_RS_TAPS + 3 || \
    ANYPPG_RS_HIST < ANYPPG_RS_HALF / ANYPPG_RS_UP + 4
#error "ANYPPG_RS_HIST must be a power of two covering the taps and the missing-sample check"
#endif

static uint32_t hist_slot(int64_t i)
{
    return (uint32_t)((uint64_t)i) & ANYPPG_HIST_MASK;
}

static int valid(const anyppg_dsp_t *s)
{
    return s != NULL && s->magic == ANYPPG_DSP_MAGIC;
}

int anyppg_dsp_init(anyppg_dsp_t *s, float sensor_fs_hz)
{
    if (s == NULL) {
        return ANYPPG_DSP_ERR_NULL;
    }
    memset(s, 0, sizeof(*s));
    /* The taps are designed for one rate at build time: anything else would be silently
     * wrong, so it is refused (the comparison is false for NaN too). */
    if (!(fabsf(sensor_fs_hz - ANYPPG_SENSOR_FS_HZ) <= 1e-6f * ANYPPG_SENSOR_FS_HZ)) {
        return ANYPPG_DSP_ERR_RATE;
    }
    s->next_b = ANYPPG_RS_HALF / ANYPPG_RS_UP;
    s->next_p = ANYPPG_RS_HALF % ANYPPG_RS_UP;
    s->magic = ANYPPG_DSP_MAGIC;
    return ANYPPG_DSP_OK;
}

/* ------------------------------------------------------------------ constant runs */
/* edge_runtime.preprocess.constant_runs on the sensor's samples: a run of exactly equal
 * values of at least ANYPPG_FLAT_RUN_IN samples. Only long runs are kept, as intervals. */
static void forget_old_runs(anyppg_dsp_t *s)
{
    /* The earliest input any window still to come can map to. */
    int64_t oldest = (s->next_start * ANYPPG_RS_DOWN) / ANYPPG_RS_UP - 2;
    uint32_t keep = 0;
    for (uint32_t k = 0; k < s->n_runs; k++) {
        if (s->runs[k].end > oldest) {
            s->runs[keep++] = s->runs[k];
        }
    }
    s->n_runs = keep;
    if (s->n_runs == ANYPPG_FLAT_RUNS_MAX) { /* cannot happen when sized by settings.py */
        memmove(&s->runs[0], &s->runs[1], (ANYPPG_FLAT_RUNS_MAX - 1) * sizeof(s->runs[0]));
        s->n_runs--;
    }
}

static void track_run(anyppg_dsp_t *s, float v)
{
    int64_t i = s->n_in;
    if (i > 0 && v == s->prev_raw) { /* NaN never equals; +-inf equals itself, as in numpy */
        if (i - s->run_start + 1 == ANYPPG_FLAT_RUN_IN) {
            forget_old_runs(s);
            s->runs[s->n_runs].start = s->run_start;
            s->runs[s->n_runs].end = ANYPPG_RUN_OPEN;
            s->n_runs++;
        }
    } else {
        if (s->n_runs > 0 && s->runs[s->n_runs - 1].end == ANYPPG_RUN_OPEN) {
            s->runs[s->n_runs - 1].end = i;
        }
        s->run_start = i;
    }
    s->prev_raw = v;
}

/* ------------------------------------------------------------------ resampled ring */
static void ring_append(anyppg_dsp_t *s, float v, uint8_t miss)
{
    /* Writing sample n_out overwrites n_out - RING_LEN: if the pending window still needs it,
     * the app has not polled in time and that window is lost (the oldest data goes first). */
    while (s->n_out - (int64_t)ANYPPG_RING_LEN >= s->next_start) {
        s->next_start += ANYPPG_HOP_LEN;
        s->windows_dropped++;
        s->pending_dropped++;
    }
    s->ring[s->ring_pos] = v;
    s->ring_miss[s->ring_pos] = miss;
    s->ring_pos = (s->ring_pos + 1u == ANYPPG_RING_LEN) ? 0u : s->ring_pos + 1u;
    s->n_out++;
}

/* Emit every output whose last input has arrived (resample.py steps 4-6). */
static void rs_emit(anyppg_dsp_t *s)
{
    while (s->next_b < s->n_avail && !(s->finished && s->n_out >= s->total_out)) {
        /* hist holds every input twice (slot and slot + HIST): x[b - j] is base[-j] */
        uint32_t slot = hist_slot(s->next_b) + ANYPPG_RS_HIST;
        const float *base = &s->hist[slot];
        const float *h = &anyppg_rs_taps[s->next_p * ANYPPG_RS_TAPS];
        float acc = 0.0f;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#endif
        for (uint32_t j = 0; j < ANYPPG_RS_TAPS; j++) {
            acc = acc + h[j] * base[-(int32_t)j];
        }
        acc = acc + s->offset * anyppg_rs_gain_m1[s->next_p];
        /* missing: an input within one input period of the output time, i.e. x[i] for
         * i = q - 1 + (r > 0) .. q + 1, which lie d + 2 - (r > 0) .. d back from b */
        int32_t d = (int32_t)(s->next_b - (s->next_q + 1));
        const uint8_t *mb = &s->hist_miss[slot - (uint32_t)d];
        uint8_t miss = mb[0] | mb[-1] | (s->next_r > 0u ? 0u : mb[-2]);
        ring_append(s, acc, miss);
        s->next_p += ANYPPG_RS_DOWN;
        s->next_b += s->next_p / ANYPPG_RS_UP;
        s->next_p %= ANYPPG_RS_UP;
        s->next_r += ANYPPG_RS_DOWN;
        s->next_q += s->next_r / ANYPPG_RS_UP;
        s->next_r %= ANYPPG_RS_UP;
    }
}

static void rs_store(anyppg_dsp_t *s, float rel, uint8_t miss)
{
    uint32_t slot = hist_slot(s->n_avail);
    s->hist[slot] = s->hist[slot + ANYPPG_RS_HIST] = rel;
    s->hist_miss[slot] = s->hist_miss[slot + ANYPPG_RS_HIST] = miss;
    s->n_avail++;
}

static void push_one(anyppg_dsp_t *s, float v)
{
    track_run(s, v);
    uint8_t miss = isfinite(v) ? 0u : 1u;
    float clean = miss ? s->last_finite : v;
    if (!miss) {
        s->last_finite = v;
    }
    if (s->n_in == 0) {
        /* history x[i < 0] = x[0]; the identity keeps samples as they are */
        s->offset = ANYPPG_RS_IDENTITY ? 0.0f : clean;
        for (uint32_t k = 0; k < 2u * ANYPPG_RS_HIST; k++) {
            s->hist[k] = clean - s->offset;
            s->hist_miss[k] = miss;
        }
    }
    float rel = clean - s->offset;
    s->held = rel;
    s->held_miss = miss;
    s->n_in++;
    if (ANYPPG_RS_IDENTITY) {
        s->n_avail = s->n_in;
        ring_append(s, rel, miss);
        return;
    }
    rs_store(s, rel, miss);
    rs_emit(s);
}

int anyppg_dsp_push(anyppg_dsp_t *s, const float *x, size_t n)
{
    if (s == NULL || (x == NULL && n > 0u)) {
        return ANYPPG_DSP_ERR_NULL;
    }
    if (!valid(s)) {
        return ANYPPG_DSP_ERR_STATE;
    }
    if (s->finished) {
        return ANYPPG_DSP_ERR_FINISHED;
    }
    for (size_t i = 0; i < n; i++) {
        push_one(s, x[i]);
    }
    return ANYPPG_DSP_OK;
}

int anyppg_dsp_finish(anyppg_dsp_t *s, int pad_short)
{
    if (s == NULL) {
        return ANYPPG_DSP_ERR_NULL;
    }
    if (!valid(s)) {
        return ANYPPG_DSP_ERR_STATE;
    }
    if (s->finished) {
        return ANYPPG_DSP_OK;
    }
    s->finished = 1;
    s->pad_short = pad_short != 0;
    if (ANYPPG_RS_IDENTITY || s->n_in == 0) {
        s->total_out = s->n_in;
        return ANYPPG_DSP_OK;
    }
    /* resample.py step 7: hold the last sample until ceil(N * up / down) outputs exist */
    s->total_out = (s->n_in * ANYPPG_RS_UP + ANYPPG_RS_DOWN - 1) / ANYPPG_RS_DOWN;
    while (s->n_out < s->total_out) {
        rs_store(s, s->held, s->held_miss);
        rs_emit(s);
    }
    return ANYPPG_DSP_OK;
}

/* ------------------------------------------------------------------ one window */
/* Outputs n whose mapped inputs floor(t), ceil(t), t = n * down / up, touch [start, end):
 * n in [first, last). (edge_runtime.preprocess.map_mask, with exact rational t.) */
static void run_outputs(const anyppg_dsp_run_t *r, int64_t *first, int64_t *last)
{
    *first = r->start == 0 ? 0 : ((r->start - 1) * ANYPPG_RS_UP) / ANYPPG_RS_DOWN + 1;
    *last = r->end == ANYPPG_RUN_OPEN
                ? INT64_MAX
                : (r->end * ANYPPG_RS_UP + ANYPPG_RS_DOWN - 1) / ANYPPG_RS_DOWN;
}

/* Sum over the window's samples of the flat mask. A window of `n` samples [0, n) tiled to
 * ANYPPG_WINDOW_LEN counts each sample k L/n times, plus one if k < L mod n. */
static int64_t flat_count(const anyppg_dsp_t *s, int64_t start, int64_t n, int tiled)
{
    int64_t count = 0, prev_last = INT64_MIN;
    for (uint32_t k = 0; k < s->n_runs; k++) {
        int64_t a, b;
        run_outputs(&s->runs[k], &a, &b);
        if (a < prev_last) { /* adjacent runs share one output sample: count it once */
            a = prev_last;
        }
        prev_last = b;
        a = a > start ? a : start;
        b = b < start + n ? b : start + n;
        if (b <= a) {
            continue;
        }
        if (!tiled) {
            count += b - a;
        } else {
            int64_t rem = ANYPPG_WINDOW_LEN % n, lo = a < rem ? a : rem, hi = b < rem ? b : rem;
            count += (b - a) * (ANYPPG_WINDOW_LEN / n) + (hi - lo);
        }
    }
    return count;
}

/* scipy.signal.sosfilt over x[], in place, forwards (dir = 1) or backwards (dir = -1),
 * from the steady state of a constant input equal to the first sample (what sosfilt_zi
 * scaled by that sample gives). Fixed point: Q29 coefficients, 64-bit sums, direct form I
 * with first-order error feedback. float32 is not enough here: the 0.5 Hz high-pass has
 * poles within 0.012 of z = 1, where float32 coefficients and states move the output by
 * ~1e-4 of its range; these integers stay within ~1e-6 of scipy's float64 and give the
 * same bits on every target. |x| < 2^ANYPPG_BP_INPUT_BITS keeps every sum in 63 bits.
 * One section at a time over the whole window, so its state lives in registers. */
static void sosfilt_inplace(int32_t *x, int32_t n, int dir)
{
    const int64_t one = (int64_t)1 << 29;
    int32_t first = x[dir > 0 ? 0 : n - 1];
    for (int sct = 0; sct < ANYPPG_BP_SECTIONS; sct++) {
        const int32_t b0 = anyppg_bp_q29[sct][0], b1 = anyppg_bp_q29[sct][1];
        /* -a1, -a2: every term is then a multiply-accumulate (SMLAL on the M4) */
        const int32_t b2 = anyppg_bp_q29[sct][2], na1 = -anyppg_bp_q29[sct][3];
        const int32_t na2 = -anyppg_bp_q29[sct][4];
        int32_t x1 = first, x2 = first;
        first = (int32_t)(((int64_t)anyppg_bp_dc_q29[sct] * first) / one);
        int32_t y1 = first, y2 = first;
        int64_t err = 0;
        int32_t *p = dir > 0 ? x : x + n - 1;
        for (int32_t k = 0; k < n; k++, p += dir) {
            int32_t v = *p;
            int64_t acc = err;
            acc += (int64_t)b0 * v;
            acc += (int64_t)b1 * x1;
            acc += (int64_t)b2 * x2;
            acc += (int64_t)na1 * y1;
            acc += (int64_t)na2 * y2;
            /* floor(acc / 2^29); gcc and clang shift signed integers arithmetically */
            int32_t y = (int32_t)(acc >> 29);
            err = (int64_t)((uint64_t)acc & (uint64_t)(one - 1));
            x2 = x1;
            x1 = v;
            y2 = y1;
            y1 = y;
            *p = y;
        }
    }
}

/* round half away from zero (TFLite's rounding, C's roundf) for |v| < 2^31, inline: the
 * library call costs more than the rest of the quantisation on a Cortex-M4 */
static int32_t round_half_away(float v)
{
    int32_t t = (int32_t)v; /* toward zero */
    float frac = v - (float)t; /* exact */
    return t + (frac >= 0.5f ? 1 : 0) - (frac <= -0.5f ? 1 : 0);
}

static float mean_of(const float *x, int32_t n)
{
    float acc = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        acc = acc + x[i];
    }
    return acc / (float)n;
}

static float std_of(const float *x, int32_t n, float mean)
{
    float acc = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float d = x[i] - mean;
        acc = acc + d * d;
    }
    return sqrtf(acc / (float)n);
}

/* flat, clipping (edge_runtime.preprocess.quality_flags) on the raw window x (relative to
 * the stream offset), given its flat-mask count. */
static uint8_t raw_flags(const anyppg_dsp_t *s, const float *x, int64_t flat_n, float *mean)
{
    const int32_t L = ANYPPG_WINDOW_LEN;
    *mean = mean_of(x, L);
    float sd = std_of(x, L, *mean);
    int flat = (sd < ANYPPG_FLAT_REL_STD * (fabsf(s->offset + *mean) + 1.0f)) ||
               flat_n >= ANYPPG_FLAT_COUNT_MIN;
    float lo = x[0], hi = x[0];
    for (int32_t i = 1; i < L; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float range = hi - lo;
    float tol = 1e-9f * (range > 1e-12f ? range : 1e-12f);
    int32_t pinned = 0;
    for (int32_t i = 0; i < L; i++) {
        pinned += (x[i] <= lo + tol || x[i] >= hi - tol) ? 1 : 0;
    }
    uint8_t flags = flat ? ANYPPG_FLAG_FLAT : 0u;
    if (pinned >= ANYPPG_CLIP_COUNT_MIN && !flat) {
        flags |= ANYPPG_FLAG_CLIPPING;
    }
    return flags;
}

/* Band-pass (zero phase), z-score, amplitude check and int8 quantisation of ext's window. */
static uint8_t model_input(anyppg_dsp_t *s, float mean, anyppg_dsp_window_t *w)
{
    const int32_t L = ANYPPG_WINDOW_LEN, P = ANYPPG_BP_PADLEN, N = L + 2 * P;
    float *e = s->ext.f;
    for (int32_t i = 0; i < L; i++) {
        e[P + i] = e[P + i] - mean;
    }
    for (int32_t k = 1; k <= P; k++) { /* odd extension, as scipy's odd_ext */
        e[P - k] = 2.0f * e[P] - e[P + k];
        e[P + L - 1 + k] = 2.0f * e[P + L - 1] - e[P + L - 1 - k];
    }
    /* to integers: the largest sample just under 2^ANYPPG_BP_INPUT_BITS (a power-of-two
     * scale, so the conversion only rounds) */
    float peak = 0.0f;
    for (int32_t i = 0; i < N; i++) {
        float a = fabsf(e[i]);
        peak = a > peak ? a : peak;
    }
    int exponent = 0;
    if (isfinite(peak) && peak > 0.0f) {
        (void)frexpf(peak, &exponent);
    }
    float to_int = ldexpf(1.0f, ANYPPG_BP_INPUT_BITS - exponent);
    int finite = isfinite(peak) && isfinite(to_int);
    for (int32_t i = 0; i < N; i++) { /* in place: each float read before its int is written */
        s->ext.i[i] = finite ? round_half_away(e[i] * to_int) : 0;
    }
    sosfilt_inplace(s->ext.i, N, 1);
    sosfilt_inplace(s->ext.i, N, -1);
    float back = 1.0f / to_int;
    for (int32_t i = 0; i < N; i++) {
        e[i] = (float)s->ext.i[i] * back;
    }
    const float *f = e + P;
    float mu = mean_of(f, L);
    float sd = std_of(f, L, mu);
    float den = sd > ANYPPG_ZSCORE_EPS ? sd : ANYPPG_ZSCORE_EPS;
    uint8_t flags = 0;
    finite = finite && isfinite(den) && isfinite(mu);
    for (int32_t i = 0; i < L && finite; i++) {
        float z = (f[i] - mu) / den;
        finite = isfinite(z);
        w->z[i] = z;
        if (fabsf(z) > ANYPPG_MAX_ABS_Z) {
            flags = ANYPPG_FLAG_AMPLITUDE;
        }
    }
    if (!finite) { /* beyond float32's range: no number, and say why */
        memset(w->z, 0, sizeof(w->z));
        flags = ANYPPG_FLAG_AMPLITUDE;
    }
    for (int32_t i = 0; i < L; i++) {
        /* TFLite: round half away from zero of x / scale, plus the zero point, saturated */
        float v = w->z[i] / ANYPPG_INPUT_PPG_SCALE;
        v = v < -512.0f ? -512.0f : (v > 512.0f ? 512.0f : v);
        int32_t q = round_half_away(v) + ANYPPG_INPUT_PPG_ZERO_POINT;
        w->q[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
    }
    return flags;
}

/* Preprocess the n resampled samples from `start` (tiled to a window when n < L). */
static void make_window(anyppg_dsp_t *s, int64_t start, int64_t n, anyppg_dsp_window_t *w)
{
    const int32_t L = ANYPPG_WINDOW_LEN, P = ANYPPG_BP_PADLEN;
    int tiled = n < L;
    uint32_t first = (uint32_t)(((int64_t)s->ring_pos + ANYPPG_RING_LEN - (s->n_out - start)) %
                                ANYPPG_RING_LEN);
    uint8_t miss = 0;
    int finite = 1;
    for (int32_t i = 0, k = 0; i < L; i++) {
        uint32_t idx = first + (uint32_t)k;
        idx = idx >= ANYPPG_RING_LEN ? idx - ANYPPG_RING_LEN : idx;
        float v = s->ring[idx];
        s->ext.f[P + i] = v;
        finite &= isfinite(v) ? 1 : 0;
        miss |= s->ring_miss[idx];
        k = (k + 1 == n) ? 0 : k + 1;
    }
    uint8_t flags;
    if (finite) {
        float mean;
        flags = raw_flags(s, s->ext.f + P, flat_count(s, start, n, tiled), &mean);
        flags |= model_input(s, mean, w);
    } else {
        /* samples near float32's limit (|x| ~ 1e38) overflowed the resampler: no number */
        memset(w->z, 0, sizeof(w->z));
        memset(w->q, (int)(int8_t)ANYPPG_INPUT_PPG_ZERO_POINT, sizeof(w->q));
        flags = ANYPPG_FLAG_AMPLITUDE;
    }
    if (miss) {
        flags |= ANYPPG_FLAG_NAN_GAP;
    }
    if (tiled) {
        flags |= ANYPPG_FLAG_TOO_SHORT;
    }
    w->flags = flags;
    w->start = start;
    w->dropped_before = s->pending_dropped;
    s->pending_dropped = 0;
}

int anyppg_dsp_poll(anyppg_dsp_t *s, anyppg_dsp_window_t *w)
{
    if (s == NULL || w == NULL) {
        return ANYPPG_DSP_ERR_NULL;
    }
    if (!valid(s)) {
        return ANYPPG_DSP_ERR_STATE;
    }
    if (s->finished && s->pad_short && s->next_start == 0 && s->total_out > 0 &&
        s->total_out < ANYPPG_WINDOW_LEN) {
        make_window(s, 0, s->total_out, w);
        s->next_start = ANYPPG_HOP_LEN; /* handed out: nothing more to come */
        return 1;
    }
    if (s->n_out < s->next_start + ANYPPG_WINDOW_LEN) {
        return 0;
    }
    make_window(s, s->next_start, ANYPPG_WINDOW_LEN, w);
    s->next_start += ANYPPG_HOP_LEN;
    return 1;
}
