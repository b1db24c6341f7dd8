/* int8 kernels of the generated inference (anyppg_model.c calls them with constant parameters).
 *
 * Activations are (L, C) int8, channels last: TFLite's NHWC with H == 1 or W == 1. Biases are
 * folded with the input zero point at generation time (bias + in_off * sum(w)); taps that fall
 * into padding subtract their share again, so every sum equals TFLite's
 * sum((x - zp) * w) + bias exactly. Built with __ARM_FEATURE_DSP (Cortex-M4/M7/M33/M55) the
 * hot loops use the dual 16-bit MACs (ACLE __smlad, __sxtb16); ANYPPG_NN_PORTABLE forces the
 * plain C path. Both give the same bytes. */
#ifndef ANYPPG_NN_H
#define ANYPPG_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { ANYPPG_POOL_NONE = 0, ANYPPG_POOL_MAX = 1, ANYPPG_POOL_AVG = 2 };

typedef struct {
    const int8_t *w;        /* conv: [out_ch][kc4] rows (k * in_ch taps, zero-padded to kc4), each channel
                             * pair's rows interleaved per 4 positions (4 of c, 4 of c + 1, ...), an
                             * odd last row plain; depthwise: unused */
    const int16_t *w16;     /* depthwise: [ceil(out_ch / 4)][k][4] int16, each group of 4 channels
                             * (c0, c2, c1, c3) per tap (SXTB16's order), missing channels 0 */
    const int32_t *bias;    /* bias + in_off * sum(w) per output channel */
    const int32_t *mult;    /* Q31 per-channel multipliers (layers without rq_fast) */
    const int8_t *shift;
    const int32_t *rq;      /* rq_fast layers instead: per channel (mult, 2^(e-1) + out_zp * 2^e) */
    const uint8_t *rq_e;    /* and e = -shift */
    int16_t in_len, in_ch, out_len, out_ch, k, stride, dil, pad, kc4, depth_mult;
    int32_t in_off, out_zp;
    int8_t act_min, act_max;
    int8_t rq_fast;         /* 1: every shift in [-22, -1] and |acc| < 2^30 (checked at generation) */
    int8_t full_range;      /* act_min == -128 and act_max == 127: saturation alone clamps */
    /* pooling fused after the convolution (non-overlapping windows): output is the pool's */
    int8_t pool_kind, pool_act_min, pool_act_max;
    int8_t pool_max_raw;    /* 1: every shift <= 0, so max of accumulators, then requantise */
    int16_t pool_k, pool_stride, pool_pad, pool_out_len;
} anyppg_conv_params;

typedef struct {
    const int8_t *w;        /* [n_out][n_in] */
    const int32_t *bias;    /* folded as for conv */
    const int32_t *mult;
    const int8_t *shift;
    int16_t n_in, n_out;
    int32_t out_zp;
    int8_t act_min, act_max;
} anyppg_fc_params;

typedef struct {
    int16_t in_len, ch, out_len, k, stride, pad;
    int8_t act_min, act_max;
} anyppg_pool_params;

typedef struct {
    int32_t n, left_shift, a_off, b_off, out_zp;
    int32_t a_mult, b_mult, out_mult;
    int8_t a_shift, b_shift, out_shift, act_min, act_max;
} anyppg_add_params;

typedef struct {
    int32_t n, in_zp, mult, left_shift, radius;
} anyppg_logistic_params;

typedef struct {
    int32_t rows, depth, mult, left_shift, diff_min;
} anyppg_softmax_params;

/* scratch (4-byte aligned), ANYPPG_CONV_SCRATCH(out_ch, rows, kc4) bytes: int32 accumulator
 * rows (rows = max(2, pool_k)), two int16 im2col columns, one int8 border window. */
#define ANYPPG_CONV_SCRATCH(out_ch, rows, kc4) (4 * (out_ch) * (rows) + 4 * (kc4) + (kc4))
void anyppg_conv(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch);
void anyppg_dwconv(const anyppg_conv_params *p, const int8_t *in, int8_t *out, void *scratch);
/* DEPTHWISE_CONV_2D feeding a 1x1 CONV_2D (and its fused pool): the depthwise output is made
 * ANYPPG_DWPW_ROWS(pw) rows at a time into scratch and consumed there, so it never exists whole.
 * scratch: ANYPPG_DWPW_SCRATCH(dw_ch, pw scratch bytes) */
/* an even number of pool windows where 2 fit in 16 rows: the fused max pool takes them in pairs */
#define ANYPPG_DWPW_WINDOWS(pool_k) ((pool_k) > 1 ? ((16 / (pool_k)) > 1 ? (16 / (pool_k)) & ~1 : 1) : 16)
#define ANYPPG_DWPW_ROWS(pool_k) ((pool_k) > 1 ? (pool_k) * ANYPPG_DWPW_WINDOWS(pool_k) : 16)
#define ANYPPG_DWPW_SCRATCH(dw_ch, pool_k, pw_scratch) \
    ((ANYPPG_DWPW_ROWS(pool_k) * (dw_ch) + 3) / 4 * 4 + (pw_scratch))
void anyppg_dwconv_pw(const anyppg_conv_params *dw, const anyppg_conv_params *pw, const int8_t *in,
                      int8_t *out, void *scratch);
void anyppg_fc(const anyppg_fc_params *p, const int8_t *in, int8_t *out);
void anyppg_maxpool(const anyppg_pool_params *p, const int8_t *in, int8_t *out);
void anyppg_avgpool(const anyppg_pool_params *p, const int8_t *in, int8_t *out);
/* scratch: ANYPPG_ADD_SCRATCH bytes (4-byte aligned) or 0 */
#define ANYPPG_ADD_SCRATCH 2048
#define ANYPPG_ADD_TABLE_MIN_N 512
void anyppg_add(const anyppg_add_params *p, const int8_t *a, const int8_t *b, int8_t *out, void *scratch);
/* ADD then a non-overlapping MAX_POOL_2D (q: the pool over the (L, C) sum), requantising only the
 * maximum of each window (the output requantisation is non-decreasing); scratch as for add. */
void anyppg_add_maxpool(const anyppg_add_params *p, const anyppg_pool_params *q, const int8_t *a,
                        const int8_t *b, int8_t *out, void *scratch);
void anyppg_pad(int in_len, int ch, int out_len, int before, int8_t value, const int8_t *in, int8_t *out);
void anyppg_logistic(const anyppg_logistic_params *p, const int8_t *in, int8_t *out);
void anyppg_softmax(const anyppg_softmax_params *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif
#endif /* ANYPPG_NN_H */
