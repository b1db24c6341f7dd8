/* Runner for anyppg_hr_show on the host: what a watch shows, per case.
 *
 * Reads show_in.bin from the current folder:
 *     int32 n, int32 m, int32 zero_point,
 *     n cases of {uint8 flags, int8 quality_logit, int8 hr_confidence, int8 hr, int8 af_logit,
 *                 uint8 pad[3], int32 window},
 *     int8 windows[m][ANYPPG_WINDOW_LEN]
 * (one window in memory at a time), and writes n records {uint8 show, uint8 withheld,
 * uint8 pad[2], float32 hr_bpm} to show_out.bin, then prints "cases n". RUN_BENCH 1
 * (firmware_bridge/qemu.py boards only): also "@insns show_max N" over the cases.
 */
#include <stdio.h>
#include <string.h>

#include "anyppg_hr.h"
#include "anyppg_run_bench.h"

static int8_t window[ANYPPG_WINDOW_LEN];

typedef struct {
    uint8_t flags;
    int8_t quality, confidence, hr, af;
    uint8_t pad[3];
    int32_t window;
} show_case_t;

typedef struct {
    uint8_t show, withheld, pad[2];
    float hr_bpm;
} show_out_t;

int main(void)
{
    BENCH_INIT();
    unsigned long long max_ticks = 0;
    FILE *f = fopen("show_in.bin", "rb");
    FILE *o = fopen("show_out.bin", "wb");
    int32_t head[3];
    if (f == NULL || o == NULL || fread(head, sizeof head[0], 3, f) != 3 || head[0] < 0 || head[1] < 1) {
        printf("cannot read show_in.bin or write show_out.bin\n");
        return 2;
    }
    const long n = head[0], cases_at = (long)sizeof head;
    const long win_at = cases_at + n * (long)sizeof(show_case_t);
    for (long i = 0; i < n; ++i) {
        show_case_t c;
        if (fseek(f, cases_at + i * (long)sizeof c, SEEK_SET) != 0 || fread(&c, sizeof c, 1, f) != 1 ||
            c.window < 0 || c.window >= head[1] ||
            fseek(f, win_at + (long)c.window * ANYPPG_WINDOW_LEN, SEEK_SET) != 0 ||
            fread(window, 1, ANYPPG_WINDOW_LEN, f) != ANYPPG_WINDOW_LEN) {
            printf("short show_in.bin at case %ld\n", i);
            return 2;
        }
        anyppg_shown_t s;
        show_out_t r;
        memset(&r, 0, sizeof r);
        const unsigned long long t0 = BENCH_NOW();
        const int rc = anyppg_hr_show(c.flags, c.quality, c.confidence, c.hr, c.af, window, head[2], &s);
        const unsigned long long t = BENCH_NOW() - t0;
        max_ticks = t > max_ticks ? t : max_ticks;
        if (rc != ANYPPG_HR_OK) {
            printf("case %ld refused\n", i);
            return 3;
        }
        r.show = s.show;
        r.withheld = s.withheld;
        r.hr_bpm = s.hr_bpm;
        if (fwrite(&r, sizeof r, 1, o) != 1) {
            printf("cannot write show_out.bin\n");
            return 3;
        }
    }
    anyppg_shown_t s;
    if (anyppg_hr_show(0u, 0, 0, 0, 0, NULL, 0, &s) != ANYPPG_HR_ERR_NULL ||
        anyppg_hr_show(0u, 0, 0, 0, 0, window, 0, NULL) != ANYPPG_HR_ERR_NULL) {
        printf("NULL pointers not refused\n");
        return 4;
    }
    fclose(f);
    fclose(o);
    BENCH_REPORT("show_max", max_ticks);
    printf("cases %ld\n", n);
    return 0;
}
