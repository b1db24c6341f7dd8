/* anyppg_dsp.c: see anyppg_dsp.h for the API and the definition it follows.
 *
 * Arithmetic is float32 and integer (the Cortex-M4F has a single-precision FPU only). Two
 * choices keep it close to edge_runtime's float64 on real sensors, whose DC level is often
 * thousands of times their pulse amplitude:
 *  - the resampler works on samples minus the stream's first sample (`offset`), and adds back
 *    offset * (sum of the phase's taps - 1), which is the same sum in exact arithmetic;
 *  - a window is centred on its mean before the band-pass, which removes a constant exactly
 *    (zero gain at DC, steady-state initial conditions), so the result is unchanged.
 *
 * Memory: the ring of resampled floats is the only window-sized buffer. poll() turns the
 * window's cells into integers, band-passes them there (the odd extensions at both ends live
 * on the stack), takes the z-score's sums from the integers and writes int8 to the caller.
 */
#include "anyppg_dsp.h"

#include <math.h>
#include <string.h>

#define ANYPPG_DSP_MAGIC 0x41505047u /* "APPG" */
#define ANYPPG_RUN_OPEN INT64_MAX
#define ANYPPG_HIST_MASK ((uint32_t)ANYPPG_RS_HIST - 1u)
/* Output n's last input b and phase p: n*DOWN + HALF = b*UP + p. With n*DOWN = q*UP + r,
 * b = q + HB + (r + HOFF >= UP) and p = (r + HOFF) mod UP. */
#define ANYPPG_RS_HB (ANYPPG_RS_HALF / ANYPPG_RS_UP)
#define ANYPPG_RS_HOFF (ANYPPG_RS_HALF % ANYPPG_RS_UP)
#define ANYPPG_RS_DQ (ANYPPG_RS_DOWN / ANYPPG_RS_UP)
#define ANYPPG_RS_DR (ANYPPG_RS_DOWN % ANYPPG_RS_UP)

#if (ANYPPG_RS_HIST & (ANYPPG_RS_HIST - 1)) != 0 || ANYPPG_RS_HIST < ANYPPG_RS_TAPS + 3 || \
    ANYPPG_RS_HIST < ANYPPG_RS_HALF / ANYPPG_RS_UP + 4
#error "ANYPPG_RS_HIST must be a power of two covering the taps and the missing-sample check"
#endif
#if ANYPPG_DSP_IN_PLACE && ANYPPG_RING_LEN < 2 * ANYPPG_HOP_LEN
#error "in-place filtering needs a ring of two hops (each window in one piece)"
#endif


#if defined(__GNUC__)
#define ANYPPG_INLINE static inline __attribute__((always_inline))
#define ANYPPG_NOINLINE __attribute__((noinline))
#else
#define ANYPPG_INLINE static inline
#define ANYPPG_NOINLINE
#endif

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
    s->room = ANYPPG_RING_LEN;
    s->rs_last_miss = 0x80000000u; /* long ago */
    s->out_slot = ANYPPG_MISS_SLOTS - 1u; /* the first sample starts window 0 in slot 0 */
    s->prev_raw = NAN; /* equals nothing: the first sample starts a run */
    s->run_len = 0u;
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

/* Sensor sample v of this push's x is the ANYPPG_FLAT_RUN_IN-th equal one in a row: a run
 * opens. (Its stream index is worked out here, off the per-sample path.) */
ANYPPG_NOINLINE static void open_run(anyppg_dsp_t *s, const float *x, const float *v)
{
    int64_t i = s->n_in + (v - x);
    forget_old_runs(s);
    s->runs[s->n_runs].start = i - (ANYPPG_FLAT_RUN_IN - 1);
    s->runs[s->n_runs].end = ANYPPG_RUN_OPEN;
    s->n_runs++;
}

/* ------------------------------------------------------------------ resampled ring */
/* Where the next resampled sample goes, in locals while push() runs. Room (before the
 * pending window would be overwritten), the hop grid and the ring's end are events that
 * come every so many samples: `left` counts down to the nearest, so a sample costs a store,
 * an increment and a count. */
typedef struct {
    uint32_t pos;     /* ring index of the next sample (n_out mod RING_LEN) */
    uint32_t left;    /* samples before the next event */
    uint32_t span;    /* `left` when it was last set */
    uint32_t slot;    /* miss slot of the latest window started */
    int32_t room;     /* as of the last event: samples that fit before the pending window goes */
    uint32_t to_next; /* as of the last event: samples until the next window starts */
    int64_t count;    /* samples written before the last event */
} anyppg_out_t;

static anyppg_out_t out_begin(const anyppg_dsp_t *s)
{
    anyppg_out_t o = {s->ring_pos, 0u, 0u, s->out_slot, s->room, s->to_next, 0};
    return o;
}

static uint32_t next_slot(uint32_t slot)
{
    return slot + 1u == ANYPPG_MISS_SLOTS ? 0u : slot + 1u;
}

/* Writing sample n_out overwrites n_out - RING_LEN: if the pending window still needs it, the
 * app has not polled in time and that window is lost (the oldest data goes first). */
static int32_t drop_pending(anyppg_dsp_t *s, int32_t room)
{
    while (room <= 0) {
        s->next_start += ANYPPG_HOP_LEN;
        s->next_slot = next_slot(s->next_slot);
        room += ANYPPG_HOP_LEN;
        s->windows_dropped++;
        s->pending_dropped++;
    }
    return room;
}

