/* MCU harness (not part of the watch image's budget): preprocessing + generated inference on
 * the golden stream, bare metal on QEMU. Compares the preprocessed int8 windows with the golden
 * inputs, runs the model on the golden inputs (so its check does not depend on the
 * preprocessing's) and compares every output byte with TFLite Micro's, and prints exact instruction counts and the
 * stack high-water mark of each measured call:
 *     @insns push_total N / @insns poll_<k> N / @insns infer_<k> N
 *     @stack poll N / @stack infer N      (bytes, painted-stack high-water, 64-byte resolution)
 *     @check inputs_mismatch N outputs_mismatch N windows K
 * Built with ANYPPG_MCU_WITH_HR (the sidecar's HR refinement, anyppg_hr.c; needs the
 * preprocessing's settings header), each window's hr is also refined on the input the model
 * read: "@insns hr_<k> N", "@hr <k> <refined hr, float32 bits in hex>", and once the worst
 * case, hr in the middle of the bins where every candidate within the radius is used:
 * "@insns hr_worst N"; "@stack hr N".
 * anyppg_mcu_golden.h (generated) holds the stream, the expected inputs and outputs. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "anyppg_cm_bench.h"
#include "anyppg_model.h"
#include "anyppg_mcu_golden.h"
#if ANYPPG_MCU_WITH_DSP
#include "anyppg_dsp.h"
static anyppg_dsp_t dsp;
static anyppg_dsp_window_t win;
static int8_t win_q[ANYPPG_WINDOW_LEN]; /* the int8 model input anyppg_dsp_poll writes */
#endif

#if ANYPPG_MCU_WITH_HR
#include "anyppg_hr.h"
#endif

#define PAINT_BYTES 12288u
#define PAINT_GUARD 64u
#define PAINT_VALUE 0xA5u

static uintptr_t paint_base;

