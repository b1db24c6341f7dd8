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

static inline int8_t conv_out(const anyppg_conv_params *p, int32_t acc, int c)
{
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

/* acc[0..3] += (a0.b0, a0.b1, a1.b0, a1.b1), n a multiple of 4: two pixels x two channels
 * share each load (16 MACs per 4 loads on the DSP path). */
static inline void dot2x2(const int8_t *a0, const int8_t *a1, const int8_t *b0, const int8_t *b1,
                          int n, int32_t acc[4])
{
    int32_t s00 = acc[0], s01 = acc[1], s10 = acc[2], s11 = acc[3];
#ifdef ANYPPG_NN_DSP
    for (int i = 0; i < n; i += 4) {
        const uint32_t x0 = rd32(a0 + i), x1 = rd32(a1 + i), y0 = rd32(b0 + i), y1 = rd32(b1 + i);
        const uint32_t x0e = __sxtb16(x0), x0o = sxtb16_ror8(x0);
        const uint32_t x1e = __sxtb16(x1), x1o = sxtb16_ror8(x1);
        const uint32_t y0e = __sxtb16(y0), y0o = sxtb16_ror8(y0);
        const uint32_t y1e = __sxtb16(y1), y1o = sxtb16_ror8(y1);
        s00 = __smlad(x0e, y0e, s00); s00 = __smlad(x0o, y0o, s00);
        s01 = __smlad(x0e, y1e, s01); s01 = __smlad(x0o, y1o, s01);
        s10 = __smlad(x1e, y0e, s10); s10 = __smlad(x1o, y0o, s10);
        s11 = __smlad(x1e, y1e, s11); s11 = __smlad(x1o, y1o, s11);
    }
#else
    for (int i = 0; i < n; ++i) {
        s00 += a0[i] * b0[i]; s01 += a0[i] * b1[i];
        s10 += a1[i] * b0[i]; s11 += a1[i] * b1[i];
    }
#endif
    acc[0] = s00; acc[1] = s01; acc[2] = s10; acc[3] = s11;
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

static void conv_acc1(const anyppg_conv_params *p, const int8_t *in, int o, int32_t *acc)
{
    const int s = o * p->stride - p->pad;
    if (conv_interior(p, o)) {
        const int8_t *win = in + s * p->in_ch;
        for (int c = 0; c < p->out_ch; ++c) acc[c] = dot(win, p->w + c * p->kc4, p->kc4, p->bias[c]);
        return;
    }
    for (int c = 0; c < p->out_ch; ++c) {
        int32_t a = p->bias[c];
        for (int t = 0; t < p->k; ++t) {
            const int pos = s + t * p->dil;
            const int8_t *wr = p->w + c * p->kc4 + t * p->in_ch;
            if (pos < 0 || pos >= p->in_len) {
                for (int i = 0; i < p->in_ch; ++i) a -= p->in_off * wr[i];   /* padding: no term */
            } else {
                a = dot(in + pos * p->in_ch, wr, p->in_ch, a);
            }
        }
        acc[c] = a;
    }
}

/* Two interior pixels o, o + 1 at once, channels in pairs. */
static void conv_acc2(const anyppg_conv_params *p, const int8_t *in, int o, int32_t *acc0, int32_t *acc1)
{
    const int8_t *win0 = in + (o * p->stride - p->pad) * p->in_ch;
    const int8_t *win1 = win0 + p->stride * p->in_ch;
    int c = 0;
    for (; c + 1 < p->out_ch; c += 2) {
        int32_t a[4] = {p->bias[c], p->bias[c + 1], p->bias[c], p->bias[c + 1]};
        dot2x2(win0, win1, p->w + c * p->kc4, p->w + (c + 1) * p->kc4, p->kc4, a);
        acc0[c] = a[0]; acc0[c + 1] = a[1]; acc1[c] = a[2]; acc1[c + 1] = a[3];
    }
    for (; c < p->out_ch; ++c) {
        acc0[c] = dot(win0, p->w + c * p->kc4, p->kc4, p->bias[c]);
        acc1[c] = dot(win1, p->w + c * p->kc4, p->kc4, p->bias[c]);
    }
}

/* Accumulators of pixels [o0, o1) into acc[(o - o0) * out_ch + c]. */
static void conv_accs(const anyppg_conv_params *p, const int8_t *in, int o0, int o1, int32_t *acc)
{
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

/* ---------------------------------------------------------------------- DEPTHWISE_CONV_2D */
static void dw_acc1(const anyppg_conv_params *p, const int8_t *in, int o, int32_t *acc)
{
    const int s = o * p->stride - p->pad;
    const int ch = p->out_ch;
    int c = 0;
    if (p->depth_mult == 1 && p->dil == 1 && s >= 0 && s + p->k <= p->in_len) {
#ifdef ANYPPG_NN_DSP
        for (; c + 3 < ch; c += 4) {
            int32_t a0 = p->bias[c], a1 = p->bias[c + 1], a2 = p->bias[c + 2], a3 = p->bias[c + 3];
            const int8_t *x = in + s * ch + c;
            const int8_t *w = p->w + c;
            for (int t = 0; t < p->k; ++t, x += ch, w += ch) {
                const uint32_t xv = rd32(x), wv = rd32(w);
                const uint32_t xe = __sxtb16(xv), xo = sxtb16_ror8(xv);
                const uint32_t we = __sxtb16(wv), wo = sxtb16_ror8(wv);
                a0 = __smlabb(xe, we, a0); a2 = __smlatt(xe, we, a2);
                a1 = __smlabb(xo, wo, a1); a3 = __smlatt(xo, wo, a3);
            }
            acc[c] = a0; acc[c + 1] = a1; acc[c + 2] = a2; acc[c + 3] = a3;
        }
#endif
        for (; c < ch; ++c) {
            int32_t a = p->bias[c];
            for (int t = 0; t < p->k; ++t) a += in[(s + t) * ch + c] * p->w[t * ch + c];
            acc[c] = a;
        }
        return;
    }
    for (; c < ch; ++c) {
        const int ic = c / p->depth_mult;
        int32_t a = p->bias[c];
        for (int t = 0; t < p->k; ++t) {
            const int pos = s + t * p->dil;
            const int32_t w = p->w[t * ch + c];
            a += (pos < 0 || pos >= p->in_len) ? -p->in_off * w : in[pos * p->in_ch + ic] * w;
        }
        acc[c] = a;
    }
}

static void dw_accs(const anyppg_conv_params *p, const int8_t *in, int o0, int o1, int32_t *acc)
{
    for (int o = o0; o < o1; ++o) dw_acc1(p, in, o, acc + (o - o0) * p->out_ch);
}

/* ------------------------------------------------------- convolution, then fused pooling */
typedef void (*accs_fn)(const anyppg_conv_params *, const int8_t *, int, int, int32_t *);

static void requant_row(const anyppg_conv_params *p, const int32_t *acc, int8_t *out)
{
    for (int c = 0; c < p->out_ch; ++c) out[c] = conv_out(p, acc[c], c);
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
    if (p->pool_kind == ANYPPG_POOL_NONE) {
        for (int o = 0; o < p->out_len; o += 2) {
            const int e = o + 2 < p->out_len ? o + 2 : p->out_len;
            accs(p, in, o, e, acc);
            for (int r = 0; r < e - o; ++r) requant_row(p, acc + r * p->out_ch, out + (o + r) * p->out_ch);
        }
        return;
    }
    for (int q = 0; q < p->pool_out_len; ++q) {
        int s = q * p->pool_stride - p->pool_pad, e = s + p->pool_k;
        s = s < 0 ? 0 : s;
        e = e > p->out_len ? p->out_len : e;
        accs(p, in, s, e, acc);
        pool_rows(p, acc, e - s, out + q * p->out_ch);
    }
}

void anyppg_conv(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    conv_driver(p, in, out, scratch, conv_accs);
}

void anyppg_dwconv(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch)
{
    conv_driver(p, in, out, scratch, dw_accs);
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
void anyppg_add(const anyppg_add_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    for (int i = 0; i < p->n; ++i) {
        const int32_t sa = anyppg_requant((a[i] + p->a_off) * (1 << p->left_shift), p->a_mult, p->a_shift);
        const int32_t sb = anyppg_requant((b[i] + p->b_off) * (1 << p->left_shift), p->b_mult, p->b_shift);
        const int32_t v = anyppg_requant(sa + sb, p->out_mult, p->out_shift) + p->out_zp;
        out[i] = clamp8(v, p->act_min, p->act_max);
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
