"""Build bare-metal C for a Cortex-M board and run it on QEMU: the harness the firmware bundle
and the MCU stage share.

API (all paths are `pathlib.Path` or str):

    BOARDS: dict[str, Board]        'mps2-an386' (Cortex-M4F, the default), 'mps2-an500'
                                    (Cortex-M7, double-precision FPU), 'mps3-an547' (Cortex-M55)
    missing_tools(board=None) -> str | None
        why this machine cannot build/run (for pytest.skip), or None when it can.
    build_elf(sources, out, board='mps2-an386', *, include_dirs=(), defines=None,
              opt='-O2', cflags=(), ldflags=()) -> Path
        Compile `sources` (C files; startup.c and the board's linker script are added) with
        arm-none-eabi-gcc for the board's CPU/FPU into the ELF `out`. Raises QemuError with the
        compiler's first error line. `defines` maps NAME -> value (None for a bare -DNAME).
    run_elf(elf, board='mps2-an386', *, timeout_s=120, cwd=None, icount=True) -> RunResult
        Run on qemu-system-arm with semihosting (printf to stdout; fopen/fread/fwrite reach the
        host's files relative to `cwd`) and `-icount shift=0` (deterministic virtual time, one
        instruction per ns). RunResult(stdout, stderr, returncode); main's return value is the
        exit code; a fault exits 134; a hang past timeout_s raises QemuError.
    insn_counts(stdout) -> dict[str, int]
        The '@insns <label> <n>' lines that anyppg_cm_bench_report() printed.
    elf_size(elf) -> dict(text=, data=, bss=)   (arm-none-eabi-size, Berkeley format)

Counting instructions in C (c/cortex_m/anyppg_cm_bench.h, on the include path of every build):

    #include "anyppg_cm_bench.h"
    anyppg_cm_bench_init();
    uint64_t t0 = anyppg_cm_bench_ticks();
    work();
    anyppg_cm_bench_report("work", anyppg_cm_bench_ticks() - t0);

SysTick runs from the CPU clock; with -icount shift=0 one tick is 1e9 / SYSCLK instructions
(40 on mps2 at 25 MHz), so counts are exact to one tick (the measuring code itself adds a few
dozen instructions; tests/firmware_bridge/test_qemu.py checks a loop of known length). QEMU
models no pipeline or caches: report instructions, and time only as an estimate with its
assumed cycles per instruction.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping

CORTEX_M_DIR = Path(__file__).resolve().parent / "c" / "cortex_m"
GCC = "arm-none-eabi-gcc"
SIZE = "arm-none-eabi-size"
QEMU = "qemu-system-arm"
# How the bundle's C is compiled (host and target): strict, and no contraction of a*b+c into an
# FMA unless the source asks for it, so host and board round alike.
CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")


class QemuError(RuntimeError):
    """A build or run on the simulated board failed (one line: what and why)."""


@dataclass(frozen=True)
class Board:
    """One QEMU machine: its CPU flags for gcc, linker script and SysTick clock."""

    name: str
    machine: str
    cpu_flags: tuple[str, ...]
    linker_script: str
    sysclk_hz: int
    description: str = ""

    @property
    def ns_per_tick(self) -> Fraction:
        """Instructions per SysTick tick under -icount shift=0 (1 instruction = 1 ns)."""
        return Fraction(10**9, self.sysclk_hz)


BOARDS: dict[str, Board] = {
    "mps2-an386": Board("mps2-an386", "mps2-an386",
                        ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
                        "mps2_an386.ld", 25_000_000, "Cortex-M4F, single-precision FPU"),
    "mps2-an500": Board("mps2-an500", "mps2-an500",
                        ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
                        # QEMU clocks SysTick of every mps2 image at 25 MHz (measured: a loop of
                        # known length reads 40 instructions per tick here too).
                        "mps2_an386.ld", 25_000_000, "Cortex-M7, double-precision FPU"),
    "mps3-an547": Board("mps3-an547", "mps3-an547",
                        ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
                        "mps3_an547.ld", 32_000_000, "Cortex-M55 with Helium (MVE)"),
}
DEFAULT_BOARD = "mps2-an386"


@dataclass
class RunResult:
    stdout: str
    stderr: str
    returncode: int
    command: list[str] = field(default_factory=list)


def board_of(board: str | Board) -> Board:
    if isinstance(board, Board):
        return board
    try:
        return BOARDS[board]
    except KeyError:
        raise QemuError(f"unknown board {board!r}; known: {', '.join(BOARDS)}") from None


def missing_tools(board: str | Board | None = None) -> str | None:
    """Why Cortex-M builds/runs cannot happen here (a skip reason), or None if they can."""
    for tool, pkg in ((GCC, "gcc-arm-none-eabi"), (SIZE, "binutils-arm-none-eabi"),
                      (QEMU, "qemu-system-arm")):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package {pkg}; `make test` installs it as root)"
    probe = subprocess.run([GCC, "-print-file-name=librdimon.a"], capture_output=True, text=True)
    if probe.returncode != 0 or "/" not in probe.stdout:
        return "newlib for arm-none-eabi not installed (Debian package libnewlib-arm-none-eabi)"
    return None


def _define_flags(defines: Mapping[str, object] | None) -> list[str]:
    return [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in (defines or {}).items()]


def build_elf(sources: Iterable[str | Path], out: str | Path, board: str | Board = DEFAULT_BOARD,
              *, include_dirs: Iterable[str | Path] = (), defines: Mapping[str, object] | None = None,
              opt: str = "-O2", cflags: Iterable[str] = (), ldflags: Iterable[str] = ()) -> Path:
    """Compile and link `sources` + startup.c into an ELF for `board` (see module docstring)."""
    b = board_of(board)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tick = b.ns_per_tick
    cmd = [GCC, *b.cpu_flags, opt, "-g", "-std=c11", "-Wall", "-Wextra",
           "-ffunction-sections", "-fdata-sections",
           f"-DANYPPG_CM_NS_PER_TICK_NUM={tick.numerator}u",
           f"-DANYPPG_CM_NS_PER_TICK_DEN={tick.denominator}u",
           *_define_flags(defines), f"-I{CORTEX_M_DIR}",
           *(f"-I{Path(d)}" for d in include_dirs), *cflags,
           *(str(s) for s in sources), str(CORTEX_M_DIR / "startup.c"),
           "--specs=rdimon.specs", "-nostartfiles", f"-L{CORTEX_M_DIR}",
           f"-T{CORTEX_M_DIR / b.linker_script}", "-Wl,--gc-sections", *ldflags,
           "-lm", "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines()
                 if (" error: " in ln or "undefined reference" in ln) and "collect2" not in ln]
        lines = lines or res.stderr.splitlines()
        raise QemuError(f"{GCC} failed for {b.name}: {lines[0] if lines else 'no message'}")
    return out


def qemu_command(elf: str | Path, board: str | Board = DEFAULT_BOARD, icount: bool = True) -> list[str]:
    """The qemu-system-arm command line run_elf uses (for reproducing a run by hand)."""
    b = board_of(board)
    cmd = [QEMU, "-M", b.machine, "-nographic", "-monitor", "none", "-serial", "null",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd


def run_elf(elf: str | Path, board: str | Board = DEFAULT_BOARD, *, timeout_s: float = 120,
            cwd: str | Path | None = None, icount: bool = True) -> RunResult:
    """Run an ELF built by build_elf on QEMU (see module docstring)."""
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise QemuError(f"{elf}: no such ELF")
    cmd = qemu_command(elf, board, icount)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                             cwd=str(cwd) if cwd is not None else None)
    except subprocess.TimeoutExpired:
        raise QemuError(f"{elf.name}: still running on {board_of(board).name} after "
                        f"{timeout_s:g} s (hang, or raise timeout_s)") from None
    return RunResult(res.stdout, res.stderr, res.returncode, cmd)


_INSNS = re.compile(r"^@insns (\S+) (\d+)\s*$", re.MULTILINE)


def insn_counts(stdout: str) -> dict[str, int]:
    """{label: instructions} from the '@insns label n' lines of a run's stdout."""
    return {m.group(1): int(m.group(2)) for m in _INSNS.finditer(stdout)}


