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
 * without a refinement (ANYPPG_HAS_HR_REFINE 0) the function copies hr_bpm. anyppg_hr_show
 * (below) calls it where a watch shows hr, as the examples do.
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

#if defined(ANYPPG_OUTPUT_HR_SCALE) && defined(ANYPPG_FLAGS_LOW_QUALITY) /* headers since anyppg_hr_show */
/* What a watch shows for one window: the decision of edge_runtime/show.py (the Python
 * runtime's), on the int8 outputs, with the integer thresholds generated from the sidecar:
 *
 *     flags & ANYPPG_FLAGS_LOW_QUALITY                 nothing    withheld ANYPPG_WITHHELD_FLAGS
 *     quality_logit < ANYPPG_SHOW_QUALITY_LOGIT_MIN_Q  nothing    withheld ANYPPG_WITHHELD_MODEL_QUALITY
 *     hr_confidence < ANYPPG_SHOW_HR_CONFIDENCE_MIN_Q  all but hr withheld ANYPPG_WITHHELD_HR_CONFIDENCE
 *     otherwise                                        all, with hr_bpm = the network's hr refined
 *                                                      on `in` (unrefined for ANYPPG_FLAG_TOO_SHORT),
 *                                                      or, with ANYPPG_HAS_AF_BEATS and af_logit >=
 *                                                      ANYPPG_AF_BEATS_AF_LOGIT_MIN_Q, the beat rate
 *                                                      of `in` (edge_runtime/af_beats.py)
 *
 * The thresholds are the smallest codes the Python runtime lets through (found at generation on
 * all 256 codes), so the watch withholds exactly the windows the notebook withholds, with no
 * float and no exp. Usage, after the inference on a window whose flags are not low quality:
 *
 *     anyppg_shown_t s;
 *     anyppg_hr_show(win.flags, out.quality_logit[0], out.hr_confidence[0], out.hr[0],
 *                    out.af_logit[0], model_in, ANYPPG_INPUT_PPG_ZERO_POINT, &s);
 *     if (s.show & ANYPPG_SHOW_HR) display(s.hr_bpm);
 *
 * A model without a quality_logit or hr_confidence output gets -128 for its threshold (pass any
 * code). The beat count costs one pass over the window and 512 bytes of stack. hr_bpm is NaN unless ANYPPG_SHOW_HR is set. */
#define ANYPPG_SHOW_VALUES 1u            /* af and the other outputs may be shown */
#define ANYPPG_SHOW_HR 2u                /* and hr_bpm */
#define ANYPPG_WITHHELD_FLAGS 1u         /* a quality flag (win.flags) */
#define ANYPPG_WITHHELD_MODEL_QUALITY 2u /* the model's quality_logit */
#define ANYPPG_WITHHELD_HR_CONFIDENCE 4u /* the model's hr_confidence (hr only) */

typedef struct {
    uint8_t show;     /* ANYPPG_SHOW_* bits */
    uint8_t withheld; /* ANYPPG_WITHHELD_* bit: why something is not shown; 0 = all shown */
    float hr_bpm;     /* the number to show where show & ANYPPG_SHOW_HR, else NaN */
} anyppg_shown_t;

/* ANYPPG_HR_OK, or ANYPPG_HR_ERR_NULL for a NULL in or shown (shown untouched). af_logit is
 * read only with ANYPPG_HAS_AF_BEATS. */
int anyppg_hr_show(uint8_t flags, int8_t quality_logit, int8_t hr_confidence, int8_t hr,
                   int8_t af_logit, const int8_t *in, int32_t zero_point, anyppg_shown_t *shown);
#endif

#ifdef __cplusplus
}
#endif

#endif /* ANYPPG_HR_H */
