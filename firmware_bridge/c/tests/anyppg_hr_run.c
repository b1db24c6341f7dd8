/* Runner for anyppg_hr_refine: the same program on the host and on QEMU.
 *
 * Reads hr_in.bin from the current folder:
 *     int32 n, int32 zero_point, float32 hr[n], int8 window[n][ANYPPG_WINDOW_LEN]
 * (one window at a time: memory stays one window), refines each hr on its window and writes
 * float32 hr_out[n] to hr_out.bin, then prints "windows n". RUN_BENCH 1 (firmware_bridge/qemu.py
 * boards only): also "@insns hr_max N" and "@insns hr_sum N" over the windows.
 */
#include <stdio.h>

#include "anyppg_hr.h"
#include "anyppg_run_bench.h"

static int8_t window[ANYPPG_WINDOW_LEN];

int main(void)
{
    BENCH_INIT();
    FILE *f = fopen("hr_in.bin", "rb");
    FILE *o = fopen("hr_out.bin", "wb");
    int32_t head[2];
    if (f == NULL || o == NULL || fread(head, sizeof head[0], 2, f) != 2 || head[0] < 0) {
        printf("cannot read hr_in.bin or write hr_out.bin\n");
        return 2;
    }
    const long n = head[0];
    const long hr_at = (long)sizeof head;
    const long win_at = hr_at + n * (long)sizeof(float);
    unsigned long long max_ticks = 0, sum_ticks = 0;
    for (long i = 0; i < n; ++i) {
        float hr, got;
        if (fseek(f, hr_at + i * (long)sizeof(float), SEEK_SET) != 0 || fread(&hr, sizeof hr, 1, f) != 1 ||
            fseek(f, win_at + i * (long)ANYPPG_WINDOW_LEN, SEEK_SET) != 0 ||
            fread(window, 1, ANYPPG_WINDOW_LEN, f) != ANYPPG_WINDOW_LEN) {
            printf("short hr_in.bin at window %ld\n", i);
            return 2;
        }
        const unsigned long long t0 = BENCH_NOW();
        const int rc = anyppg_hr_refine(window, head[1], hr, &got);
        const unsigned long long t = BENCH_NOW() - t0;
        max_ticks = t > max_ticks ? t : max_ticks;
        sum_ticks += t;
        if (rc != ANYPPG_HR_OK || fwrite(&got, sizeof got, 1, o) != 1) {
            printf("window %ld: rc %d\n", i, rc);
            return 3;
        }
    }
    float hr = 0.0f;
    if (anyppg_hr_refine(NULL, 0, 72.0f, &hr) != ANYPPG_HR_ERR_NULL ||
        anyppg_hr_refine(window, 0, 72.0f, NULL) != ANYPPG_HR_ERR_NULL) {
        printf("NULL pointers not refused\n");
        return 4;
    }
    fclose(f);
    fclose(o);
    BENCH_REPORT("hr_max", max_ticks);
    BENCH_REPORT("hr_sum", sum_ticks);
    printf("windows %ld\n", n);
    return 0;
}
