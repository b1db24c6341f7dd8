/* int8 kernels of the generated inference: TFLite Micro's integer semantics, bit for bit.
 * See anyppg_nn.h for layouts and the folded-bias convention. */
#include "anyppg_nn.h"

#include <string.h>

#include "anyppg_fixedpoint.h"

#if defined(__ARM_FEATURE_DSP) && !defined(ANYPPG_NN_PORTABLE)
#include <arm_acle.h>
#define ANYPPG_NN_DSP 1
/* SXTB16 of bytes 1 and 3 (SXTB16 with its built-in ROR #8: one instruction) */
static inline uint32_t sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

static inline uint32_t rd32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);   /* one (unaligned) LDR on Cortex-M3 and later */
    return v;
}

static inline int8_t clamp8(int32_t v, int lo, int hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* TFLite's requantisation when the generator proved rq_fast (every shift in [-22, -1],
 * |acc| < 2^30), q = (m, 2^(e-1) + zp * 2^e): SaturatingRoundingDoublingHighMul(acc, m) ==
 * (2 acc m + 2^31) >> 32 (SMMULR of 2 acc; no saturation since m > 0), and
 * RoundingDivideByPOT(x, e) + zp == (x + 2^(e-1) - (x < 0) + zp * 2^e) >> e for e >= 1 (adding a
 * multiple of 2^e commutes with the floor; no overflow since |x| < 2^30 and e <= 22). Same
 * bytes as anyppg_requant + zp, five instructions. */
static inline int32_t rq_fast(int32_t acc, const int32_t *q, int e)
{
#ifdef ANYPPG_NN_DSP
    int32_t x;
    __asm("smmulr %0, %1, %2" : "=r"(x) : "r"((int32_t)((uint32_t)acc << 1)), "r"(q[0]));
#else
    const int32_t x = (int32_t)(((int64_t)acc * q[0] + (1 << 30)) >> 31);
#endif
    return (x + q[1] + (x >> 31)) >> e;
}

/* int8 saturation (SSAT on the DSP path), then the fused activation's clamp where it is narrower */
static inline int8_t sat8(int32_t v, int full, int lo, int hi)
{
#ifdef ANYPPG_NN_DSP
    v = __ssat(v, 8);
#else
    v = v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
    return (int8_t)(full ? v : (v < lo ? lo : (v > hi ? hi : v)));
}

static inline int8_t conv_out(const anyppg_conv_params *p, int32_t acc, int c)
{
    if (p->rq_fast) return sat8(rq_fast(acc, p->rq + 2 * c, p->rq_e[c]), p->full_range, p->act_min, p->act_max);
    return clamp8(anyppg_requant(acc, p->mult[c], p->shift[c]) + p->out_zp, p->act_min, p->act_max);
}