/* Account for the samples written since the last event; then, before the next sample, drop
 * a window if there is no room, start a window on the hop grid, wrap the ring. */
ANYPPG_INLINE void out_event(anyppg_dsp_t *s, anyppg_out_t *o, int next)
{
    uint32_t done = o->span - o->left;
    o->room -= (int32_t)done;
    o->to_next -= done;
    o->count += done;
    o->span = o->left;
    if (!next) {
        return;
    }
    if (o->room <= 0) {
        o->room = drop_pending(s, o->room);
    }
    if (o->to_next == 0u) { /* a window starts here: its missing mark starts clear */
        o->slot = next_slot(o->slot);
        s->win_miss[o->slot] = 0u;
        o->to_next = ANYPPG_HOP_LEN;
    }
    if (o->pos == ANYPPG_RING_LEN) {
        o->pos = 0u;
    }
    uint32_t left = ANYPPG_RING_LEN - o->pos;
    left = o->to_next < left ? o->to_next : left;
    left = (uint32_t)o->room < left ? (uint32_t)o->room : left;
    o->left = o->span = left;
}

static void out_end(anyppg_dsp_t *s, anyppg_out_t *o)
{
    out_event(s, o, 0);
    s->ring_pos = o->pos == ANYPPG_RING_LEN ? 0u : o->pos;
    s->room = o->room;
    s->to_next = o->to_next;
    s->out_slot = o->slot;
    s->n_out += o->count;
}

/* A missing sample `into` samples after the start of the window in `slot`: mark that window
 * and every earlier one that still covers it (overlapping windows). */
static void mark_missing(anyppg_dsp_t *s, uint32_t slot, uint32_t into)
{
    for (uint32_t j = 0; into < ANYPPG_WINDOW_LEN && j < ANYPPG_MISS_SLOTS; j++) {
        s->win_miss[slot] = 1u;
        slot = slot == 0u ? ANYPPG_MISS_SLOTS - 1u : slot - 1u;
        into += ANYPPG_HOP_LEN;
    }
}

ANYPPG_INLINE void out_put(anyppg_dsp_t *s, anyppg_out_t *o, float v, uint32_t miss)
{
    if (o->left == 0u) {
        out_event(s, o, 1);
    }
    if (miss) { /* this sample is to_next - (span - left) before the next window start */
        mark_missing(s, o->slot, ANYPPG_HOP_LEN - (o->to_next - (o->span - o->left)));
    }
    s->ring[o->pos++].f = v;
    o->left--;
}

/* ------------------------------------------------------------------ resampler */
/* The resampler's position, in locals while push() runs. With q, r = divmod(n_out * DOWN,
 * UP), output n_out's last input is b = q + need, need = HB (+1 when r + HOFF reaches UP),
 * and its phase p = (r + HOFF) mod UP (resample.py step 5); lag = inputs stored - q, so the
 * output is ready once lag > need. */
typedef struct {
    uint32_t head;      /* inputs stored (mod 2^32); hist slot of the next one */
    int32_t lag;
    uint32_t r;
    int32_t need;       /* of the next output */
    uint32_t p;         /* of the next output */
    uint32_t last_miss; /* head of the last missing input stored */
} anyppg_rs_t;

ANYPPG_INLINE void rs_phase(anyppg_rs_t *rs)
{
    rs->p = rs->r + ANYPPG_RS_HOFF;
    rs->need = ANYPPG_RS_HB;
    if (rs->p >= ANYPPG_RS_UP) {
        rs->p -= ANYPPG_RS_UP;
        rs->need++;
    }
}

/* Output n's missing mark (resample.py step 6): an input within one input period of its
 * time, i.e. x[i] for i = q - 1 + (r > 0) .. q + 1. Missing inputs are rare: the marks are
 * read only when the latest one is that recent (the age wraps after 2^32 inputs, which only
 * sends a check the slow way). */
ANYPPG_INLINE uint32_t rs_missing(const anyppg_dsp_t *s, const anyppg_rs_t *rs)
{
    if (rs->head - 1u - rs->last_miss > (uint32_t)rs->lag) {
        return 0u;
    }
    uint32_t i = rs->head - (uint32_t)rs->lag + 1u; /* q + 1 */
    return (uint32_t)(s->hist_miss[i & ANYPPG_HIST_MASK] | s->hist_miss[(i - 1u) & ANYPPG_HIST_MASK] |
                      (rs->r > 0u ? 0u : s->hist_miss[(i - 2u) & ANYPPG_HIST_MASK]));
}

/* acc = fma(h[N-1], x[N-1], ... fma(h[0], x[0], acc)), one fused multiply-add after another.
 * On a Cortex-M4F, N taps and N inputs come in with one VLDM each and N VFMAs follow (the
 * compiler would issue one load per operand); elsewhere the C library's exact fmaf. The same
 * bits either way: each step is one correctly rounded fused multiply-add, in the same order. */
