/* Hostile inputs for anyppg_dsp: bad arguments, bad rates, NaN/inf/huge samples, flat windows,
 * odd chunkings, an app that stops polling. Run under ASan + UBSan by
 * tests/firmware_bridge/test_dsp_hostile.py; prints "FAIL <what>" and exits 1 on any failure. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "anyppg_dsp.h"

#define N_MAX (ANYPPG_WINDOW_LEN * 8)
static int failures;
static anyppg_dsp_t s, s2;
static anyppg_dsp_window_t w, w2;
static int8_t q1[ANYPPG_WINDOW_LEN], q2[ANYPPG_WINDOW_LEN];
static float z1[ANYPPG_WINDOW_LEN], z2[ANYPPG_WINDOW_LEN];
static float x[N_MAX * 2];

#define CHECK(cond, what)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL %s (line %d)\n", what, __LINE__);                                   \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

/* samples per window at the sensor rate, rounded up */
static size_t sensor_samples(double seconds)
{
    return (size_t)ceil(seconds * (double)ANYPPG_SENSOR_FS_HZ);
}

/* windows edge_runtime cuts from a recording of that many seconds (hop grid, no padding) */
static int windows_in(double seconds)
{
    return (int)((seconds * (double)ANYPPG_PPG_FS_HZ - ANYPPG_WINDOW_LEN) / ANYPPG_HOP_LEN) + 1;
}

static void pulse(float *buf, size_t n, float dc)
{
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / (double)ANYPPG_SENSOR_FS_HZ;
        buf[i] = dc + (float)(100.0 * sin(2.0 * 3.14159265358979 * 1.2 * t) +
                              30.0 * sin(2.0 * 3.14159265358979 * 2.4 * t + 0.3));
    }
}

/* Every window handed out is sane whatever went in: finite z, known flags. Its int8 input
 * is left in q1, its float window in z1. */
static int drain_check(anyppg_dsp_t *st, anyppg_dsp_window_t *win, uint8_t *all_flags)
{
    int k = 0, r;
    while ((r = anyppg_dsp_poll(st, win, q1)) == 1) {
        int finite = anyppg_dsp_window_z(st, z1) == ANYPPG_DSP_OK;
        for (int i = 0; i < ANYPPG_WINDOW_LEN; i++) {
            finite &= isfinite(z1[i]) ? 1 : 0;
        }
        CHECK(finite, "window values finite");
        CHECK((win->flags & ~0x1Fu) == 0, "only known flag bits");
        if (all_flags) {
            *all_flags |= win->flags;
        }
        k++;
    }
    CHECK(r == 0, "poll ends with 0");
    return k;
}

static void arguments(void)
{
    float one = 1.0f;
    CHECK(anyppg_dsp_init(NULL, ANYPPG_SENSOR_FS_HZ) == ANYPPG_DSP_ERR_NULL, "init NULL");
    const float bad[] = {0.0f, -ANYPPG_SENSOR_FS_HZ, ANYPPG_SENSOR_FS_HZ * 2.0f, 1.0f, NAN,
                         INFINITY, ANYPPG_SENSOR_FS_HZ + 0.5f};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(anyppg_dsp_init(&s, bad[i]) == ANYPPG_DSP_ERR_RATE, "unsupported rate refused");
        CHECK(anyppg_dsp_push(&s, &one, 1) == ANYPPG_DSP_ERR_STATE, "push after failed init");
        CHECK(anyppg_dsp_poll(&s, &w, q1) == ANYPPG_DSP_ERR_STATE, "poll after failed init");
    }
    memset(&s, 0, sizeof(s));
    CHECK(anyppg_dsp_push(&s, &one, 1) == ANYPPG_DSP_ERR_STATE, "push on zeroed state");
    CHECK(anyppg_dsp_init(&s, ANYPPG_SENSOR_FS_HZ) == ANYPPG_DSP_OK, "init");
    CHECK(anyppg_dsp_push(NULL, &one, 1) == ANYPPG_DSP_ERR_NULL, "push NULL state");
    CHECK(anyppg_dsp_push(&s, NULL, 5) == ANYPPG_DSP_ERR_NULL, "push NULL samples");
    CHECK(anyppg_dsp_push(&s, NULL, 0) == ANYPPG_DSP_OK, "push NULL, 0");
    CHECK(anyppg_dsp_push(&s, &one, 0) == ANYPPG_DSP_OK, "push 0");
    CHECK(anyppg_dsp_poll(NULL, &w, q1) == ANYPPG_DSP_ERR_NULL, "poll NULL state");
    CHECK(anyppg_dsp_poll(&s, NULL, q1) == ANYPPG_DSP_ERR_NULL, "poll NULL window");
    CHECK(anyppg_dsp_poll(&s, &w, NULL) == ANYPPG_DSP_ERR_NULL, "poll NULL model input");
    CHECK(anyppg_dsp_poll(&s, &w, q1) == 0, "nothing ready");
    CHECK(anyppg_dsp_window_z(NULL, z1) == ANYPPG_DSP_ERR_NULL, "window_z NULL state");
    CHECK(anyppg_dsp_window_z(&s, NULL) == ANYPPG_DSP_ERR_NULL, "window_z NULL buffer");
    CHECK(anyppg_dsp_window_z(&s, z1) == ANYPPG_DSP_ERR_STATE, "window_z before any window");
    CHECK(anyppg_dsp_finish(NULL, 0) == ANYPPG_DSP_ERR_NULL, "finish NULL");
    CHECK(anyppg_dsp_finish(&s, 0) == ANYPPG_DSP_OK, "finish");
    CHECK(anyppg_dsp_finish(&s, 0) == ANYPPG_DSP_OK, "finish twice");
    CHECK(anyppg_dsp_push(&s, &one, 1) == ANYPPG_DSP_ERR_FINISHED, "push after finish");
    CHECK(anyppg_dsp_poll(&s, &w, q1) == 0, "one sample, no pad: no window");
}