/* acc + a . b over n int8 values (any n). */
static inline int32_t dot(const int8_t *a, const int8_t *b, int n, int32_t acc)
{
#ifdef ANYPPG_NN_DSP
    for (; n >= 4; n -= 4, a += 4, b += 4) {
        const uint32_t x = rd32(a), y = rd32(b);
        /* bytes 0,2 and 1,3 as 16-bit pairs: the pairing is the same on both sides */
        acc = __smlad(__sxtb16(x), __sxtb16(y), acc);
        acc = __smlad(sxtb16_ror8(x), sxtb16_ror8(y), acc);
    }
#endif
    for (int i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

/* ------------------------------------------------------------------------------ CONV_2D */
/* Kernels produce int32 accumulators (bias included) for a range of output pixels; the driver
 * requantises them, or, for a fused max pool whose requantisation is monotonic (no left
 * shift), takes the max of the accumulators first and requantises once per pooled value:
 * max and a non-decreasing requantise-and-clamp commute, so the bytes are TFLite's. */

/* An output pixel whose window lies inside the input, contiguous, with kc4 bytes readable. */
static inline int conv_interior(const anyppg_conv_params *p, int o)
{
    const int s = o * p->stride - p->pad;
    return p->dil == 1 && s >= 0 && s + p->k <= p->in_len &&
           s * p->in_ch + p->kc4 <= p->in_len * p->in_ch;
}

#ifndef ANYPPG_NN_DSP
/* Weight of channel c at window position i (0 <= i < kc4): channel pairs interleave their rows
 * per 4 positions (anyppg_nn.h); an odd last channel's row is plain. */
static inline int32_t conv_w(const anyppg_conv_params *p, int c, int i)
{
    const int8_t *base = p->w + (c & ~1) * p->kc4;
    return (c | 1) < p->out_ch ? base[(i >> 2) * 8 + (c & 1) * 4 + (i & 3)] : base[i];
}

static void conv_acc1(const anyppg_conv_params *p, const int8_t *in, int o, int32_t *acc)
{
    const int s = o * p->stride - p->pad;
    for (int c = 0; c < p->out_ch; ++c) {
        int32_t a = p->bias[c];
        for (int t = 0; t < p->k; ++t) {
            const int pos = s + t * p->dil;
            const int inside = pos >= 0 && pos < p->in_len;
            for (int i = 0; i < p->in_ch; ++i) {   /* padding: the folded bias share cancels */
                const int32_t w = conv_w(p, c, t * p->in_ch + i);
                a += inside ? in[pos * p->in_ch + i] * w : -p->in_off * w;
            }
        }
        acc[c] = a;
    }
}

/* Two interior pixels o, o + 1 at once, channels in pairs (kc4 window bytes readable). */
static void conv_acc2(const anyppg_conv_params *p, const int8_t *in, int o, int32_t *acc0, int32_t *acc1)
{
    const int8_t *x0 = in + (o * p->stride - p->pad) * p->in_ch;
    const int8_t *x1 = x0 + p->stride * p->in_ch;
    const int kc4 = p->kc4;
    int c = 0;
    for (; c + 1 < p->out_ch; c += 2) {
        const int8_t *w = p->w + c * kc4;
        int32_t s00 = p->bias[c], s01 = p->bias[c + 1], s10 = s00, s11 = s01;
        /* 4 taps x 2 pixels x 2 channels per step, written out (GCC keeps a j loop at -O2) */
#define ANYPPG_MAC4(j) do { const int32_t a0 = x0[g + (j)], a1 = x1[g + (j)], w0 = w[(j)], w1 = w[4 + (j)]; \
            s00 += a0 * w0; s01 += a0 * w1; s10 += a1 * w0; s11 += a1 * w1; } while (0)
        for (int g = 0; g < kc4; g += 4, w += 8) {
            ANYPPG_MAC4(0); ANYPPG_MAC4(1); ANYPPG_MAC4(2); ANYPPG_MAC4(3);
        }
#undef ANYPPG_MAC4
        acc0[c] = s00; acc0[c + 1] = s01; acc1[c] = s10; acc1[c + 1] = s11;
    }
    for (; c < p->out_ch; ++c) {
        acc0[c] = dot(x0, p->w + c * kc4, kc4, p->bias[c]);
        acc1[c] = dot(x1, p->w + c * kc4, kc4, p->bias[c]);
    }
}
#endif

#ifdef ANYPPG_NN_DSP
/* DSP path: each output pixel's window is expanded once to int16 (im2col, in SXTB16's order:
 * per 4 taps (x0, x2) then (x1, x3)); two pixels' columns interleave per 4 taps, as the weight
 * rows of a channel pair do (anyppg_nn.h), so one LDRD + one LDM feed 8 SMLAD: 2 pixels x 2
 * channels x 4 taps in 16 instructions. Taps in the padding hold the input zero point, so their
 * term cancels the folded bias share exactly. */
static void im2col16(const anyppg_conv_params *p, const int8_t *in, int o, uint32_t *col, int8_t *tmp,
                     int step)
{
    const int8_t *src;
    const int s = o * p->stride - p->pad;
    if (conv_interior(p, o)) {
        src = in + s * p->in_ch;
    } else {
        const int8_t zp = (int8_t)(-p->in_off);
        for (int t = 0; t < p->k; ++t) {
            const int pos = s + t * p->dil;
            for (int i = 0; i < p->in_ch; ++i)
                tmp[t * p->in_ch + i] = (pos < 0 || pos >= p->in_len) ? zp : in[pos * p->in_ch + i];
        }
        for (int i = p->k * p->in_ch; i < p->kc4; ++i) tmp[i] = 0;   /* weight 0 there */
        src = tmp;
    }
    for (int i = 0; i < p->kc4; i += 4, col += step) {
        const uint32_t v = rd32(src + i);
        col[0] = __sxtb16(v);
        col[1] = sxtb16_ror8(v);
    }
}

/* maxmode: acc0[c] = max(acc0[c], pixel 0), then acc1[c] = max(acc1[c], pixel 1) (a fused max
 * pool over raw accumulators; acc1 == acc0 when both pixels are in one window) */
static void gemm2x2(const anyppg_conv_params *p, const uint32_t *col, int32_t *acc0, int32_t *acc1,
                    int maxmode)
{
    const int kc4 = p->kc4;
    const int8_t *w = p->w;
    int c = 0;
    for (; c + 1 < p->out_ch; c += 2, w += 2 * kc4) {
        const uint32_t *x = col;
        const int8_t *wp = w, *const end = w + 2 * kc4;
        int32_t s00 = p->bias[c], s01 = p->bias[c + 1], s10 = s00, s11 = s01;
        do {
            uint32_t a, b;
            memcpy(&a, wp, 4);
            memcpy(&b, wp + 4, 4);
            wp += 8;
            const uint32_t x0e = x[0], x0o = x[1], x1e = x[2], x1o = x[3];
            x += 4;
            uint32_t t = __sxtb16(a);
            a = sxtb16_ror8(a);
            s00 = __smlad(t, x0e, s00); s10 = __smlad(t, x1e, s10);
            s00 = __smlad(a, x0o, s00); s10 = __smlad(a, x1o, s10);
            t = __sxtb16(b);
            b = sxtb16_ror8(b);
            s01 = __smlad(t, x0e, s01); s11 = __smlad(t, x1e, s11);
            s01 = __smlad(b, x0o, s01); s11 = __smlad(b, x1o, s11);
        } while (wp < end);
        if (maxmode) {
            acc0[c] = s00 > acc0[c] ? s00 : acc0[c];
            acc0[c + 1] = s01 > acc0[c + 1] ? s01 : acc0[c + 1];
            acc1[c] = s10 > acc1[c] ? s10 : acc1[c];
            acc1[c + 1] = s11 > acc1[c + 1] ? s11 : acc1[c + 1];
        } else {
            acc0[c] = s00; acc0[c + 1] = s01; acc1[c] = s10; acc1[c + 1] = s11;
        }
    }
    if (c < p->out_ch) {                      /* odd channel count: the last row is plain */
        int32_t s0 = p->bias[c], s1 = s0;
        for (int i = 0; i < kc4; i += 4) {
            const uint32_t a = rd32(w + i);
            const uint32_t ae = __sxtb16(a), ao = sxtb16_ror8(a);
            const uint32_t *x = col + i;
            s0 = __smlad(ae, x[0], s0); s0 = __smlad(ao, x[1], s0);
            s1 = __smlad(ae, x[2], s1); s1 = __smlad(ao, x[3], s1);
        }
        if (maxmode) {
            acc0[c] = s0 > acc0[c] ? s0 : acc0[c];
            acc1[c] = s1 > acc1[c] ? s1 : acc1[c];
        } else {
            acc0[c] = s0; acc1[c] = s1;
        }
    }
}

/* Accumulators of pixels [o0, o1) into acc[(o - o0) * out_ch + c], or in maxmode their max into
 * row (o - o0) / pool_k (one row per pool window); the two pixels' im2col columns and the border
 * window live in scratch after the accumulator rows. */
static void conv_accs(const anyppg_conv_params *p, const int8_t *in, int o0, int o1, int32_t *acc,
                      void *work, int maxmode)
{
    uint32_t *col = (uint32_t *)work;
    int8_t *tmp = (int8_t *)(col + p->kc4);
    for (int o = o0; o < o1; o += 2) {
        const int ob = o + 1 < o1 ? o + 1 : o;   /* odd tail: a copy */
        int32_t *row = acc + (maxmode ? (o - o0) / p->pool_k : o - o0) * p->out_ch;
        int32_t *row_b = maxmode ? acc + (ob - o0) / p->pool_k * p->out_ch : row + (ob - o) * p->out_ch;
        im2col16(p, in, o, col, tmp, 4);
        im2col16(p, in, ob, col + 2, tmp, 4);
        gemm2x2(p, col, row, row_b, maxmode);
    }
}

/* Narrow windows (kc4 == 8: the one-channel stem): weight-stationary. A block of
 * ANYPPG_NARROW_Q outputs (pooled, or pixels) is expanded to int16 columns once, then each
 * channel holds its 8 weights in 4 registers and runs 4 SMLAD per pixel, the max over its pool
 * window and the requantisation without touching memory in between. Needs rq_fast and either no
 * pool or a raw max pool with stride == k and no padding (conv_narrow_ok). */
#define ANYPPG_NARROW_Q 16
static int conv_narrow_ok(const anyppg_conv_params *p)
{
    return p->kc4 == 8 && p->rq_fast &&
           (p->pool_kind == ANYPPG_POOL_NONE ||
            (p->pool_kind == ANYPPG_POOL_MAX && p->pool_max_raw && p->pool_stride == p->pool_k &&
             p->pool_pad == 0 && p->pool_k <= 4));
}

static void conv_narrow(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *work)
{
    const int pooled = p->pool_kind != ANYPPG_POOL_NONE;
    const int pk = pooled ? p->pool_k : 1, nq = pooled ? p->pool_out_len : p->out_len;
    const int ch = p->out_ch, lo = p->act_min, hi = p->act_max;
    const int lo2 = pooled ? p->pool_act_min : -128, hi2 = pooled ? p->pool_act_max : 127;
    const int plain = p->full_range && lo2 == -128 && hi2 == 127;
    int32_t *best = (int32_t *)work;                         /* ANYPPG_NARROW_Q accumulators */
    uint32_t *cols = (uint32_t *)(best + ANYPPG_NARROW_Q);   /* 4 words per pixel */
    int8_t *tmp = (int8_t *)(cols + 4 * ANYPPG_NARROW_Q * 4);
    for (int q0 = 0; q0 < nq; q0 += ANYPPG_NARROW_Q) {
        const int q1 = q0 + ANYPPG_NARROW_Q < nq ? q0 + ANYPPG_NARROW_Q : nq;
        const int o0 = q0 * pk, o1 = q1 * pk < p->out_len ? q1 * pk : p->out_len;
        for (int o = o0; o < o1; ++o) im2col16(p, in, o, cols + 4 * (o - o0), tmp, 2);
        for (int c = 0; c < ch; ++c) {
            const int8_t *wr = p->w + (c & ~1) * 8;
            const int paired = (c | 1) < ch;
            const uint32_t wa = rd32(paired ? wr + (c & 1) * 4 : wr + 0);
            const uint32_t wb = rd32(paired ? wr + 8 + (c & 1) * 4 : wr + 4);
            const uint32_t w0 = __sxtb16(wa), w1 = sxtb16_ror8(wa), w2 = __sxtb16(wb), w3 = sxtb16_ror8(wb);
            const int32_t b = p->bias[c];
            /* pass 1: raw accumulators (max over the pool window) into best[]; few live registers */
            const uint32_t *x = cols;
            if (pk == 2 && o1 == q1 * 2) {
                for (int q = 0; q < q1 - q0; ++q, x += 8) {
                    const int32_t a0 = __smlad(w3, x[3], __smlad(w2, x[2], __smlad(w1, x[1], __smlad(w0, x[0], b))));
                    const int32_t a1 = __smlad(w3, x[7], __smlad(w2, x[6], __smlad(w1, x[5], __smlad(w0, x[4], b))));
                    best[q] = a0 > a1 ? a0 : a1;
                }
            } else {
                for (int q = q0; q < q1; ++q) {
                    const int n = (q + 1) * pk <= o1 ? pk : o1 - q * pk;
                    int32_t m = INT32_MIN;
                    for (int r = 0; r < n; ++r, x += 4) {
                        const int32_t a = __smlad(w3, x[3], __smlad(w2, x[2], __smlad(w1, x[1], __smlad(w0, x[0], b))));
                        m = a > m ? a : m;
                    }
                    best[q - q0] = m;
                }
            }
            /* pass 2: requantise; the multiplier in locals (int8 stores may alias p->rq) */
            const int32_t qc[2] = {p->rq[2 * c], p->rq[2 * c + 1]};
            const int e = p->rq_e[c];
            int8_t *dst = out + q0 * ch + c;
            if (plain) {        /* int8 saturation is the whole clamp (ReLU at zp -128, no pool clamp) */
                for (int q = 0; q < q1 - q0; ++q, dst += ch) *dst = (int8_t)__ssat(rq_fast(best[q], qc, e), 8);
            } else {
                for (int q = 0; q < q1 - q0; ++q, dst += ch)
                    *dst = clamp8(sat8(rq_fast(best[q], qc, e), p->full_range, lo, hi), lo2, hi2);
            }
        }
    }
}
#else
/* Accumulators of pixels [o0, o1) into acc[(o - o0) * out_ch + c]. */
static void conv_accs(const anyppg_conv_params *p, const int8_t *in, int o0, int o1, int32_t *acc,
                      void *work, int maxmode)
{
    (void)work;
    (void)maxmode;   /* the driver asks for it on the DSP path only */
    int o = o0;
    while (o < o1) {
        int32_t *row = acc + (o - o0) * p->out_ch;
        if (o + 1 < o1 && conv_interior(p, o) && conv_interior(p, o + 1)) {
            conv_acc2(p, in, o, row, row + p->out_ch);
            o += 2;
        } else {
            conv_acc1(p, in, o, row);
            o += 1;
        }
    }
}
#endif

/* ---------------------------------------------------------------------- DEPTHWISE_CONV_2D */
/* Weight of channel c at tap t in the int16 layout (anyppg_nn.h: groups of 4 as c0, c2, c1, c3). */
static inline int32_t dw_w(const anyppg_conv_params *p, int t, int c)
{
    const int j = c & 3;
    return p->w16[((c >> 2) * p->k + t) * 4 + (((j & 1) << 1) | (j >> 1))];
}

static inline int dw_interior(const anyppg_conv_params *p, int s)
{
    return p->depth_mult == 1 && p->dil == 1 && s >= 0 && s + p->k <= p->in_len;
}

/* Accumulators of channels [c0, ch) of pixel o, any geometry (padding taps cancel the folded bias). */
static void dw_acc_tail(const anyppg_conv_params *p, const int8_t *in, int o, int c0, int32_t *acc)
{
    const int s = o * p->stride - p->pad;
    for (int c = c0; c < p->out_ch; ++c) {
        const int ic = c / p->depth_mult;
        int32_t a = p->bias[c];
        for (int t = 0; t < p->k; ++t) {
            const int pos = s + t * p->dil;
            const int32_t w = dw_w(p, t, c);
            a += (pos < 0 || pos >= p->in_len) ? -p->in_off * w : in[pos * p->in_ch + ic] * w;
        }
        acc[c] = a;
    }
}

/* Four channels' accumulators over k taps of an interior window starting at x (row stride ch),
 * weights w: k pairs of words (c0, c2), (c1, c3). */
#define DW_TAPS4(x, w, ch, k, a0, a1, a2, a3) \
    for (int t_ = 0; t_ < (k); ++t_) DW_TAP4((x) + t_ * (ch), (w) + 4 * t_, a0, a1, a2, a3)
#ifdef ANYPPG_NN_DSP
#define DW_TAP4(x, w, a0, a1, a2, a3) do { \
        const uint32_t xv_ = rd32(x), xe_ = __sxtb16(xv_), xo_ = sxtb16_ror8(xv_); \
        const uint32_t we_ = rd32((const int8_t *)(w)), wo_ = rd32((const int8_t *)(w) + 4); \
        a0 = __smlabb(xe_, we_, a0); a2 = __smlatt(xe_, we_, a2); \
        a1 = __smlabb(xo_, wo_, a1); a3 = __smlatt(xo_, wo_, a3); } while (0)