#if defined(__GNUC__) && defined(__ARM_ARCH_7EM__) && defined(__ARM_FP) && (__ARM_FP & 4)
#define ANYPPG_VFMA(a, b) "vfma.f32 %[acc], s" #a ", s" #b "\n\t"
#define ANYPPG_FMA_BLOCK(N, LOADS, FMAS, ...)                                                 \
    ANYPPG_INLINE float fma##N(const float **hp, const float **xp, float acc)                 \
    {                                                                                          \
        const float *h = *hp, *x = *xp;                                                        \
        __asm__(LOADS FMAS                                                                     \
                : [acc] "+t"(acc), [h] "+r"(h), [x] "+r"(x)                                    \
                : "m"(*(const float(*)[N])h), "m"(*(const float(*)[N])x)                       \
                : __VA_ARGS__);                                                                \
        *hp = h;                                                                               \
        *xp = x;                                                                               \
        return acc;                                                                            \
    }
ANYPPG_FMA_BLOCK(12, "vldmia %[h]!, {s8-s19}\n\tvldmia %[x]!, {s20-s31}\n\t",
                 ANYPPG_VFMA(8, 20) ANYPPG_VFMA(9, 21) ANYPPG_VFMA(10, 22) ANYPPG_VFMA(11, 23)
                 ANYPPG_VFMA(12, 24) ANYPPG_VFMA(13, 25) ANYPPG_VFMA(14, 26) ANYPPG_VFMA(15, 27)
                 ANYPPG_VFMA(16, 28) ANYPPG_VFMA(17, 29) ANYPPG_VFMA(18, 30) ANYPPG_VFMA(19, 31),
                 "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18",
                 "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29",
                 "s30", "s31")
ANYPPG_FMA_BLOCK(8, "vldmia %[h]!, {s16-s23}\n\tvldmia %[x]!, {s24-s31}\n\t",
                 ANYPPG_VFMA(16, 24) ANYPPG_VFMA(17, 25) ANYPPG_VFMA(18, 26) ANYPPG_VFMA(19, 27)
                 ANYPPG_VFMA(20, 28) ANYPPG_VFMA(21, 29) ANYPPG_VFMA(22, 30) ANYPPG_VFMA(23, 31),
                 "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26",
                 "s27", "s28", "s29", "s30", "s31")
ANYPPG_FMA_BLOCK(4, "vldmia %[h]!, {s24-s27}\n\tvldmia %[x]!, {s28-s31}\n\t",
                 ANYPPG_VFMA(24, 28) ANYPPG_VFMA(25, 29) ANYPPG_VFMA(26, 30) ANYPPG_VFMA(27, 31),
                 "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31")
#else
#define ANYPPG_FMA_BLOCK(N)                                                                    \
    ANYPPG_INLINE float fma##N(const float **hp, const float **xp, float acc)                 \
    {                                                                                          \
        for (int j = 0; j < N; j++) {                                                          \
            acc = fmaf(*(*hp)++, *(*xp)++, acc);                                               \
        }                                                                                      \
        return acc;                                                                            \
    }
ANYPPG_FMA_BLOCK(12)
ANYPPG_FMA_BLOCK(8)
ANYPPG_FMA_BLOCK(4)
#endif

/* One output of the polyphase FIR (resample.py step 4) at phase p, x = its inputs oldest
 * first (the taps are stored in that order). */
ANYPPG_INLINE float rs_fir(const float *x, uint32_t p, float offset)
{
    const float *h = &anyppg_rs_taps[p * ANYPPG_RS_TAPS];
    float acc = 0.0f;
    uint32_t j = 0;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
    for (; j + 12u <= ANYPPG_RS_TAPS; j += 12u) {
        acc = fma12(&h, &x, acc);
    }
    if (j + 8u <= ANYPPG_RS_TAPS) {
        acc = fma8(&h, &x, acc);
        j += 8u;
    }
    if (j + 4u <= ANYPPG_RS_TAPS) {
        acc = fma4(&h, &x, acc);
        j += 4u;
    }
    for (; j < ANYPPG_RS_TAPS; j++) {
        acc = fmaf(*h++, *x++, acc);
    }
    return fmaf(offset, anyppg_rs_gain_m1[p], acc);
}

/* Emit every ready output (at most `limit` when `limited`); returns how many. */
ANYPPG_INLINE int64_t rs_emit(anyppg_dsp_t *s, anyppg_out_t *o, anyppg_rs_t *rs,
                              const int limited, int64_t limit)
{
    int64_t k = 0;
    for (; rs->lag > rs->need && (!limited || k < limit); k++) {
        /* hist holds every input twice (slot and slot + HIST): x[b - TAPS + 1 .. b] */
        uint32_t b = rs->head - (uint32_t)rs->lag + (uint32_t)rs->need;
        const float *x = &s->hist[(b & ANYPPG_HIST_MASK) + ANYPPG_RS_HIST - (ANYPPG_RS_TAPS - 1)];
        out_put(s, o, rs_fir(x, rs->p, s->offset), rs_missing(s, rs));
        rs->r += ANYPPG_RS_DR;
        rs->lag -= ANYPPG_RS_DQ;
        if (rs->r >= ANYPPG_RS_UP) {
            rs->r -= ANYPPG_RS_UP;
            rs->lag--;
        }
        rs_phase(rs);
    }
    return k;
}

ANYPPG_INLINE void rs_store(anyppg_dsp_t *s, anyppg_rs_t *rs, float rel, uint8_t miss)
{
    uint32_t slot = rs->head & ANYPPG_HIST_MASK;
    s->hist[slot] = s->hist[slot + ANYPPG_RS_HIST] = rel;
    s->hist_miss[slot] = miss;
    if (miss) {
        rs->last_miss = rs->head;
    }
    rs->head++;
    rs->lag++;
}

