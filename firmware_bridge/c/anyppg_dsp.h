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
 *     static anyppg_dsp_t dsp;                  // ~18 KB at 125 Hz: keep it static
 *     static anyppg_dsp_window_t win;           // ~6.3 KB: the model input and its flags
 *     if (anyppg_dsp_init(&dsp, 64.0f) != ANYPPG_DSP_OK) { ... rate not in this build ... }
 *     // sensor interrupt / FIFO drain, any chunk size:
 *     anyppg_dsp_push(&dsp, samples, n);
 *     // main loop: at most one window per call, so call until it returns 0
 *     while (anyppg_dsp_poll(&dsp, &win) == 1) {
 *         if (win.flags == 0) run_model(win.q);           // int8, ANYPPG_WINDOW_LEN samples
 *     }
 *
 * push() only resamples into a ring buffer; the window work (filter, z-score, flags,
 * quantisation) happens in poll(). The ring holds one window plus one hop: an app that stops
 * polling loses the oldest pending window, never newer data; each loss is counted
 * (windows_dropped, and win.dropped_before on the next window it gets).
 *
 * Non-finite samples (NaN, +-inf) hold the last finite value and flag the windows they touch
 * (ANYPPG_FLAG_NAN_GAP). A window whose arithmetic overflows float32 (|samples| near 1e38)
 * comes back as zeros with ANYPPG_FLAG_AMPLITUDE. For a finite recording, anyppg_dsp_finish()
 * ends the stream like edge_runtime does for a file (the last sample held; with pad_short, a
 * recording shorter than one window is repeated to one window and flagged too_short).
 *
 * Build with -ffp-contract=off (no fused multiply-add) for results identical on every target.
 *
 * Where it can differ from edge_runtime (measured by tests/firmware_bridge/test_dsp_golden.py:
 * z within ~1e-5, int8 equal on > 99.99% of samples, flags equal on every real window):
 *  - float32 resampling and z-score, a Q29 fixed-point band-pass (float64 in Python);
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

/* One preprocessed window: what the model takes, with its quality flags. */
typedef struct {
    float z[ANYPPG_WINDOW_LEN];  /* band-passed, z-scored window (float, edge_runtime's x) */
    int8_t q[ANYPPG_WINDOW_LEN]; /* int8 model input: (1, ANYPPG_WINDOW_LEN, 1), NWC */
    int64_t start;               /* first sample, at ANYPPG_PPG_FS_HZ from the stream's start */
    uint32_t dropped_before;     /* windows lost to overflow since the previous window */
    uint8_t flags;               /* ANYPPG_FLAG_* bits; 0 = usable */
} anyppg_dsp_window_t;

/* A long run of identical sensor samples, in input-sample indices [start, end). */
typedef struct {
    int64_t start;
    int64_t end; /* INT64_MAX while the run is still going */
} anyppg_dsp_run_t;

/* All state; treat as opaque. Sizes are compile-time constants of the settings header. */
typedef struct {
    uint32_t magic;
    int finished;
    /* resampler (edge_runtime/resample.py): cleaned inputs relative to `offset` */
    float hist[2 * ANYPPG_RS_HIST];       /* each input twice, so the taps read forwards */
    uint8_t hist_miss[2 * ANYPPG_RS_HIST];
    float offset;        /* first cleaned sample: keeps float32 precise on large DC levels */
    float last_finite;
    float held;          /* last cleaned sample (relative), held after finish */
    uint8_t held_miss;
    int64_t n_in;        /* sensor samples received */
    int64_t n_avail;     /* inputs the resampler may read (n_in, plus held ones after finish) */
    int64_t n_out;       /* resampled samples produced */
    int64_t next_b;      /* last input of output n_out: (n_out*down + H) div up ... */
    uint32_t next_p;     /* ... and its phase: (n_out*down + H) mod up */
    int64_t next_q;      /* n_out*down div up ... */
    uint32_t next_r;     /* ... and mod up */
    /* constant runs on the sensor's own samples (edge_runtime.preprocess.constant_runs) */
    float prev_raw;
    int64_t run_start;
    anyppg_dsp_run_t runs[ANYPPG_FLAT_RUNS_MAX];
    uint32_t n_runs;
    /* the resampled stream: one window plus one hop */
    float ring[ANYPPG_RING_LEN];
    uint8_t ring_miss[ANYPPG_RING_LEN];
    uint32_t ring_pos;   /* ring index of sample n_out */
    int64_t next_start;  /* first sample of the next window to hand out */
    uint32_t pending_dropped;
    uint32_t windows_dropped; /* windows lost because the app did not poll in time */
    int pad_short;
    int64_t total_out;   /* after finish: the number of resampled samples of the recording */
    /* scratch for the zero-phase filter: the window with its odd extensions */
    union {
        float f[ANYPPG_WINDOW_LEN + 2 * ANYPPG_BP_PADLEN];
        int32_t i[ANYPPG_WINDOW_LEN + 2 * ANYPPG_BP_PADLEN];
    } ext;
} anyppg_dsp_t;

/* Set up for a sensor at `sensor_fs_hz`; ANYPPG_DSP_ERR_RATE unless it is this build's rate. */
int anyppg_dsp_init(anyppg_dsp_t *s, float sensor_fs_hz);

/* Append n samples (any n, including 0: x may then be NULL). Never blocks, never fails on
 * the values themselves (NaN/inf are flagged). */
int anyppg_dsp_push(anyppg_dsp_t *s, const float *x, size_t n);

/* 1 and the next window in *w if one is ready, 0 if not, or a negative ANYPPG_DSP_ERR_*. */
int anyppg_dsp_poll(anyppg_dsp_t *s, anyppg_dsp_window_t *w);

/* End a finite recording: hold its last sample to produce the remaining windows (poll them
 * as usual). pad_short != 0: a recording shorter than one window becomes one window, tiled,
 * flagged ANYPPG_FLAG_TOO_SHORT. Further pushes return ANYPPG_DSP_ERR_FINISHED. */
int anyppg_dsp_finish(anyppg_dsp_t *s, int pad_short);

#ifdef __cplusplus
}
#endif

#endif /* ANYPPG_DSP_H */