#else
#define DW_TAP4(x, w, a0, a1, a2, a3) do { \
        a0 += (x)[0] * (w)[0]; a2 += (x)[2] * (w)[1]; a1 += (x)[1] * (w)[2]; a3 += (x)[3] * (w)[3]; } while (0)
#endif

/* One interior pixel, requantised in the same loop: 4 channels at a time, each group's
 * accumulators in registers from bias to int8 (rq_fast layers). k is a constant where inlined. */
static inline __attribute__((always_inline)) void dw_px(const anyppg_conv_params *p, const int8_t *x,
                                                        int8_t *out, const int k)
{
    const int ch = p->out_ch, full = p->full_range, lo = p->act_min, hi = p->act_max;
    const int16_t *w = p->w16;
    const int32_t *b = p->bias, *q = p->rq;
    const uint8_t *e = p->rq_e;
    for (int c = 0; c + 3 < ch; c += 4, x += 4, w += 4 * k, b += 4, q += 8, e += 4) {
        int32_t a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
        DW_TAPS4(x, w, ch, k, a0, a1, a2, a3);
        out[c] = sat8(rq_fast(a0, q, e[0]), full, lo, hi);
        out[c + 1] = sat8(rq_fast(a1, q + 2, e[1]), full, lo, hi);
        out[c + 2] = sat8(rq_fast(a2, q + 4, e[2]), full, lo, hi);
        out[c + 3] = sat8(rq_fast(a3, q + 6, e[3]), full, lo, hi);
    }
}