static anyppg_rs_t rs_begin(const anyppg_dsp_t *s)
{
    anyppg_rs_t rs = {s->rs_head, s->rs_lag, s->rs_r, 0, 0u, s->rs_last_miss};
    rs_phase(&rs);
    return rs;
}

static void rs_end(anyppg_dsp_t *s, const anyppg_rs_t *rs)
{
    s->rs_head = rs->head;
    s->rs_lag = rs->lag;
    s->rs_r = rs->r;
    s->rs_last_miss = rs->last_miss;
}

/* ------------------------------------------------------------------ push */
/* The first sample fixes the offset and the history x[i < 0] = x[0] (resample.py step 3). */
static void start_stream(anyppg_dsp_t *s, float v)
{
    uint8_t miss = isfinite(v) ? 0u : 1u;
    float clean = miss ? 0.0f : v;
    s->offset = ANYPPG_RS_IDENTITY ? 0.0f : clean;
    for (uint32_t k = 0; k < 2u * ANYPPG_RS_HIST; k++) {
        s->hist[k] = clean - s->offset;
    }
    memset(s->hist_miss, miss, sizeof(s->hist_miss));
}

/* A flat run ends at sensor sample v of this push's x (the open run is the newest). */
ANYPPG_NOINLINE static void close_run(anyppg_dsp_t *s, const float *x, const float *v)
{
    s->runs[s->n_runs - 1].end = s->n_in + (v - x);
}

/* Sensor-side state while push() runs: flat-run tracking and cleaning (resample.py step 3). */
typedef struct {
    float prev;   /* last sensor sample */
    float last;   /* last finite one */
    uint32_t run; /* equal samples so far, saturating at ANYPPG_FLAT_RUN_IN */
} anyppg_clean_t;

/* Sensor sample *p of this push's x: its cleaned value, and its missing mark in *miss. */
ANYPPG_INLINE float clean_one(anyppg_dsp_t *s, anyppg_clean_t *c, const float *x,
                              const float *p, uint8_t *miss)
{
    float v = *p;
    if (v == c->prev) { /* NaN never equals; +-inf equals itself, as in numpy */
        if (c->run < ANYPPG_FLAT_RUN_IN && ++c->run == ANYPPG_FLAT_RUN_IN) {
            open_run(s, x, p);
        }
    } else {
        if (c->run >= ANYPPG_FLAT_RUN_IN) {
            close_run(s, x, p);
        }
        c->run = 1u;
    }
    c->prev = v;
    *miss = 1u;
    if (isfinite(v)) {
        c->last = v;
        *miss = 0u;
    }
    return c->last;
}

/* Inputs stored before the ready outputs are emitted: as many as the history can take while
 * still holding every input (and missing mark) the first of those outputs reads. */
#define ANYPPG_RS_BLOCK                                                                        \
    (ANYPPG_RS_HIST - ANYPPG_RS_TAPS + 1 < ANYPPG_RS_HIST - ANYPPG_RS_HB - 2                   \
         ? ANYPPG_RS_HIST - ANYPPG_RS_TAPS + 1                                                 \
         : ANYPPG_RS_HIST - ANYPPG_RS_HB - 2)

/* Sensor samples through cleaning into the ring: straight in at equal rates, else a block
 * at a time into the resampler's history, then every output that became ready. */
static void feed(anyppg_dsp_t *s, const float *x, size_t n)
{
    anyppg_out_t o = out_begin(s);
    anyppg_rs_t rs = rs_begin(s);
    anyppg_clean_t c = {s->prev_raw, s->last_finite, s->run_len};
    const float offset = s->offset;
    uint8_t miss;
    if (ANYPPG_RS_IDENTITY) { /* offset 0 */
        for (const float *v = x, *end = x + n; v < end; v++) {
            float y = clean_one(s, &c, x, v, &miss);
            out_put(s, &o, y, miss);
        }
    }
    for (size_t i = 0; !ANYPPG_RS_IDENTITY && i < n;) {
        size_t m = n - i < ANYPPG_RS_BLOCK ? n - i : ANYPPG_RS_BLOCK;
        uint32_t head = rs.head;
        for (const float *v = x + i, *end = x + i + m; v < end; v++, head++) {
            float rel = clean_one(s, &c, x, v, &miss) - offset;
            uint32_t slot = head & ANYPPG_HIST_MASK;
            s->hist[slot] = s->hist[slot + ANYPPG_RS_HIST] = rel;
            s->hist_miss[slot] = miss;
            if (miss) {
                rs.last_miss = head;
            }
        }
        rs.head = head;
        rs.lag += (int32_t)m;
        i += m;
        (void)rs_emit(s, &o, &rs, 0, 0);
    }
    s->prev_raw = c.prev;
    s->last_finite = c.last;
    s->run_len = c.run;
    s->n_in += (int64_t)n;
    rs_end(s, &rs);
    out_end(s, &o);
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
    if (n == 0u) {
        return ANYPPG_DSP_OK;
    }
    s->z_state = 0; /* the last window's cells may be overwritten from here on */
    if (s->n_in == 0) {
        start_stream(s, x[0]);
    }
    feed(s, x, n);
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
    s->z_state = 0;
    if (ANYPPG_RS_IDENTITY || s->n_in == 0) {
        s->total_out = s->n_in;
        return ANYPPG_DSP_OK;
    }
    /* resample.py step 7: hold the last input until ceil(N * up / down) outputs exist */
    s->total_out = (s->n_in * ANYPPG_RS_UP + ANYPPG_RS_DOWN - 1) / ANYPPG_RS_DOWN;
    anyppg_out_t o = out_begin(s);
    anyppg_rs_t rs = rs_begin(s);
    int64_t left = s->total_out - s->n_out;
    while (left > 0) {
        uint32_t last = (rs.head - 1u) & ANYPPG_HIST_MASK;
        rs_store(s, &rs, s->hist[last], s->hist_miss[last]);
        left -= rs_emit(s, &o, &rs, 1, left);
    }
    rs_end(s, &rs);
    out_end(s, &o);
    return ANYPPG_DSP_OK;
}

