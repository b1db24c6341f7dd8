/* The test runners' instruction counting: real on a QEMU board build (RUN_BENCH 1, with
 * c/cortex_m/anyppg_cm_bench.h on the include path), nothing on the host, so one runner source
 * serves both. BENCH_REPORT prints "@insns <name> <count>" (firmware_bridge.qemu.insn_counts). */
#ifndef ANYPPG_RUN_BENCH_H
#define ANYPPG_RUN_BENCH_H

#if RUN_BENCH
#include "anyppg_cm_bench.h"
#define BENCH_INIT() anyppg_cm_bench_init()
#define BENCH_NOW() anyppg_cm_bench_ticks()
#define BENCH_REPORT(name, ticks) anyppg_cm_bench_report((name), (ticks))
#else
#define BENCH_INIT() ((void)0)
#define BENCH_NOW() 0u
#define BENCH_REPORT(name, ticks) ((void)(name), (void)(ticks))
#endif

#endif /* ANYPPG_RUN_BENCH_H */