static void dw_px_k(const anyppg_conv_params *p, const int8_t *x, int8_t *out)
{
    if (p->k == 5)      /* the students' kernel sizes, k a constant (dw_rows sends no other) */
        dw_px(p, x, out, 5);
    else
        dw_px(p, x, out, 7);
}

/* Accumulators of pixel o, all channels. At the borders (all of a 5-pixel layer) a padding tap
 * reads the input zero point in all four lanes, whose term cancels the folded bias share. */
static void dw_acc1(const anyppg_conv_params *p, const int8_t *in, int o, int32_t *acc)
{
    const int s = o * p->stride - p->pad;
    int c = 0;
    if (p->depth_mult == 1 && p->dil == 1) {
        const int ch = p->out_ch, k = p->k, n = p->in_len;
        const uint32_t zpw = (uint8_t)(-p->in_off) * 0x01010101u;
        for (; c + 3 < ch; c += 4) {
            int32_t a0 = p->bias[c], a1 = p->bias[c + 1], a2 = p->bias[c + 2], a3 = p->bias[c + 3];
            const int16_t *w = p->w16 + c * k;
            for (int t = 0; t < k; ++t) {
                const int pos = s + t;
                const uint32_t xv = pos >= 0 && pos < n ? rd32(in + pos * ch + c) : zpw;
                DW_TAP4((const int8_t *)&xv, w + 4 * t, a0, a1, a2, a3);
            }
            acc[c] = a0; acc[c + 1] = a1; acc[c + 2] = a2; acc[c + 3] = a3;
        }
    }
    dw_acc_tail(p, in, o, c, acc);
}

