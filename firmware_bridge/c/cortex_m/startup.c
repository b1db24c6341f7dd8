/* Bare-metal start-up for the QEMU Cortex-M boards of firmware_bridge/qemu.py.
 *
 * Vector table, reset handler (FPU on, .data copied, .bss zeroed, newlib's constructors and
 * semihosting handles set up, then main), a SysTick handler that counts counter wraps for
 * anyppg_cm_bench.h, and a fault handler that reports over semihosting and exits non-zero,
 * so a crash in the code under test fails the run instead of hanging QEMU.
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
extern int main(void);
extern void __libc_init_array(void);
extern void initialise_monitor_handles(void);

volatile uint32_t anyppg_cm_systick_wraps;

#define ANYPPG_CM_CPACR (*(volatile uint32_t *)0xE000ED88u)

void anyppg_cm_reset(void);
void anyppg_cm_fault(void);
void anyppg_cm_systick(void);

static void anyppg_cm_semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

void anyppg_cm_fault(void)
{
    /* SYS_WRITE0 then SYS_EXIT_EXTENDED(ADP_Stopped_ApplicationExit, 134): QEMU exits 134. */
    static const uint32_t exit_block[2] = {0x20026u, 134u};
    anyppg_cm_semihost(0x04u, "anyppg_cm: fault exception\n");
    anyppg_cm_semihost(0x20u, exit_block);
    for (;;) {
    }
}

void anyppg_cm_systick(void)
{
    anyppg_cm_systick_wraps++;
}

/* -nostartfiles drops crti.o/crtn.o; newlib's __libc_init_array still calls these. */
void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}

void anyppg_cm_reset(void)
{
    /* Full access to CP10/CP11 before any floating-point instruction can run. */
    ANYPPG_CM_CPACR |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    uint32_t *src = &__data_load__;
    for (uint32_t *dst = &__data_start__; dst < &__data_end__;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) {
        *dst++ = 0u;
    }
    __libc_init_array();
    initialise_monitor_handles();
    exit(main());
}

/* Cortex-M vector table: initial SP, reset, 14 system exceptions (SysTick is entry 15), and
 * a block of external interrupts that all fault (the harness enables none of them). */
__attribute__((section(".vectors"), used))
void (*const anyppg_cm_vectors[16 + 32])(void) = {
    (void (*)(void))(&__stack_top__),
    anyppg_cm_reset,
    anyppg_cm_fault, /* NMI */
    anyppg_cm_fault, /* HardFault */
    anyppg_cm_fault, /* MemManage */
    anyppg_cm_fault, /* BusFault */
    anyppg_cm_fault, /* UsageFault */
    anyppg_cm_fault, /* SecureFault (v8-M) */
    0, 0, 0,
    anyppg_cm_fault, /* SVCall */
    anyppg_cm_fault, /* DebugMonitor */
    0,
    anyppg_cm_fault, /* PendSV */
    anyppg_cm_systick,
    [16 ... 47] = anyppg_cm_fault,
};
