/* anyppg_hr: the HR refinement of edge_runtime/hr_refine.py for a watch (float32, no malloc,
 * no tables, about 1.5 KB of Cortex-M4 code).
 *
 * The network's hr is a prior; the model's own int8 input window is the evidence:
 *
 *     candidates  g = ANYPPG_HR_BIN_MIN_BPM + k * ANYPPG_HR_REFINE_STEP_BPM  (g <= BIN_MAX)
 *                 with |g - hr| <= ANYPPG_HR_REFINE_RADIUS_BPM
 *     P(g)        = |sum_n x[n] exp(-2 pi i (g / 60) n / fs)|^2,  x[n] = in[n] - zero_point
 *     w(g)        = exp(-(g - hr)^2 / (2 sigma^2)) * (P(g) / max_g P)^power
 *     hr_out      = sum_g w(g) g / sum_g w(g)
 *
 * Usage, right after the inference, on the very int8 buffer it read:
 *
 *     float bpm = ANYPPG_OUTPUT_HR_SCALE * (float)(out.hr[0] - ANYPPG_OUTPUT_HR_ZERO_POINT);
 *     #if ANYPPG_HAS_HR_REFINE
 *     anyppg_hr_refine(model_in, ANYPPG_INPUT_PPG_ZERO_POINT, bpm, &bpm);
 *     #endif
 *
 * hr_out = hr_bpm where hr is not finite, where no candidate lies within the radius, or
 * where the window has no power at any candidate (all zeros): as edge_runtime does. Built
 * without a refinement (ANYPPG_HAS_HR_REFINE 0) the function copies hr_bpm. Call it for
 * windows without flags only, as the examples do: a flagged window shows no number on a watch,
 * and edge_runtime leaves a window padded from a short recording (too_short) unrefined.
 *
 * How (anyppg_hr.c): P(g) by Reinsch's form of the Goertzel recurrence (stable at the low
 * frequencies of a pulse, where the plain Goertzel loses most of float32's digits), eight
 * candidates per pass over the window; sin/cos of each candidate's frequency, log and exp by
 * short polynomials in +, *, fmaf only, so a build gives the same bits on a host and on a
 * Cortex-M4F (build with -ffp-contract=off, as the rest of the bundle). The weights are taken
 * relative to the largest one before exp, which changes nothing in exact arithmetic.
 * tests/firmware_bridge/test_hr_refine_c.py measures it against edge_runtime.hr_refine.
 */
#ifndef ANYPPG_HR_H
#define ANYPPG_HR_H

#include <stdint.h>

#include "anyppg_model_settings.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    ANYPPG_HR_OK = 0,
    ANYPPG_HR_ERR_NULL = -1 /* in or hr_out is NULL (hr_out is then untouched) */
};

/* Refine the network's hr_bpm on the model's int8 input `in` (ANYPPG_WINDOW_LEN samples, the
 * buffer the inference read) whose zero point is `zero_point`; the result to *hr_out (which
 * may be the same variable as the one hr_bpm was read from). */
int anyppg_hr_refine(const int8_t *in, int32_t zero_point, float hr_bpm, float *hr_out);

#ifdef __cplusplus
}
#endif

#endif /* ANYPPG_HR_H */