static void dw_accs(const anyppg_conv_params *p, const int8_t *in, int o0, int o1, int32_t *acc,
                    void *work, int maxmode)
{
    (void)work;
    (void)maxmode;
    for (int o = o0; o < o1; ++o) dw_acc1(p, in, o, acc + (o - o0) * p->out_ch);
}

static void requant_row(const anyppg_conv_params *p, const int32_t *acc, int8_t *out);

/* Output rows [o0, o1) of an unpooled depthwise convolution into out (row o0 first); acc:
 * scratch for one row of accumulators. */
static void dw_rows(const anyppg_conv_params *p, const int8_t *in, int o0, int o1, int8_t *out, int32_t *acc)
{
    const int ch = p->out_ch, c4 = ch & ~3;
    for (int o = o0; o < o1; ++o, out += ch) {
        const int s = o * p->stride - p->pad;
        if (p->rq_fast && (p->k == 5 || p->k == 7) && dw_interior(p, s)) {
            dw_px_k(p, in + s * ch, out);
            if (c4 < ch) {
                dw_acc_tail(p, in, o, c4, acc);
                for (int c = c4; c < ch; ++c) out[c] = conv_out(p, acc[c], c);
            }
        } else {
            dw_acc1(p, in, o, acc);
            requant_row(p, acc, out);
        }
    }
}