/* A whole stream of one kind, polled as it goes; returns the OR of its windows' flags. */
static uint8_t stream_flags(const float *buf, size_t n, int *windows)
{
    uint8_t flags = 0;
    *windows = 0;
    anyppg_dsp_init(&s, ANYPPG_SENSOR_FS_HZ);
    for (size_t pos = 0; pos < n; pos += 100) {
        anyppg_dsp_push(&s, buf + pos, n - pos < 100 ? n - pos : 100);
        *windows += drain_check(&s, &w, &flags);
    }
    anyppg_dsp_finish(&s, 1);
    *windows += drain_check(&s, &w, &flags);
    return flags;
}

static void values(void)
{
    size_t n = sensor_samples(30.0);
    int k;
    memset(x, 0, n * sizeof(float));
    CHECK(stream_flags(x, n, &k) & ANYPPG_FLAG_FLAT, "all-zero stream is flat");
    CHECK(k == windows_in(30.0), "all-zero: every window");
    int zp_only = 1;
    for (int i = 0; i < ANYPPG_WINDOW_LEN; i++) {
        zp_only &= (q1[i] == ANYPPG_INPUT_PPG_ZERO_POINT && z1[i] == 0.0f) ? 1 : 0;
    }
    CHECK(zp_only, "a flat window quantises to the zero point");
    for (size_t i = 0; i < n; i++) x[i] = 12345.0f;
    CHECK(stream_flags(x, n, &k) & ANYPPG_FLAG_FLAT, "constant stream is flat");
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    CHECK(stream_flags(x, n, &k) & ANYPPG_FLAG_NAN_GAP, "all-NaN stream flagged nan_gap");
    for (size_t i = 0; i < n; i++) x[i] = (i & 1) ? INFINITY : -INFINITY;
    CHECK(stream_flags(x, n, &k) & ANYPPG_FLAG_NAN_GAP, "inf stream flagged nan_gap");
    for (size_t i = 0; i < n; i++) x[i] = (i % 3 == 0) ? 3.0e38f : -3.0e38f;
    uint8_t f = stream_flags(x, n, &k);
    CHECK(k == windows_in(30.0) && (f & ANYPPG_FLAG_AMPLITUDE), "values beyond float range flagged");
    pulse(x, n, 1000.0f);
    for (size_t i = 0; i < n; i += 97) x[i] = 3.0e38f;
    CHECK(stream_flags(x, n, &k) & ANYPPG_FLAG_AMPLITUDE, "huge spikes flag amplitude");
#if ANYPPG_RS_IDENTITY /* resampling rings at a clipped plateau: edge_runtime then sees none */
    pulse(x, n, 1000.0f);
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 1080.0f ? 1080.0f : x[i];
    CHECK(stream_flags(x, n, &k) & ANYPPG_FLAG_CLIPPING, "saturated pulse flags clipping");
#endif
    pulse(x, n, 1000.0f);
    CHECK(stream_flags(x, n, &k) == 0, "a clean pulse has no flags");
    anyppg_dsp_init(&s, ANYPPG_SENSOR_FS_HZ);
    anyppg_dsp_push(&s, x, n);
    CHECK(anyppg_dsp_poll(&s, &w, q1) == 1 && anyppg_dsp_window_z(&s, z1) == ANYPPG_DSP_OK,
          "window_z right after poll");
    anyppg_dsp_push(&s, x, 1);
    CHECK(anyppg_dsp_window_z(&s, z1) == ANYPPG_DSP_ERR_STATE, "window_z refused after a push");
}

