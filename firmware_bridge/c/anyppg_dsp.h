/* anyppg_dsp: the AnyPPG preprocessing for a watch, in C (float32, no malloc, fixed memory).
 *
 * The same definition as the Python package edge_runtime (resample.StreamResampler, then
 * preprocess.ppg_windows): the sensor stream is resampled to the model's rate by a stateful
 * polyphase FIR, cut into windows at the hop, and each window is band-passed zero-phase
 * (scipy.signal.sosfiltfilt: odd extension, steady-state initial conditions), z-scored,
 * checked (quality flags) and quantised to the model's int8 input (TFLite's rounding, half
 * away from zero). All rates, filter taps and thresholds come from the generated
 * anyppg_model_settings.h / anyppg_dsp_tables.c; nothing here is model-specific.
 *
 * Streaming API (one anyppg_dsp_t per sensor; not re-entrant per instance):
 *
 *     static anyppg_dsp_t dsp;                  // ~11 KB at 125 Hz: keep it static
 *     static anyppg_dsp_window_t win;           // start, flags, drops: 16 bytes
 *     static int8_t model_in[ANYPPG_WINDOW_LEN]; // or the inference's own input tensor
 *     if (anyppg_dsp_init(&dsp, 64.0f) != ANYPPG_DSP_OK) { ... rate not in this build ... }
 *     // sensor interrupt / FIFO drain, any chunk size:
 *     anyppg_dsp_push(&dsp, samples, n);
 *     // main loop: at most one window per call, so call until it returns 0
 *     while (anyppg_dsp_poll(&dsp, &win, model_in) == 1) {
 *         if (!(win.flags & ANYPPG_FLAGS_LOW_QUALITY)) run_model(model_in); // int8, WINDOW_LEN
 *     }
 *
 * push() only resamples into a ring buffer; the window work (filter, z-score, flags,
 * quantisation) happens in poll(), which writes the int8 model input straight into the
 * caller's buffer: there is no float copy of the window. The ring holds one window and one
 * hop behind it: an app that stops polling loses the oldest pending window, never newer data;
 * each loss is counted (windows_dropped, and win.dropped_before on the next window it gets).
 * With hop >= window (the default spec) each window is filtered in the ring itself.
 * anyppg_dsp_window_z() gives the float window (edge_runtime's x) for tests and debugging.
 *
 * Non-finite samples (NaN, +-inf) hold the last finite value and flag the windows they touch
 * (ANYPPG_FLAG_NAN_GAP). A window whose arithmetic overflows float32 (|samples| near 1e38)
 * comes back as zeros with ANYPPG_FLAG_AMPLITUDE. For a finite recording, anyppg_dsp_finish()
 * ends the stream like edge_runtime does for a file (the last sample held; with pad_short, a
 * recording shorter than one window is repeated to one window and flagged too_short).
 *
 * Results are the same bits on every target: the multiply-adds that are fused are written
 * fmaf() (one VFMA on a Cortex-M4F, the C library's exact fmaf on a host), the rest is integer
 * or plain float32 arithmetic; build with -ffp-contract=off so the compiler fuses nothing else.
 *
 * Where it can differ from edge_runtime (measured by tests/firmware_bridge/test_dsp_golden.py:
 * z within ~1e-5, int8 equal on > 99.9% of samples, flags equal on every real window):
 *  - float32 resampling (fused multiply-adds, oldest input first) and raw statistics, a
 *    fixed-point band-pass (float64 in Python), integer sums for the z-score;
 *  - flat runs: a run of identical samples still going on when a window is handed out counts
 *    with the length seen so far (Python sees the whole recording); output-to-input sample
 *    times are exact rationals (Python's map_mask rounds n * fs_in / fs_out in float64);
 *  - a window whose samples overflow float32 comes back zeroed and flagged amplitude.
 */
#ifndef ANYPPG_DSP_H
#define ANYPPG_DSP_H

#include <stddef.h>
#include <stdint.h>

#include "anyppg_model_settings.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    ANYPPG_DSP_OK = 0,
    ANYPPG_DSP_ERR_NULL = -1,     /* a NULL state/window, or NULL samples with n > 0 */
    ANYPPG_DSP_ERR_RATE = -2,     /* init: the rate is not this build's ANYPPG_SENSOR_FS_HZ */
    ANYPPG_DSP_ERR_FINISHED = -3, /* push after anyppg_dsp_finish */
    ANYPPG_DSP_ERR_STATE = -4     /* the state was not initialised by anyppg_dsp_init */
};

/* What poll() says about the window it wrote to the caller's int8 buffer. */
typedef struct {
    int64_t start;               /* first sample, at ANYPPG_PPG_FS_HZ from the stream's start */
    uint32_t dropped_before;     /* windows lost to overflow since the previous window */
    uint8_t flags;               /* ANYPPG_FLAG_* bits; 0 = usable */
} anyppg_dsp_window_t;

/* A long run of identical sensor samples, in input-sample indices [start, end). */
typedef struct {
    int64_t start;
    int64_t end; /* INT64_MAX while the run is still going */
} anyppg_dsp_run_t;