/* ------------------------------------------------------- convolution, then fused pooling */
typedef void (*accs_fn)(const anyppg_conv_params *, const int8_t *, int, int, int32_t *, void *, int);

static void requant_row(const anyppg_conv_params *p, const int32_t *acc, int8_t *out)
{
    /* locals: int8 stores may alias the parameter block, so the compiler would reload it */
    const int n = p->out_ch, lo = p->act_min, hi = p->act_max, full = p->full_range;
    if (p->rq_fast) {
        const int32_t *q = p->rq;
        const uint8_t *e = p->rq_e;
        if (full)       /* saturation alone: the common ReLU-at-zp--128 and linear layers */
            for (int c = 0; c < n; ++c, q += 2) out[c] = sat8(rq_fast(acc[c], q, e[c]), 1, lo, hi);
        else
            for (int c = 0; c < n; ++c, q += 2) out[c] = sat8(rq_fast(acc[c], q, e[c]), 0, lo, hi);
    } else {
        const int32_t *m = p->mult, zp = p->out_zp;
        const int8_t *sh = p->shift;
        for (int c = 0; c < n; ++c) out[c] = clamp8(anyppg_requant(acc[c], m[c], sh[c]) + zp, lo, hi);
    }
}

/* TFLite's MAX_POOL_2D / AVERAGE_POOL_2D over conv accumulator rows [0, n) into out_row. */
static void pool_rows(const anyppg_conv_params *p, int32_t *acc, int n, int8_t *out_row)
{
    const int ch = p->out_ch;
    for (int c = 0; c < ch; ++c) {
        int32_t v;
        if (p->pool_kind == ANYPPG_POOL_MAX && p->pool_max_raw) {
            int32_t m = acc[c];
            for (int r = 1; r < n; ++r) m = acc[r * ch + c] > m ? acc[r * ch + c] : m;
            v = conv_out(p, m, c);
        } else if (p->pool_kind == ANYPPG_POOL_MAX) {
            v = -128;
            for (int r = 0; r < n; ++r) {
                const int32_t q = conv_out(p, acc[r * ch + c], c);
                v = q > v ? q : v;
            }
        } else {
            int32_t sum = 0;
            for (int r = 0; r < n; ++r) sum += conv_out(p, acc[r * ch + c], c);
            v = sum > 0 ? (sum + n / 2) / n : (sum - n / 2) / n;   /* TFLite's rounding */
        }
        out_row[c] = clamp8(v, p->pool_act_min, p->pool_act_max);
    }
}

static void conv_driver(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch, accs_fn accs)
{
    int32_t *acc = (int32_t *)scratch;
    const int rows = p->pool_kind == ANYPPG_POOL_NONE || p->pool_k < 2 ? 2 : p->pool_k;
    void *work = acc + rows * p->out_ch;
#ifdef ANYPPG_NN_DSP
    if (accs == conv_accs && conv_narrow_ok(p)) {
        conv_narrow(p, in, out, scratch);
        return;
    }
#endif
    if (p->pool_kind == ANYPPG_POOL_NONE) {
        for (int o = 0; o < p->out_len; o += 2) {
            const int e = o + 2 < p->out_len ? o + 2 : p->out_len;
            accs(p, in, o, e, acc, work, 0);
            for (int r = 0; r < e - o; ++r) requant_row(p, acc + r * p->out_ch, out + (o + r) * p->out_ch);
        }
        return;
    }
#ifdef ANYPPG_NN_DSP
    /* max pool over raw accumulators, kept in one row as the GEMM produces them */
    const int in_regs = accs == conv_accs && p->pool_kind == ANYPPG_POOL_MAX && p->pool_max_raw;
#else
    const int in_regs = 0;
#endif
    for (int q = 0; q < p->pool_out_len;) {
        /* windows tiling the input go two per pass, so no pixel pair straddles the end of one */
        const int nq = in_regs && p->pool_stride == p->pool_k && p->pool_pad == 0 && q + 1 < p->pool_out_len ? 2 : 1;
        int s = q * p->pool_stride - p->pool_pad, e = s + (nq - 1) * p->pool_stride + p->pool_k;
        s = s < 0 ? 0 : s;
        e = e > p->out_len ? p->out_len : e;
        int8_t *row = out + q * p->out_ch;
        q += nq;
        if (in_regs) {
            for (int c = 0; c < nq * p->out_ch; ++c) acc[c] = INT32_MIN;
            accs(p, in, s, e, acc, work, 1);
            for (int r = 0; r < nq; ++r, row += p->out_ch) {
                requant_row(p, acc + r * p->out_ch, row);
                if (p->pool_act_min > -128 || p->pool_act_max < 127)
                    for (int c = 0; c < p->out_ch; ++c) row[c] = clamp8(row[c], p->pool_act_min, p->pool_act_max);
            }
        } else {
            accs(p, in, s, e, acc, work, 0);
            pool_rows(p, acc, e - s, row);
        }
    }
}