/* ------------------------------------------------------------------ flags of a window */
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

/* ------------------------------------------------------------------ zero-phase band-pass */
/* scipy.signal.sosfilt, one second-order section over cells, in place, direct form I from a
 * state. Fixed point (settings.py: fixed_point_bandpass): w = c0 x + c1 x1 + c2 x2 with small
 * integers c (b = g c), then g w - a1 y1 - a2 y2 with each coefficient K + F / 2^32: the K
 * terms are integer adds into the high word of a 64-bit sum and the F terms multiply-
 * accumulate (SMLAL on the M4), so the output is the high word (floor of the exact sum / 2^32)
 * and the low word the error carried into the next sample (first-order error feedback). The
 * sums wrap (unsigned): only the values themselves must fit in 32 bits, and they do, since
 * |x| < 2^INPUT_BITS. float32 is not enough here: the 0.5 Hz high-pass has poles within 0.012
 * of z = 1, where float32 moves the output by ~1e-4 of its range; these integers stay within
 * ~1e-6 of scipy's float64 and give the same bits on every target. The constants are
 * literals, so a zero term costs nothing and +-1, +-2 are adds and shifts. */
typedef struct {
    int32_t x1, x2, y1, y2;
    uint32_t err;
} anyppg_bq_t;

#define ANYPPG_BQ_STEP(V, XA, XB, YA, YB, YOUT)                                                \
    V = p->i;                                                                                  \
    {                                                                                          \
        uint32_t w = (uint32_t)c0 * (uint32_t)V + (uint32_t)c1 * (uint32_t)XA +                \
                     (uint32_t)c2 * (uint32_t)XB;                                              \
        uint32_t hi = (uint32_t)kg * w + (uint32_t)ka1 * (uint32_t)YA + (uint32_t)ka2 * (uint32_t)YB; \
        uint64_t acc = ((uint64_t)hi << 32) | err;                                             \
        acc += fg ? (uint64_t)((int64_t)fg * (int32_t)w) : 0u;                                 \
        acc += fa1 ? (uint64_t)((int64_t)fa1 * YA) : 0u;                                       \
        acc += fa2 ? (uint64_t)((int64_t)fa2 * YB) : 0u;                                       \
        YOUT = (int32_t)(uint32_t)(acc >> 32);                                                 \
        err = (uint32_t)acc;                                                                   \
    }                                                                                          \
    p->i = YOUT;                                                                               \
    p += step;

ANYPPG_INLINE void bq_run(anyppg_dsp_cell_t *p, int32_t n, anyppg_bq_t *st, const int32_t step,
                          const int32_t c0, const int32_t c1, const int32_t c2,
                          const int32_t kg, const int32_t fg, const int32_t ka1,
                          const int32_t ka2, const int32_t fa1, const int32_t fa2)
{
    int32_t x0, x1 = st->x1, x2 = st->x2, y0, y1 = st->y1, y2 = st->y2;
    uint32_t err = st->err;
    int32_t k = 0;
    /* three samples a turn, the registers' roles rotating: no copies along the delay line */
    for (; k + 3 <= n; k += 3) {
        ANYPPG_BQ_STEP(x0, x1, x2, y1, y2, y0)
        ANYPPG_BQ_STEP(x2, x0, x1, y0, y1, y2)
        ANYPPG_BQ_STEP(x1, x2, x0, y2, y0, y1)
    }
    for (; k < n; k++) {
        ANYPPG_BQ_STEP(x0, x1, x2, y1, y2, y0)
        x2 = x1;
        x1 = x0;
        y2 = y1;
        y1 = y0;
    }
    st->x1 = x1;
    st->x2 = x2;
    st->y1 = y1;
    st->y2 = y2;
    st->err = err;
}

/* One function per section and direction, its constants folded in. */
#define ANYPPG_DEFINE_SECTION(idx, kdc, fdc, ...)                                              \
    static void bq_fwd##idx(anyppg_dsp_cell_t *p, int32_t n, anyppg_bq_t *st)                  \
    {                                                                                          \
        bq_run(p, n, st, 1, __VA_ARGS__);                                                      \
    }                                                                                          \
    static void bq_bwd##idx(anyppg_dsp_cell_t *p, int32_t n, anyppg_bq_t *st)                  \
    {                                                                                          \
        bq_run(p + n - 1, n, st, -1, __VA_ARGS__);                                             \
    }
ANYPPG_BP_FOR_EACH(ANYPPG_DEFINE_SECTION)

