/* Golden-vector runner for anyppg_dsp: the same program on the host and on QEMU.
 *
 * Reads raw.f32 (a golden set's sensor stream, firmware_bridge/golden.py) from the current
 * folder, pushes it in chunks, polls every window, and writes what it got:
 *     c_z.f32 (K x L float32), c_q.i8 (K x L int8), c_flags.u8 (K), c_start.i64 (K)
 * then prints "windows K dropped D". Build-time options:
 *     RUN_CHUNK      chunk size; 0 (default) cycles through 1, 7, 64, 3, 250, 0 samples
 *     RUN_PAD_SHORT  1: a recording shorter than one window is tiled (edge_runtime pad_short)
 *     RUN_BENCH      1: count instructions (firmware_bridge/qemu.py boards only) and print
 *                    "@insns push <n>", "@insns poll <n>" summed over the whole stream
 */
#include <stdio.h>
#include <stdlib.h>

#include "anyppg_dsp.h"

#ifndef RUN_CHUNK
#define RUN_CHUNK 0
#endif
#ifndef RUN_PAD_SHORT
#define RUN_PAD_SHORT 0
#endif
#ifndef RUN_MAX_SAMPLES
#define RUN_MAX_SAMPLES 400000
#endif

#if RUN_BENCH
#include "anyppg_cm_bench.h"
#define BENCH_NOW() anyppg_cm_bench_ticks()
#else
#define BENCH_NOW() 0u
#endif

static anyppg_dsp_t dsp;
static anyppg_dsp_window_t win;
static int8_t q[ANYPPG_WINDOW_LEN];
static float z[ANYPPG_WINDOW_LEN];
static float raw[RUN_MAX_SAMPLES];

static int drain(FILE *fz, FILE *fq, FILE *ff, FILE *fs, long *k, uint64_t *poll_ticks)
{
    for (;;) {
        uint64_t t0 = BENCH_NOW();
        int r = anyppg_dsp_poll(&dsp, &win, q);
        *poll_ticks += BENCH_NOW() - t0;
        if (r < 0) {
            printf("poll error %d\n", r);
            return -1;
        }
        if (r == 0) {
            return 0;
        }
        if (anyppg_dsp_window_z(&dsp, z) != ANYPPG_DSP_OK) { /* not timed: tests only */
            printf("window_z failed\n");
            return -1;
        }
        fwrite(z, sizeof(float), ANYPPG_WINDOW_LEN, fz);
        fwrite(q, 1, ANYPPG_WINDOW_LEN, fq);
        fwrite(&win.flags, 1, 1, ff);
        fwrite(&win.start, sizeof(win.start), 1, fs);
        (*k)++;
    }
}

int main(void)
{
    static const size_t pattern[] = {1, 7, 64, 3, 250, 0};
    FILE *fr = fopen("raw.f32", "rb");
    if (fr == NULL) {
        printf("cannot open raw.f32\n");
        return 2;
    }
    size_t n = fread(raw, sizeof(float), RUN_MAX_SAMPLES, fr);
    fclose(fr);
    FILE *fz = fopen("c_z.f32", "wb"), *fq = fopen("c_q.i8", "wb");
    FILE *ff = fopen("c_flags.u8", "wb"), *fs = fopen("c_start.i64", "wb");
    if (!fz || !fq || !ff || !fs) {
        printf("cannot write outputs\n");
        return 2;
    }
#if RUN_BENCH
    anyppg_cm_bench_init();
#endif
    if (anyppg_dsp_init(&dsp, ANYPPG_SENSOR_FS_HZ) != ANYPPG_DSP_OK) {
        printf("init failed\n");
        return 3;
    }
    uint64_t push_ticks = 0, poll_ticks = 0;
    long k = 0;
    size_t pos = 0, step = 0;
    while (pos < n) {
        size_t c = RUN_CHUNK ? (size_t)RUN_CHUNK : pattern[step++ % 6];
        c = c > n - pos ? n - pos : c;
        uint64_t t0 = BENCH_NOW();
        int r = anyppg_dsp_push(&dsp, raw + pos, c);
        push_ticks += BENCH_NOW() - t0;
        if (r != ANYPPG_DSP_OK) {
            printf("push error %d\n", r);
            return 4;
        }
        pos += c;
        if (drain(fz, fq, ff, fs, &k, &poll_ticks) < 0) {
            return 5;
        }
    }
    uint64_t t0 = BENCH_NOW();
    anyppg_dsp_finish(&dsp, RUN_PAD_SHORT);
    push_ticks += BENCH_NOW() - t0;
    if (drain(fz, fq, ff, fs, &k, &poll_ticks) < 0) {
        return 5;
    }
    fclose(fz);
    fclose(fq);
    fclose(ff);
    fclose(fs);
    printf("windows %ld dropped %lu samples %lu\n", k, (unsigned long)dsp.windows_dropped,
           (unsigned long)n);
#if RUN_BENCH
    anyppg_cm_bench_report("push", push_ticks);
    anyppg_cm_bench_report("poll", poll_ticks);
#else
    (void)push_ticks;
    (void)poll_ticks;
#endif
    return 0;
}