void anyppg_conv(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    conv_driver(p, in, out, scratch, conv_accs);
}

void anyppg_dwconv(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    if (p->pool_kind == ANYPPG_POOL_NONE)
        dw_rows(p, in, 0, p->out_len, out, (int32_t *)scratch);
    else
        conv_driver(p, in, out, scratch, dw_accs);
}

void anyppg_dwconv_pw(const anyppg_conv_params *dw, const anyppg_conv_params *pw, const int8_t *in,
                      int8_t *out, void *scratch)
{
    const int pooled = pw->pool_kind != ANYPPG_POOL_NONE;
    const int pk = pooled ? pw->pool_k : 1;
    const int step = pooled ? ANYPPG_DWPW_WINDOWS(pk) : ANYPPG_DWPW_ROWS(1);   /* outputs per chunk */
    const int n_out = pooled ? pw->pool_out_len : pw->out_len;
    int8_t *rows = (int8_t *)scratch;
    void *pw_scratch = rows + (ANYPPG_DWPW_ROWS(pk) * dw->out_ch + 3) / 4 * 4;
    anyppg_conv_params lp = *pw;     /* the 1x1 conv over one chunk of depthwise rows */
    for (int q0 = 0; q0 < n_out; q0 += step) {
        const int q1 = q0 + step < n_out ? q0 + step : n_out;
        const int r0 = q0 * pk, r1 = q1 * pk < dw->out_len ? q1 * pk : dw->out_len;
        /* the 1x1 conv's scratch is free until it runs: one accumulator row there */
        dw_rows(dw, in, r0, r1, rows, (int32_t *)pw_scratch);
        lp.in_len = lp.out_len = (int16_t)(r1 - r0);
        lp.pool_out_len = (int16_t)(q1 - q0);
        conv_driver(&lp, rows, out + q0 * pw->out_ch, pw_scratch, conv_accs);
    }
}

/* ---------------------------------------------------------------------- FULLY_CONNECTED */
void anyppg_fc(const anyppg_fc_params *p, const int8_t *in, int8_t *out)
{
    for (int o = 0; o < p->n_out; ++o) {
        const int32_t acc = dot(in, p->w + o * p->n_in, p->n_in, p->bias[o]);
        out[o] = clamp8(anyppg_requant(acc, p->mult[o], p->shift[o]) + p->out_zp, p->act_min, p->act_max);
    }
}

/* ---------------------------------------------------------------------------- pooling */
void anyppg_maxpool(const anyppg_pool_params *p, const int8_t *in, int8_t *out)
{
    for (int q = 0; q < p->out_len; ++q) {
        const int s = q * p->stride - p->pad;
        for (int c = 0; c < p->ch; ++c) {
            int8_t m = -128;
            for (int t = 0; t < p->k; ++t) {
                const int pos = s + t;
                if (pos >= 0 && pos < p->in_len && in[pos * p->ch + c] > m) m = in[pos * p->ch + c];
            }
            out[q * p->ch + c] = clamp8(m, p->act_min, p->act_max);
        }
    }
}

void anyppg_avgpool(const anyppg_pool_params *p, const int8_t *in, int8_t *out)
{
    for (int q = 0; q < p->out_len; ++q) {
        const int s = q * p->stride - p->pad;
        for (int c = 0; c < p->ch; ++c) {
            int32_t acc = 0, n = 0;
            for (int t = 0; t < p->k; ++t) {
                const int pos = s + t;
                if (pos >= 0 && pos < p->in_len) { acc += in[pos * p->ch + c]; ++n; }
            }
            acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;   /* TFLite's rounding */
            out[q * p->ch + c] = clamp8(acc, p->act_min, p->act_max);
        }
    }
}

/* ---------------------------------------------------------------------------- elementwise */
static inline int32_t add_side(int32_t v, int32_t off, int left_shift, int32_t mult, int shift)
{
    return anyppg_requant((v + off) * (1 << left_shift), mult, shift);
}

/* TFLite's int8 ADD. Each input's rescaling depends on its int8 value alone, so with scratch
 * (2 KB, given for long tensors) both are tabulated once (512 requantisations instead of 2n). */