def elf_size(elf: str | Path) -> dict[str, int]:
    """Berkeley sizes of an ELF: {'text', 'data', 'bss'} in bytes (arm-none-eabi-size)."""
    res = subprocess.run([SIZE, "-B", str(elf)], capture_output=True, text=True)
    if res.returncode != 0:
        raise QemuError(f"{SIZE} failed on {elf}: {res.stderr.strip()}")
    fields = res.stdout.splitlines()[1].split()
    return {"text": int(fields[0]), "data": int(fields[1]), "bss": int(fields[2])}


def object_sizes(sources: list[Path], include: list[Path], board: str) -> dict[str, dict]:
    """text/data/bss of each source compiled alone for `board` (arm-none-eabi-gcc -O2)."""
    b = board_of(board)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            obj = Path(tmp) / (src.stem + ".o")
            cmd = [GCC, *b.cpu_flags, *CFLAGS, "-ffunction-sections", "-fdata-sections",
                   *(f"-I{d}" for d in include), "-c", str(src), "-o", str(obj)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise QemuError(f"{src.name} does not build for {board}: "
                                  f"{(res.stderr.strip().splitlines() or ['?'])[0]}")
            out[src.name] = elf_size(obj)
    return out


def state_ram(include: list[Path], board: str, with_input: bool = False) -> int:
    """sizeof(anyppg_dsp_t) + sizeof(anyppg_dsp_window_t) for `board`, from a probe object;
    with_input: plus the int8 model input poll() writes (ANYPPG_WINDOW_LEN bytes), which an
    app without a model input tensor of its own must also hold."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "anyppg_dsp_probe.c"
        probe.write_text('#include "anyppg_dsp.h"\nanyppg_dsp_t anyppg_probe_state;\n'
                         "anyppg_dsp_window_t anyppg_probe_window;\n" +
                         ("int8_t anyppg_probe_input[ANYPPG_WINDOW_LEN];\n" if with_input else ""))
        return object_sizes([probe], include, board)[probe.name]["bss"]
