/* TFLite's integer arithmetic (gemmlowp fixed point, requantisation), bit for bit.
 *
 * Every function here reproduces one published TFLite / gemmlowp rule so that the generated
 * inference matches TensorFlow Lite Micro's int8 reference kernels exactly: the Q31
 * SaturatingRoundingDoublingHighMul, RoundingDivideByPOT (round half away from zero),
 * the double-rounding MultiplyByQuantizedMultiplier, and the fixed-point exp / 1/(1+x) that
 * LOGISTIC and SOFTMAX use. Raw values are int32 with a stated number of integer bits. */
#ifndef ANYPPG_FIXEDPOINT_H
#define ANYPPG_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t anyppg_fx_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t anyppg_fx_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* (a * b * 2) >> 32 rounded to nearest (ties away from zero), saturating the one overflow case. */
static inline int32_t anyppg_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) return INT32_MAX;
    /* gemmlowp adds 2^30 (or 1 - 2^30 when negative) and truncates toward zero; both cases
     * equal floor((a*b + 2^30) / 2^31): one multiply, one add, one shift on Cortex-M */
    return (int32_t)(((int64_t)a * (int64_t)b + (1 << 30)) >> 31);
}

/* x / 2^e rounded half away from zero (0 <= e <= 31). */
static inline int32_t anyppg_rdivpot(int32_t x, int e)
{
    const int32_t mask = (int32_t)((1u << e) - 1u);
    const int32_t rem = x & mask;
    const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier: x * mult * 2^(shift - 31), two roundings. */
static inline int32_t anyppg_requant(int32_t x, int32_t mult, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return anyppg_rdivpot(anyppg_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT: x * 2^e, saturating for e > 0, rounding for e < 0. */
static inline int32_t anyppg_fx_mul_pot(int32_t x, int e)
{
    if (e == 0) return x;
    if (e < 0) return anyppg_rdivpot(x, -e);
    const int32_t thr = (int32_t)((1u << (31 - e)) - 1u);
    if (x > thr) return INT32_MAX;
    if (x < -thr) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), a and result with 0 integer bits. */
static inline int32_t anyppg_fx_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;      /* exp(-1/8) */
    const int32_t one_third = 715827883;
    const int32_t x = anyppg_fx_add(a, 1 << 28);   /* a + 1/8 */
    const int32_t x2 = anyppg_srdhm(x, x);
    const int32_t x3 = anyppg_srdhm(x2, x);
    const int32_t x4 = anyppg_srdhm(x2, x2);
    const int32_t x4_over_4 = anyppg_fx_mul_pot(x4, -2);
    const int32_t poly = anyppg_fx_mul_pot(
        anyppg_fx_add(anyppg_srdhm(anyppg_fx_add(x4_over_4, x3), one_third), x2), -1);
    return anyppg_fx_add(constant_term, anyppg_srdhm(constant_term, anyppg_fx_add(x, poly)));
}

/* exp(a) for a <= 0 with `int_bits` integer bits; result with 0 integer bits. */
static inline int32_t anyppg_fx_exp_neg(int32_t a, int int_bits)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535, 720401, 242};     /* exp(-2^k), k = -2..4 */
    const int frac = 31 - int_bits;
    const int32_t quarter = (int32_t)(1u << (frac - 2));
    const int32_t a_mod = anyppg_fx_sub(a & (quarter - 1), quarter);
    int32_t result = anyppg_fx_exp_quarter(anyppg_fx_mul_pot(a_mod, int_bits));
    const int32_t remainder = anyppg_fx_sub(a_mod, a);
    for (int k = -2; k <= 4; ++k) {
        if (int_bits > k && (remainder & (int32_t)(1u << (frac + k))))
            result = anyppg_srdhm(result, barrel[k + 2]);
    }
    if (int_bits > 5 && a < -(int32_t)(1u << (36 - int_bits))) result = 0;
    if (a == 0) result = INT32_MAX;
    return result;
}

/* 1 / (1 + a) for a in [0, 1), 0 integer bits in and out (Newton-Raphson, three steps). */
static inline int32_t anyppg_fx_one_over_one_plus(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = anyppg_fx_add(1515870810, anyppg_srdhm(half_den, -1010580540));   /* 48/17 - 32/17 d */
    for (int i = 0; i < 3; ++i) {
        const int32_t one_minus = anyppg_fx_sub(1 << 29, anyppg_srdhm(half_den, x));
        x = anyppg_fx_add(x, anyppg_fx_mul_pot(anyppg_srdhm(x, one_minus), 2));
    }
    return anyppg_fx_mul_pot(x, 1);
}

/* logistic(a) with `int_bits` integer bits in, 0 integer bits out. */
static inline int32_t anyppg_fx_logistic(int32_t a, int int_bits)
{
    if (a == 0) return 1 << 30;
    const int32_t neg_abs = a > 0 ? -a : a;
    const int32_t pos = anyppg_fx_one_over_one_plus(anyppg_fx_exp_neg(neg_abs, int_bits));
    return a > 0 ? pos : anyppg_fx_sub(INT32_MAX, pos);
}

#endif /* ANYPPG_FIXEDPOINT_H */