void anyppg_add(const anyppg_add_params *p, const int8_t *a, const int8_t *b, int8_t *out, void *scratch)
{
    const int n = p->n, ls = p->left_shift, lo = p->act_min, hi = p->act_max;
    const int32_t om = p->out_mult, zp = p->out_zp;
    const int os = p->out_shift;
    if (scratch) {
        int32_t *ta = (int32_t *)scratch + 128, *tb = ta + 256;
        for (int v = -128; v < 128; ++v) {
            ta[v] = add_side(v, p->a_off, ls, p->a_mult, p->a_shift);
            tb[v] = add_side(v, p->b_off, ls, p->b_mult, p->b_shift);
        }
        for (int i = 0; i < n; ++i)
            out[i] = clamp8(anyppg_requant(ta[a[i]] + tb[b[i]], om, os) + zp, lo, hi);
        return;
    }
    for (int i = 0; i < n; ++i) {
        const int32_t sa = add_side(a[i], p->a_off, ls, p->a_mult, p->a_shift);
        const int32_t sb = add_side(b[i], p->b_off, ls, p->b_mult, p->b_shift);
        out[i] = clamp8(anyppg_requant(sa + sb, om, os) + zp, lo, hi);
    }
}

void anyppg_add_maxpool(const anyppg_add_params *p, const anyppg_pool_params *q, const int8_t *a,
                        const int8_t *b, int8_t *out, void *scratch)
{
    const int ls = p->left_shift, ch = q->ch;
    const int32_t om = p->out_mult, zp = p->out_zp;
    const int os = p->out_shift;
    int32_t *ta = (int32_t *)scratch + 128, *tb = ta + 256;
    for (int v = -128; v < 128; ++v) {
        ta[v] = add_side(v, p->a_off, ls, p->a_mult, p->a_shift);
        tb[v] = add_side(v, p->b_off, ls, p->b_mult, p->b_shift);
    }
    for (int o = 0; o < q->out_len; ++o, out += ch) {
        int s = o * q->stride - q->pad, e = s + q->k;   /* padding taps are skipped, as TFLite does */
        s = s < 0 ? 0 : s;
        e = e > q->in_len ? q->in_len : e;
        for (int c = 0; c < ch; ++c) {
            const int8_t *pa = a + s * ch + c, *pb = b + s * ch + c;
            int32_t m = ta[*pa] + tb[*pb];
            for (int t = s + 1; t < e; ++t) {
                pa += ch;
                pb += ch;
                const int32_t v = ta[*pa] + tb[*pb];
                m = v > m ? v : m;
            }
            const int8_t r = clamp8(anyppg_requant(m, om, os) + zp, p->act_min, p->act_max);
            out[c] = clamp8(r, q->act_min, q->act_max);
        }
    }
}

void anyppg_pad(int in_len, int ch, int out_len, int before, int8_t value, const int8_t *in, int8_t *out)
{
    memset(out, value, (size_t)(before * ch));
    memmove(out + before * ch, in, (size_t)(in_len * ch));
    memset(out + (before + in_len) * ch, value, (size_t)((out_len - before - in_len) * ch));
}

void anyppg_logistic(const anyppg_logistic_params *p, const int8_t *in, int8_t *out)
{
    for (int i = 0; i < p->n; ++i) {
        const int32_t x = in[i] - p->in_zp;
        if (x <= -p->radius) { out[i] = -128; continue; }
        if (x >= p->radius) { out[i] = 127; continue; }
        const int32_t x_q4 = anyppg_requant(x, p->mult, p->left_shift);      /* 4 integer bits */
        const int32_t y = anyppg_rdivpot(anyppg_fx_logistic(x_q4, 4), 23);   /* Q0.31 -> 1/256 */
        out[i] = clamp8(y - 128, -128, 127);
    }
}

void anyppg_softmax(const anyppg_softmax_params *p, const int8_t *in, int8_t *out)
{
    for (int r = 0; r < p->rows; ++r, in += p->depth, out += p->depth) {
        int8_t mx = -128;
        for (int c = 0; c < p->depth; ++c) mx = in[c] > mx ? in[c] : mx;
        int32_t sum = 0;                                   /* 12 integer bits */
        for (int c = 0; c < p->depth; ++c) {
            const int32_t d = in[c] - mx;
            if (d >= p->diff_min) {
                const int32_t e = anyppg_fx_exp_neg(anyppg_srdhm(d * (1 << p->left_shift), p->mult), 5);
                sum = anyppg_fx_add(sum, anyppg_fx_mul_pot(e, -12));
            }
        }
        const int head = __builtin_clz((uint32_t)sum);
        const int bits_over_unit = 12 - head;
        const int32_t scale = anyppg_fx_one_over_one_plus(
            (int32_t)(((uint32_t)sum << head) - (1u << 31)));
        for (int c = 0; c < p->depth; ++c) {
            const int32_t d = in[c] - mx;
            if (d < p->diff_min) { out[c] = -128; continue; }
            const int32_t e = anyppg_fx_exp_neg(anyppg_srdhm(d * (1 << p->left_shift), p->mult), 5);
            const int32_t v = anyppg_rdivpot(anyppg_srdhm(scale, e), bits_over_unit + 31 - 8);
            out[c] = clamp8(v - 128, -128, 127);
        }
    }
}
