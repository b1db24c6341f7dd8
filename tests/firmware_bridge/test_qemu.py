"""The Cortex-M harness (firmware_bridge/qemu.py): builds, runs, exit codes, semihosting files,
faults, and instruction counts checked against a loop of known length."""
from __future__ import annotations

import pytest

from firmware_bridge import qemu

pytestmark = pytest.mark.skipif(qemu.missing_tools() is not None,
                                reason=str(qemu.missing_tools()))

LOOP_C = r"""
#include <stdio.h>
#include "anyppg_cm_bench.h"
/* Exactly 2 * n instructions: subs + bne per iteration. */
static void loop(unsigned n) { __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) :: "cc"); }
int main(void) {
    volatile float f = 1.5f;
    f = f * 3.0f;                       /* the FPU must be on (a fault otherwise) */
    anyppg_cm_bench_init();
    uint64_t t0 = anyppg_cm_bench_ticks();
    loop(N_ITER);
    anyppg_cm_bench_report("loop", anyppg_cm_bench_ticks() - t0);
    FILE *fp = fopen("out.bin", "wb");
    if (!fp) return 3;
    fwrite("anyppg", 1, 6, fp);
    fclose(fp);
    printf("f=%d\n", (int)f);
    return 7;
}
"""


@pytest.mark.parametrize("board", list(qemu.BOARDS))
def test_loop_of_known_length_counts_exactly(tmp_path, board):
    src = tmp_path / "loop.c"
    src.write_text(LOOP_C)
    n = 300_000
    elf = qemu.build_elf([src], tmp_path / "loop.elf", board, defines={"N_ITER": f"{n}u"})
    res = qemu.run_elf(elf, board, cwd=tmp_path, timeout_s=60)
    assert res.returncode == 7, res.stderr
    assert "f=4" in res.stdout
    assert (tmp_path / "out.bin").read_bytes() == b"anyppg"
    got = qemu.insn_counts(res.stdout)["loop"]
    tick = qemu.board_of(board).ns_per_tick
    assert abs(got - 2 * n) <= tick, (board, got)


def test_counter_wraps_are_counted(tmp_path):
    src = tmp_path / "loop.c"
    src.write_text(LOOP_C)
    # A 4096-tick reload wraps about 30 times over this loop; the count must not notice.
    elf = qemu.build_elf([src], tmp_path / "wrap.elf", defines={"N_ITER": "2500000u",
                                                                "ANYPPG_CM_RELOAD": "0xFFFu"})
    res = qemu.run_elf(elf, cwd=tmp_path, timeout_s=60)
    got = qemu.insn_counts(res.stdout)["loop"]
    # Each wrap interrupt adds its own handler's instructions (~10): allow them, no more.
    assert 5_000_000 <= got <= 5_000_000 + 40 * 20, got


def test_fault_exits_nonzero(tmp_path):
    src = tmp_path / "fault.c"
    src.write_text("int main(void) { void (*f)(void) = (void (*)(void))0xFFFFFFF1u; f(); return 0; }\n")
    elf = qemu.build_elf([src], tmp_path / "fault.elf")
    res = qemu.run_elf(elf, timeout_s=30)
    assert res.returncode == 134
    assert "fault" in res.stdout + res.stderr


def test_compile_error_is_one_line(tmp_path):
    src = tmp_path / "bad.c"
    src.write_text("int main(void) { return undeclared; }\n")
    with pytest.raises(qemu.QemuError, match=r"bad\.c.*undeclared") as e:
        qemu.build_elf([src], tmp_path / "bad.elf")
    assert "\n" not in str(e.value)


def test_unknown_board_and_missing_elf(tmp_path):
    with pytest.raises(qemu.QemuError, match="unknown board"):
        qemu.board_of("mps9")
    with pytest.raises(qemu.QemuError, match="no such ELF"):
        qemu.run_elf(tmp_path / "none.elf")


def test_insn_counts_parser():
    out = "x\n@insns a 12\n@insns b_2 340000\n@insns bad x\n"
    assert qemu.insn_counts(out) == {"a": 12, "b_2": 340000}