/* The same stream in any chunking (each below one hop, polled after each push) gives the
 * same bytes as the stream pushed 50 samples at a time. */
static void chunking(void)
{
    static const size_t sizes[] = {1, 2, 3, 7, 13, 251, 613};
    size_t n = sensor_samples(45.0);
    pulse(x, n, 30000.0f);
    const size_t hop_in = (size_t)(ANYPPG_HOP_LEN * ANYPPG_SENSOR_FS_HZ / ANYPPG_PPG_FS_HZ);
    for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
        if (sizes[c] > hop_in) {
            continue;
        }
        anyppg_dsp_init(&s, ANYPPG_SENSOR_FS_HZ);
        anyppg_dsp_init(&s2, ANYPPG_SENSOR_FS_HZ);
        int same = 1, k1 = 0, k2 = 0;
        size_t pos2 = 0;
        for (size_t pos = 0; pos < n; pos += sizes[c]) {
            size_t m = n - pos < sizes[c] ? n - pos : sizes[c];
            anyppg_dsp_push(&s, x + pos, m);
            anyppg_dsp_push(&s, x + pos, 0);
            while (anyppg_dsp_poll(&s, &w, q1) == 1) {
                k1++;
                int r;
                same &= anyppg_dsp_window_z(&s, z1) == ANYPPG_DSP_OK;
                while ((r = anyppg_dsp_poll(&s2, &w2, q2)) == 0 && pos2 < n) {
                    size_t m2 = n - pos2 < 50 ? n - pos2 : 50;
                    anyppg_dsp_push(&s2, x + pos2, m2);
                    pos2 += m2;
                }
                if (r != 1) {
                    same = 0;
                    continue;
                }
                k2++;
                same &= anyppg_dsp_window_z(&s2, z2) == ANYPPG_DSP_OK;
                same &= memcmp(z1, z2, sizeof(z1)) == 0 && memcmp(q1, q2, sizeof(q1)) == 0 &&
                        w.flags == w2.flags && w.start == w2.start;
            }
        }
        CHECK(same && k1 == windows_in(45.0) && k1 == k2, "chunking does not change the windows");
    }
}

/* An app that stops polling: the oldest pending windows go, newer data stays intact. */
static void overflow(void)
{
    size_t n = sensor_samples(80.0);
    pulse(x, n, 500.0f);
    anyppg_dsp_init(&s, ANYPPG_SENSOR_FS_HZ);
    anyppg_dsp_init(&s2, ANYPPG_SENSOR_FS_HZ);
    anyppg_dsp_push(&s, x, n); /* never polled while pushing */
    uint32_t dropped_first = 0;
    int k = 0, same = 1;
    int64_t first_start = -1;
    for (size_t pos = 0; pos < n; pos += 50) { /* the reference polls all the time */
        anyppg_dsp_push(&s2, x + pos, n - pos < 50 ? n - pos : 50);
        while (anyppg_dsp_poll(&s2, &w2, q2) == 1) {
            if (first_start < 0 && anyppg_dsp_poll(&s, &w, q1) == 1) {
                first_start = w.start;
                dropped_first = w.dropped_before;
            }
            if (first_start >= 0 && w2.start == w.start) {
                same &= memcmp(q1, q2, sizeof(q1)) == 0 && w.flags == w2.flags;
                k++;
                if (anyppg_dsp_poll(&s, &w, q1) != 1) {
                    break;
                }
            }
        }
    }
    int64_t produced = s.n_out;
    int64_t expect_first = ((produced - ANYPPG_RING_LEN) + ANYPPG_HOP_LEN - 1) / ANYPPG_HOP_LEN *
                           ANYPPG_HOP_LEN;
    CHECK(s.windows_dropped > 0, "overflow counted");
    CHECK(first_start == expect_first, "the oldest windows were dropped, not the newest");
    CHECK(dropped_first == s.windows_dropped, "the first window after the gap reports it");
    CHECK((int64_t)dropped_first * ANYPPG_HOP_LEN == first_start, "every skipped window counted");
    CHECK(same && k >= 1, "windows after an overflow are intact");
}

int main(void)
{
    arguments();
    values();
    chunking();
    overflow();
    printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