static inline uintptr_t current_sp(void)
{
    uintptr_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Paint the stack below the caller (leaving this function's own frame a guard band). */
static void __attribute__((noinline)) stack_paint(void)
{
    paint_base = current_sp() - PAINT_GUARD;
    volatile uint8_t *p = (volatile uint8_t *)(paint_base - PAINT_BYTES);
    while ((uintptr_t)p < paint_base) *p++ = PAINT_VALUE;
}

/* Bytes below paint_base that a call since stack_paint() wrote, plus the guard band. */
static uint32_t stack_used(void)
{
    const volatile uint8_t *p = (const volatile uint8_t *)(paint_base - PAINT_BYTES);
    while ((uintptr_t)p < paint_base && *p == PAINT_VALUE) ++p;
    return (uint32_t)(paint_base - (uintptr_t)p) + PAINT_GUARD;
}

#if ANYPPG_MCU_LAYER_PROFILE
/* Per-layer counts (build anyppg_model.c with
 * -DANYPPG_MODEL_LAYER_HOOK(i,n)=anyppg_mcu_layer_hook(i,n)): "@insns L<i>_<name> N". */
static uint64_t layer_t0;
void anyppg_mcu_layer_hook(int i, const char *name)
{
    const uint64_t t = anyppg_cm_bench_ticks();
    char label[48];
    snprintf(label, sizeof label, "L%02d_%s", i, name);
    anyppg_cm_bench_report(label, t - layer_t0);
    layer_t0 = anyppg_cm_bench_ticks();
}
#endif

static anyppg_model_outputs out;
static uint32_t in_bad, out_bad, stack_poll, stack_infer, stack_hr;

#if ANYPPG_MCU_WITH_HR
/* One timed anyppg_hr_refine on the window the model read; its result. */
static float time_hr(const char *label, const int8_t *ppg, float hr)
{
    float got = 0.0f;
    stack_paint();
    uint64_t t0 = anyppg_cm_bench_ticks();
    anyppg_hr_refine(ppg, ANYPPG_INPUT_PPG_ZERO_POINT, hr, &got);
    uint64_t t1 = anyppg_cm_bench_ticks();
    uint32_t s = stack_used();
    stack_hr = s > stack_hr ? s : stack_hr;
    anyppg_cm_bench_report(label, t1 - t0);
    return got;
}

static void run_hr(int k, const int8_t *ppg)
{
    char label[32];
    snprintf(label, sizeof label, "hr_%d", k);
    const float hr = ANYPPG_OUTPUT_HR_SCALE * (float)(out.hr[0] - ANYPPG_OUTPUT_HR_ZERO_POINT);
    union {
        float f;
        uint32_t u;
    } got = {.f = time_hr(label, ppg, hr)};
    printf("@hr %d %08lx\n", k, (unsigned long)got.u);
    if (k == 0) {
        (void)time_hr("hr_worst", ppg, 0.5f * (ANYPPG_HR_BIN_MIN_BPM + ANYPPG_HR_BIN_MAX_BPM));
    }
}
#endif

static void run_model(int k, const int8_t *ppg)
{
    anyppg_model_inputs in;
    ANYPPG_MCU_BIND(in, ppg, k);
    stack_paint();
    uint64_t t0 = anyppg_cm_bench_ticks();
#if ANYPPG_MCU_LAYER_PROFILE
    layer_t0 = t0;
#endif
    anyppg_invoke(&in, &out);
    uint64_t t1 = anyppg_cm_bench_ticks();
    uint32_t s = stack_used();
    stack_infer = s > stack_infer ? s : stack_infer;
    char label[32];
    snprintf(label, sizeof label, "infer_%d", k);
    anyppg_cm_bench_report(label, t1 - t0);
    for (int i = 0; i < ANYPPG_MODEL_N_OUTPUTS; ++i) {
        const anyppg_model_port *p = &anyppg_model_output_ports[i];
        const int8_t *got = (const int8_t *)&out + p->offset;
        const int8_t *want = anyppg_mcu_expected_outputs[i] + (size_t)k * (size_t)p->len;
        for (int j = 0; j < p->len; ++j) out_bad += got[j] != want[j];
    }
#if ANYPPG_MCU_WITH_HR
    run_hr(k, ppg);
#endif
}

int main(void)
{
    anyppg_cm_bench_init();
    int k = 0;
#if ANYPPG_MCU_WITH_DSP
    if (anyppg_dsp_init(&dsp, ANYPPG_MCU_SENSOR_FS) != ANYPPG_DSP_OK) {
        printf("dsp init failed\n");
        return 3;
    }
    uint64_t push_ticks = 0;
    for (uint32_t pos = 0; pos <= ANYPPG_MCU_N_RAW && k < ANYPPG_MCU_N_WINDOWS;) {
        uint32_t n = ANYPPG_MCU_N_RAW - pos < ANYPPG_MCU_CHUNK ? ANYPPG_MCU_N_RAW - pos : ANYPPG_MCU_CHUNK;
        if (n == 0) {
            anyppg_dsp_finish(&dsp, ANYPPG_MCU_PAD_SHORT);
            pos += 1;
        } else {
            uint64_t t0 = anyppg_cm_bench_ticks();
            anyppg_dsp_push(&dsp, anyppg_mcu_raw + pos, n);
            push_ticks += anyppg_cm_bench_ticks() - t0;
            pos += n;
        }
        for (;;) {
            stack_paint();
            uint64_t t0 = anyppg_cm_bench_ticks();
            int r = anyppg_dsp_poll(&dsp, &win, win_q);
            uint64_t t1 = anyppg_cm_bench_ticks();
            uint32_t s = stack_used();
            if (r != 1 || k >= ANYPPG_MCU_N_WINDOWS) break;
            stack_poll = s > stack_poll ? s : stack_poll;
            char label[32];
            snprintf(label, sizeof label, "poll_%d", k);
            anyppg_cm_bench_report(label, t1 - t0);
            for (int j = 0; j < ANYPPG_MCU_WINDOW; ++j)
                in_bad += win_q[j] != anyppg_mcu_expected_ppg[(size_t)k * ANYPPG_MCU_WINDOW + j];
            run_model(k, anyppg_mcu_expected_ppg + (size_t)k * ANYPPG_MCU_WINDOW);
            ++k;
        }
    }
    anyppg_cm_bench_report("push_total", push_ticks);
    printf("@stack poll %lu\n", (unsigned long)stack_poll);
#else
    for (; k < ANYPPG_MCU_N_WINDOWS; ++k)
        run_model(k, anyppg_mcu_expected_ppg + (size_t)k * ANYPPG_MCU_WINDOW);
#endif
    printf("@stack infer %lu\n", (unsigned long)stack_infer);
#if ANYPPG_MCU_WITH_HR
    printf("@stack hr %lu\n", (unsigned long)stack_hr);
#endif
    printf("@check inputs_mismatch %lu outputs_mismatch %lu windows %d\n",
           (unsigned long)in_bad, (unsigned long)out_bad, k);
    return (out_bad || k != ANYPPG_MCU_N_WINDOWS) ? 1 : (in_bad ? 4 : 0);
}