/* The steady state of a constant input `first` (scipy's sosfilt_zi scaled by it), the DC
 * gain being kdc + fdc / 2^32; returns the section's output for it, the next one's input. */
static int32_t bq_start(anyppg_bq_t *st, int32_t first, int32_t kdc, int32_t fdc)
{
    int32_t out = (int32_t)((int64_t)kdc * first + (((int64_t)fdc * first) >> 32));
    st->x1 = st->x2 = first;
    st->y1 = st->y2 = out;
    st->err = 0u;
    return out;
}

/* Forward over [pre | window | post], then backward over [post | window]: sosfiltfilt with
 * its odd extensions, whose backward outputs before the window are never needed. */
#define ANYPPG_FORWARD(idx, kdc, fdc, ...)                                                     \
    first = bq_start(&st, first, kdc, fdc);                                                    \
    bq_fwd##idx(pre, ANYPPG_BP_PADLEN, &st);                                                   \
    bq_fwd##idx(c, ANYPPG_WINDOW_LEN, &st);                                                    \
    bq_fwd##idx(post, ANYPPG_BP_PADLEN, &st);
#define ANYPPG_BACKWARD(idx, kdc, fdc, ...)                                                    \
    first = bq_start(&st, first, kdc, fdc);                                                    \
    bq_bwd##idx(post, ANYPPG_BP_PADLEN, &st);                                                  \
    bq_bwd##idx(c, ANYPPG_WINDOW_LEN, &st);

static void bandpass(anyppg_dsp_cell_t *pre, anyppg_dsp_cell_t *c, anyppg_dsp_cell_t *post)
{
    anyppg_bq_t st;
    int32_t first = pre[0].i;
    ANYPPG_BP_FOR_EACH(ANYPPG_FORWARD)
    first = post[ANYPPG_BP_PADLEN - 1].i;
    ANYPPG_BP_FOR_EACH(ANYPPG_BACKWARD)
    (void)first;
}

/* ------------------------------------------------------------------ one window */
/* flat (edge_runtime.preprocess.quality_flags) from the raw window's spread and flat-run
 * count; clipping from the samples pinned at its min or max. */
static uint8_t raw_flags(const anyppg_dsp_t *s, float mean, float sd, int64_t flat_n,
                         int32_t pinned)
{
    int flat = (sd < ANYPPG_FLAT_REL_STD * (fabsf(s->offset + mean) + 1.0f)) ||
               flat_n >= ANYPPG_FLAT_COUNT_MIN;
    uint8_t flags = flat ? ANYPPG_FLAG_FLAT : 0u;
    if (pinned >= ANYPPG_CLIP_COUNT_MIN && !flat) {
        flags |= ANYPPG_FLAG_CLIPPING;
    }
    return flags;
}

/* The odd extensions (scipy's odd_ext) of the centred window d = x - mean, as floats. */
static float extension_peak(const anyppg_dsp_cell_t *c, float mean, anyppg_dsp_cell_t *pre,
                            anyppg_dsp_cell_t *post)
{
    const int32_t L = ANYPPG_WINDOW_LEN, P = ANYPPG_BP_PADLEN;
    float d0 = c[0].f - mean, dl = c[L - 1].f - mean, peak = 0.0f;
    for (int32_t k = 0; k < P; k++) {
        pre[k].f = 2.0f * d0 - (c[P - k].f - mean);
        post[k].f = 2.0f * dl - (c[L - 2 - k].f - mean);
        float a = fabsf(pre[k].f), b = fabsf(post[k].f);
        peak = a > peak ? a : peak;
        peak = b > peak ? b : peak;
    }
    return peak;
}

