/* Fuzz harness over the streaming API of anyppg_dsp.
 *
 * The input bytes are a program: each step takes one opcode byte and
 *   op % 8 in 0..4: push the next 4*k bytes as float samples (raw bit patterns: NaN, inf,
 *                   denormals, 1e38 all occur), k = next byte (0..255, so zero-length too)
 *   op % 8 == 5:    push NULL with n = 0, and check NULL with n > 0 is refused
 *   op % 8 == 6:    poll until empty
 *   op % 8 == 7:    finish (pad_short = op & 8), then poll until empty
 * Invariants checked after every poll: finite window, int8 in range by construction, only
 * known flag bits, window starts strictly increasing on the hop grid.
 *
 * Built two ways (tests/firmware_bridge/test_dsp_fuzz.py):
 *   clang -fsanitize=fuzzer,address,undefined ... : libFuzzer drives LLVMFuzzerTestOneInput
 *   cc -DANYPPG_FUZZ_LOOP=N ...                     : a bounded loop of N random programs
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anyppg_dsp.h"

static anyppg_dsp_t st;
static anyppg_dsp_window_t win;
static int8_t q[ANYPPG_WINDOW_LEN];
static float z[ANYPPG_WINDOW_LEN];

static void fail(const char *what)
{
    printf("fuzz invariant broken: %s\n", what);
    abort();
}

static void drain(int64_t *last_start)
{
    int r;
    while ((r = anyppg_dsp_poll(&st, &win, q)) == 1) {
        if (anyppg_dsp_window_z(&st, z) != ANYPPG_DSP_OK) fail("window_z after poll");
        for (int i = 0; i < ANYPPG_WINDOW_LEN; i++) {
            if (!isfinite(z[i])) fail("non-finite z");
        }
        if (win.flags & ~0x1Fu) fail("unknown flag bit");
        if (win.start <= *last_start || win.start % ANYPPG_HOP_LEN != 0) fail("window start");
        *last_start = win.start;
    }
    if (r != 0) fail("poll error");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float buf[256];
    int64_t last_start = -1;
    if (anyppg_dsp_init(&st, ANYPPG_SENSOR_FS_HZ) != ANYPPG_DSP_OK) fail("init");
    size_t pos = 0;
    while (pos < size) {
        uint8_t op = data[pos++];
        switch (op % 8) {
        case 5:
            if (anyppg_dsp_push(&st, NULL, 0) < ANYPPG_DSP_ERR_FINISHED) fail("push NULL, 0");
            if (anyppg_dsp_push(&st, NULL, 3) != ANYPPG_DSP_ERR_NULL) fail("push NULL, 3");
            break;
        case 6:
            drain(&last_start);
            break;
        case 7:
            if (anyppg_dsp_finish(&st, op & 8) != ANYPPG_DSP_OK) fail("finish");
            drain(&last_start);
            break;
        default: {
            size_t k = pos < size ? data[pos++] : 0;
            size_t avail = (size - pos) / 4;
            k = k < avail ? k : avail;
            memcpy(buf, data + pos, k * 4);
            pos += k * 4;
            int r = anyppg_dsp_push(&st, buf, k);
            if (r != ANYPPG_DSP_OK && r != ANYPPG_DSP_ERR_FINISHED) fail("push");
        }
        }
    }
    drain(&last_start);
    return 0;
}

#ifdef ANYPPG_FUZZ_LOOP
/* Bounded random programs for compilers without libFuzzer: xorshift64*, fixed seed. */
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint8_t next_byte(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint8_t)((rng * 0x2545F4914F6CDD1Dull) >> 56);
}

int main(void)
{
    static uint8_t prog[1 << 16];
    for (long it = 0; it < ANYPPG_FUZZ_LOOP; it++) {
        size_t n = (size_t)next_byte() << 8 | next_byte();
        int style = next_byte() % 3;   /* raw bytes, PPG-like floats, or sparse specials */
        for (size_t i = 0; i < n; i++) prog[i] = next_byte();
        if (style > 0) {
            for (size_t i = 2; i + 4 <= n; i += 4) {
                float v = 1000.0f + 50.0f * (float)sin(0.06 * (double)i);
                if (style == 2 && next_byte() < 4) v = (next_byte() & 1) ? NAN : 3.0e38f;
                memcpy(prog + i, &v, 4);
            }
        }
        LLVMFuzzerTestOneInput(prog, n);
    }
    printf("fuzz loop: %d programs ok\n", ANYPPG_FUZZ_LOOP);
    return 0;
}
#endif
