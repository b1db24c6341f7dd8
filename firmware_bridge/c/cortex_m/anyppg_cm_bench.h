/* Exact instruction counts on QEMU's Cortex-M boards (firmware_bridge/qemu.py).
 *
 * Under `qemu-system-arm -icount shift=0` every guest instruction advances the virtual clock by
 * exactly 1 ns, and SysTick (clocked from the CPU clock, CLKSOURCE=1) ticks once per
 * 1e9 / SYSCLK ns: 40 instructions per tick on mps2 boards at 25 MHz. So
 *     instructions = ticks * ANYPPG_CM_NS_PER_TICK_NUM / ANYPPG_CM_NS_PER_TICK_DEN
 * to within one tick. qemu.build_elf defines both macros for the board it builds for.
 * QEMU models no pipeline and no caches: these are instructions, not cycles.
 *
 * Usage:
 *     anyppg_cm_bench_init();
 *     uint64_t t0 = anyppg_cm_bench_ticks();
 *     work();
 *     anyppg_cm_bench_report("work", anyppg_cm_bench_ticks() - t0);   // "@insns work 12345"
 */
#ifndef ANYPPG_CM_BENCH_H
#define ANYPPG_CM_BENCH_H

#include <stdint.h>
#include <stdio.h>

#ifndef ANYPPG_CM_NS_PER_TICK_NUM
#define ANYPPG_CM_NS_PER_TICK_NUM 40u
#define ANYPPG_CM_NS_PER_TICK_DEN 1u
#endif

#define ANYPPG_CM_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define ANYPPG_CM_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define ANYPPG_CM_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#ifndef ANYPPG_CM_RELOAD /* a test overrides it to exercise wrap counting */
#define ANYPPG_CM_RELOAD 0x00FFFFFFu
#endif

extern volatile uint32_t anyppg_cm_systick_wraps; /* incremented by startup.c's handler */

/* Start SysTick free-running from the CPU clock with its wrap interrupt. */
static inline void anyppg_cm_bench_init(void)
{
    ANYPPG_CM_SYST_CSR = 0u;
    ANYPPG_CM_SYST_RVR = ANYPPG_CM_RELOAD;
    ANYPPG_CM_SYST_CVR = 0u;
    anyppg_cm_systick_wraps = 0u;
    ANYPPG_CM_SYST_CSR = 7u; /* ENABLE | TICKINT | CLKSOURCE=CPU */
    /* The counter reads 0 until its first reload; counting from there would be off by RELOAD. */
    while (ANYPPG_CM_SYST_CVR == 0u) {
    }
}

/* Monotonic tick count since anyppg_cm_bench_init (re-reads if a wrap raced the read). */
static inline uint64_t anyppg_cm_bench_ticks(void)
{
    uint32_t w0, w1, v;
    do {
        w0 = anyppg_cm_systick_wraps;
        v = ANYPPG_CM_SYST_CVR;
        w1 = anyppg_cm_systick_wraps;
    } while (w0 != w1);
    return (uint64_t)w0 * (ANYPPG_CM_RELOAD + 1u) + (ANYPPG_CM_RELOAD - v);
}

static inline uint64_t anyppg_cm_ticks_to_insns(uint64_t ticks)
{
    return ticks * ANYPPG_CM_NS_PER_TICK_NUM / ANYPPG_CM_NS_PER_TICK_DEN;
}

/* Print "@insns <label> <instructions>"; qemu.insn_counts() parses these lines. */
static inline void anyppg_cm_bench_report(const char *label, uint64_t ticks)
{
    printf("@insns %s %llu\n", label, (unsigned long long)anyppg_cm_ticks_to_insns(ticks));
}

#endif /* ANYPPG_CM_BENCH_H */