/* int8 of t / 2 (arithmetic shift), saturated: SSAT with its shift on the M4 */
ANYPPG_INLINE int32_t sat8_half(int32_t t)
{
#if defined(__ARM_FEATURE_SAT) && defined(__GNUC__)
    int32_t r;
    __asm__("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(t));
    return r;
#else
    int32_t r = t >> 1; /* gcc and clang shift signed integers arithmetically */
    return r < -128 ? -128 : (r > 127 ? 127 : r);
#endif
}

/* Sums of the filtered integers: mean and population variance exact up to the final double
 * rounding (squares summed four at a time in 64 bits, |y| < 2^31, then carried to 96 bits). */
#define ANYPPG_MOMENT(y)                                                                       \
    sum += (y);                                                                                \
    part += (uint64_t)((int64_t)(y) * (y));                                                    \
    lo = (y) < lo ? (y) : lo;                                                                  \
    hi = (y) > hi ? (y) : hi;

static void int_moments(const anyppg_dsp_cell_t *c, double *mean, double *var, int32_t *lo_out,
                        int32_t *hi_out)
{
    const int32_t L = ANYPPG_WINDOW_LEN;
    int64_t sum = 0;
    uint64_t sq_lo = 0, part;
    uint32_t sq_hi = 0;
    int32_t lo = c[0].i, hi = c[0].i, i = 0;
    for (; i + 4 <= L; i += 4) {
        int32_t y0 = c[i].i, y1 = c[i + 1].i, y2 = c[i + 2].i, y3 = c[i + 3].i;
        part = 0u;
        ANYPPG_MOMENT(y0)
        ANYPPG_MOMENT(y1)
        ANYPPG_MOMENT(y2)
        ANYPPG_MOMENT(y3)
        sq_lo += part;
        sq_hi += sq_lo < part ? 1u : 0u;
    }
    for (part = 0u; i < L; i++) {
        ANYPPG_MOMENT(c[i].i)
    }
    sq_lo += part;
    sq_hi += sq_lo < part ? 1u : 0u;
    *mean = (double)sum / L;
    *var = ((double)sq_hi * 18446744073709551616.0 + (double)sq_lo) / L - *mean * *mean;
    *lo_out = lo;
    *hi_out = hi;
}

/* z-score the filtered integers, set the amplitude flag and quantise to int8 into q with
 * TFLite's rounding, half away from zero: from t = trunc(2 v) (v = z / scale, |2 v| < 2^30
 * by settings.py's check), round(v) = (t + 1 + (t < 0 ? -1 : 0)) / 2 exactly. */
static uint8_t zscore_quantise(anyppg_dsp_t *s, const anyppg_dsp_cell_t *c, float to_int,
                               int8_t *q)
{
    double mean, var;
    int32_t lo, hi;
    int_moments(c, &mean, &var, &lo, &hi);
    float sd = sqrtf(var > 0.0 ? (float)var : 0.0f);
    float eps = ANYPPG_ZSCORE_EPS * to_int; /* eps in integer units */
    s->z_mean = (float)mean;
    s->z_inv = 1.0f / (sd > eps ? sd : eps);
    const float m = s->z_mean, inv = s->z_inv;
    /* z is monotonic in y, so its largest magnitude is at the extremes */
    float zlo = ((float)lo - m) * inv, zhi = ((float)hi - m) * inv;
    uint8_t flags = (fabsf(zlo) > ANYPPG_MAX_ABS_Z || fabsf(zhi) > ANYPPG_MAX_ABS_Z)
                        ? ANYPPG_FLAG_AMPLITUDE : 0u;
    const float k2 = inv * (2.0f / ANYPPG_INPUT_PPG_SCALE);
    const int32_t bias = 1 + 2 * ANYPPG_INPUT_PPG_ZERO_POINT;
    for (int32_t i = 0; i < ANYPPG_WINDOW_LEN; i++) {
        int32_t t = (int32_t)(((float)c[i].i - m) * k2);
        q[i] = (int8_t)sat8_half(t + bias + (t >> 31));
    }
    return flags;
}

/* The raw window's sum and extremes, with how many samples sit exactly at each. */
typedef struct {
    float sum, lo, hi;
    int32_t n_lo, n_hi;
} anyppg_raw_t;

static anyppg_raw_t raw_stats(const anyppg_dsp_cell_t *c)
{
    anyppg_raw_t r = {0.0f, c[0].f, c[0].f, 0, 0};
    for (int32_t i = 0; i < ANYPPG_WINDOW_LEN; i++) {
        float v = c[i].f;
        r.sum = r.sum + v;
        if (v <= r.lo) { /* rarely taken: a compare and a branch per side */
            r.n_lo = v < r.lo ? 1 : r.n_lo + 1;
            r.lo = v;
        }
        if (v >= r.hi) {
            r.n_hi = v > r.hi ? 1 : r.n_hi + 1;
            r.hi = v;
        }
    }
    return r;
}

/* Samples pinned at the window's min or max (edge_runtime: within 1e-9 of the range of
 * them). That tolerance is below float32's spacing at the extremes unless they sit near 0,
 * so it is the counts of exact extremes, or else one more pass. */
static int32_t pinned_count(const anyppg_dsp_cell_t *c, const anyppg_raw_t *r)
{
    float range = r->hi - r->lo;
    float tol = 1e-9f * (range > 1e-12f ? range : 1e-12f);
    float lo_t = r->lo + tol, hi_t = r->hi - tol;
    if (r->lo == r->hi) {
        return ANYPPG_WINDOW_LEN;
    }
    if (lo_t == r->lo && hi_t == r->hi) {
        return r->n_lo + r->n_hi;
    }
    int32_t pinned = 0;
    for (int32_t i = 0; i < ANYPPG_WINDOW_LEN; i++) {
        pinned += (c[i].f <= lo_t) | (c[i].f >= hi_t);
    }
    return pinned;
}

/* Band-pass (zero phase), z-score, quality flags and int8 quantisation of the window in c
 * (floats, L = ANYPPG_WINDOW_LEN), which is left holding the filtered integers. */
static uint8_t process_window(anyppg_dsp_t *s, anyppg_dsp_cell_t *c, int64_t flat_n, int8_t *q)
{
    const int32_t L = ANYPPG_WINDOW_LEN, P = ANYPPG_BP_PADLEN;
    anyppg_raw_t r = raw_stats(c);
    float mean = r.sum / (float)L;
    anyppg_dsp_cell_t pre[ANYPPG_BP_PADLEN], post[ANYPPG_BP_PADLEN]; /* floats, then integers */
    float peak = 0.0f, to_int = 0.0f;
    int exponent = 0;
    int finite = isfinite(r.sum);
    if (finite) {
        peak = extension_peak(c, mean, pre, post);
        float a = r.hi - mean, b = mean - r.lo; /* max |x - mean|: rounding is monotonic */
        peak = a > peak ? a : peak;
        peak = b > peak ? b : peak;
        if (isfinite(peak) && peak > 0.0f) {
            (void)frexpf(peak, &exponent);
        }
        /* to integers: the largest sample just under 2^ANYPPG_BP_INPUT_BITS (a power-of-two
         * scale, so the conversion only truncates) */
        to_int = ldexpf(1.0f, ANYPPG_BP_INPUT_BITS - exponent);
        finite = isfinite(peak) && isfinite(to_int);
    }
    if (!finite) { /* beyond float32's range (or below its resolution): no number, say why */
        memset(q, (int)(int8_t)ANYPPG_INPUT_PPG_ZERO_POINT, ANYPPG_WINDOW_LEN);
        s->z_state = 2;
        return ANYPPG_FLAG_AMPLITUDE;
    }
    int32_t pinned = pinned_count(c, &r);
    float ss = 0.0f;
    for (int32_t i = 0; i < L; i++) { /* in place: each float read before its int is written */
        float d = c[i].f - mean;
        ss = fmaf(d, d, ss);
        c[i].i = (int32_t)(d * to_int);
    }
    for (int32_t k = 0; k < P; k++) {
        pre[k].i = (int32_t)(pre[k].f * to_int);
        post[k].i = (int32_t)(post[k].f * to_int);
    }
    uint8_t flags = raw_flags(s, mean, sqrtf(ss / (float)L), flat_n, pinned);
    bandpass(pre, c, post);
    flags |= zscore_quantise(s, c, to_int, q);
    s->z_state = 1;
    return flags;
}

/* The window's cells: in place in the ring, or (overlapping windows) copied out of it. The
 * window is the n samples from ring index `first`, tiled to ANYPPG_WINDOW_LEN when n < L. */
static anyppg_dsp_cell_t *window_cells(anyppg_dsp_t *s, uint32_t first, int64_t n)
{
#if ANYPPG_DSP_IN_PLACE
    anyppg_dsp_cell_t *c = &s->ring[first]; /* first + L <= RING_LEN: one piece */
    for (int64_t i = n; i < ANYPPG_WINDOW_LEN; i++) { /* finished: these slots are free */
        c[i] = c[i % n];
    }
    return c;
#else
    for (int32_t i = 0, k = 0; i < ANYPPG_WINDOW_LEN; i++) {
        uint32_t idx = first + (uint32_t)k;
        s->work[i] = s->ring[idx >= ANYPPG_RING_LEN ? idx - ANYPPG_RING_LEN : idx];
        k = (k + 1 == n) ? 0 : k + 1;
    }
    return s->work;
#endif
}

/* Preprocess the n resampled samples from `start` (tiled to a window when n < L) into q. */
static void make_window(anyppg_dsp_t *s, int64_t start, int64_t n, anyppg_dsp_window_t *w,
                        int8_t *q)
{
    const uint32_t R = ANYPPG_RING_LEN;
    uint32_t first = (s->ring_pos + R - (uint32_t)(s->n_out - start)) % R;
    uint8_t miss = s->win_miss[s->next_slot];
    int tiled = n < ANYPPG_WINDOW_LEN;
    anyppg_dsp_cell_t *c = window_cells(s, first, n);
    s->z_first = first;
    uint8_t flags = process_window(s, c, flat_count(s, start, n, tiled), q);
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

int anyppg_dsp_poll(anyppg_dsp_t *s, anyppg_dsp_window_t *w, int8_t *q)
{
    if (s == NULL || w == NULL || q == NULL) {
        return ANYPPG_DSP_ERR_NULL;
    }
    if (!valid(s)) {
        return ANYPPG_DSP_ERR_STATE;
    }
    if (s->finished && s->pad_short && s->next_start == 0 && s->total_out > 0 &&
        s->total_out < ANYPPG_WINDOW_LEN) {
        s->z_state = 0;
        make_window(s, 0, s->total_out, w, q);
        s->next_start = ANYPPG_HOP_LEN; /* handed out: nothing more to come */
        s->next_slot = next_slot(s->next_slot);
        s->room += ANYPPG_HOP_LEN;
        return 1;
    }
    if (s->n_out < s->next_start + ANYPPG_WINDOW_LEN) {
        return 0;
    }
    s->z_state = 0;
    make_window(s, s->next_start, ANYPPG_WINDOW_LEN, w, q);
    s->next_start += ANYPPG_HOP_LEN;
    s->next_slot = next_slot(s->next_slot);
    s->room += ANYPPG_HOP_LEN;
    return 1;
}

int anyppg_dsp_window_z(const anyppg_dsp_t *s, float *z)
{
    if (s == NULL || z == NULL) {
        return ANYPPG_DSP_ERR_NULL;
    }
    if (!valid(s) || s->z_state == 0) {
        return ANYPPG_DSP_ERR_STATE;
    }
    if (s->z_state == 2) {
        memset(z, 0, ANYPPG_WINDOW_LEN * sizeof(float));
        return ANYPPG_DSP_OK;
    }
#if ANYPPG_DSP_IN_PLACE
    const anyppg_dsp_cell_t *c = &s->ring[s->z_first];
#else
    const anyppg_dsp_cell_t *c = s->work;
#endif
    for (int32_t i = 0; i < ANYPPG_WINDOW_LEN; i++) {
        z[i] = ((float)c[i].i - s->z_mean) * s->z_inv; /* as zscore_quantise computes it */
    }
    return ANYPPG_DSP_OK;
}