/* A resampled sample (float) that poll() turns into a filtered integer where it lies. */
typedef union {
    float f;
    int32_t i;
} anyppg_dsp_cell_t;

/* Windows whose missing marks are kept: all that can have samples in the ring, plus one. */
#define ANYPPG_MISS_SLOTS ((ANYPPG_RING_LEN + ANYPPG_HOP_LEN - 1) / ANYPPG_HOP_LEN + 1)

/* All state; treat as opaque. Sizes are compile-time constants of the settings header. */
typedef struct {
    uint32_t magic;
    uint8_t finished;
    uint8_t pad_short;
    uint8_t z_state;     /* last window for anyppg_dsp_window_z: 0 none, 1 cells, 2 zeros */
    /* resampler (edge_runtime/resample.py): cleaned inputs relative to `offset` */
    float hist[2 * ANYPPG_RS_HIST];       /* each input twice, so the taps read forwards */
    uint8_t hist_miss[ANYPPG_RS_HIST];
    float offset;        /* first cleaned sample: keeps float32 precise on large DC levels */
    float last_finite;
    float prev_raw;      /* last sensor sample, for the flat-run check */
    int64_t n_in;        /* sensor samples received */
    int64_t n_out;       /* resampled samples produced */
    uint32_t rs_head;    /* inputs stored in hist (mod 2^32) */
    int32_t rs_lag;      /* inputs stored - n_out * DOWN div UP */
    uint32_t rs_r;       /* n_out * DOWN mod UP */
    uint32_t rs_last_miss; /* rs_head of the last missing input */
    uint32_t run_len;    /* identical sensor samples so far (saturates at ANYPPG_FLAT_RUN_IN) */
    /* constant runs on the sensor's own samples (edge_runtime.preprocess.constant_runs) */
    anyppg_dsp_run_t runs[ANYPPG_FLAT_RUNS_MAX];
    uint32_t n_runs;
    /* the resampled stream: one window plus one hop */
    anyppg_dsp_cell_t ring[ANYPPG_RING_LEN];
    uint32_t ring_pos;   /* ring index of sample n_out */
    int32_t room;        /* samples that fit before the pending window is overwritten */
    uint32_t to_next;    /* samples until the next window on the hop grid starts */
    uint32_t out_slot;   /* win_miss slot of the latest window started */
    uint32_t next_slot;  /* win_miss slot of the next window to hand out */
    uint8_t win_miss[ANYPPG_MISS_SLOTS]; /* a window has a missing sample */
    int64_t next_start;  /* first sample of the next window to hand out */
    uint32_t pending_dropped;
    uint32_t windows_dropped; /* windows lost because the app did not poll in time */
    int64_t total_out;   /* after finish: the number of resampled samples of the recording */
    /* the last window handed out, for anyppg_dsp_window_z: z[i] = (cell[i] - z_mean) * z_inv */
    uint32_t z_first;    /* its ring index (in-place builds) */
    float z_mean;
    float z_inv;
#if !ANYPPG_DSP_IN_PLACE
    anyppg_dsp_cell_t work[ANYPPG_WINDOW_LEN]; /* overlapping windows: filtered out of the ring */
#endif
} anyppg_dsp_t;

/* Set up for a sensor at `sensor_fs_hz`; ANYPPG_DSP_ERR_RATE unless it is this build's rate. */
int anyppg_dsp_init(anyppg_dsp_t *s, float sensor_fs_hz);

/* Append n samples (any n, including 0: x may then be NULL). Never blocks, never fails on
 * the values themselves (NaN/inf are flagged). */
int anyppg_dsp_push(anyppg_dsp_t *s, const float *x, size_t n);

/* If a window is ready: writes its int8 model input, (1, ANYPPG_WINDOW_LEN, 1) NWC, to
 * q[0 .. ANYPPG_WINDOW_LEN - 1] (e.g. the inference's input tensor), its start and flags to
 * *w, and returns 1. 0 if none is ready (q untouched), or a negative ANYPPG_DSP_ERR_*. */
int anyppg_dsp_poll(anyppg_dsp_t *s, anyppg_dsp_window_t *w, int8_t *q);

/* The float window (band-passed, z-scored: edge_runtime's x) of the window the last poll
 * returned, into z[0 .. ANYPPG_WINDOW_LEN - 1]. Only until the next push, poll or finish on s
 * (it is recomputed from the filtered samples still in the ring): ANYPPG_DSP_ERR_STATE then. */
int anyppg_dsp_window_z(const anyppg_dsp_t *s, float *z);

/* End a finite recording: hold its last sample to produce the remaining windows (poll them
 * as usual). pad_short != 0: a recording shorter than one window becomes one window, tiled,
 * flagged ANYPPG_FLAG_TOO_SHORT. Further pushes return ANYPPG_DSP_ERR_FINISHED. */
int anyppg_dsp_finish(anyppg_dsp_t *s, int pad_short);

#ifdef __cplusplus
}
#endif

#endif /* ANYPPG_DSP_H */
