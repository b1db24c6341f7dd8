"""Build the C HR refinement (c/anyppg_hr.c) on the host or for a QEMU board, run it on int8
windows, and compare it with edge_runtime.hr_refine: what the tests and the bundle's cost
figure use.

    gen = generate_header(sidecar, folder)              # anyppg_model_settings.h
    exe = build_host(gen)                               # -Werror, ASan + UBSan
    got = run(exe, q, zero_point, hr, work)             # (N,) float32 refined hr
    ref = reference(q, zero_point, hr, sidecar)         # edge_runtime.refine_hr on q - zp
    elf = build_board(gen); got, insns = run(elf, ..., board="mps2-an386")
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from edge_runtime.hr_refine import HRRefine, refine_int8
from edge_runtime.spec import SignalSpec

from . import qemu
from .dsp_check import C_DIR, HOST_FLAGS, SANITIZE, TEST_C_DIR, CheckError
from .settings import settings_header

SOURCES = (C_DIR / "anyppg_hr.c", TEST_C_DIR / "anyppg_hr_run.c")
IN_FILE, OUT_FILE = "hr_in.bin", "hr_out.bin"


def generate_header(sidecar: dict, folder: Path) -> Path:
    """anyppg_model_settings.h of `sidecar` (at its own rate: the refinement reads the model
    input, whatever the sensor's rate) in folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fs = float(SignalSpec.from_dict(sidecar["spec"]).ppg_fs)
    (folder / "anyppg_model_settings.h").write_text(settings_header(sidecar, fs))
    return folder


def build_host(gen_dir: Path, sanitize: bool = True, compiler: str = "gcc") -> Path:
    """The runner (c/tests/anyppg_hr_run.c) + anyppg_hr.c for the host."""
    gen_dir = Path(gen_dir)
    out = gen_dir / ("anyppg_hr_run" + ("_san" if sanitize else ""))
    cmd = [compiler, *HOST_FLAGS, *(SANITIZE if sanitize else ()), f"-I{gen_dir}", f"-I{C_DIR}",
           *map(str, SOURCES), "-lm", "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines()
        raise CheckError(f"{compiler} failed on anyppg_hr.c: {lines[0] if lines else 'no message'}")
    return out


def build_board(gen_dir: Path, board: str = qemu.DEFAULT_BOARD) -> Path:
    """The same runner as an ELF for a QEMU board, counting instructions per call."""
    gen_dir = Path(gen_dir)
    return qemu.build_elf(list(SOURCES), gen_dir / f"anyppg_hr_run_{board}.elf", board,
                          include_dirs=[gen_dir, C_DIR], cflags=["-Werror", "-ffp-contract=off"],
                          defines={"RUN_BENCH": 1})


def write_inputs(folder: Path, q: np.ndarray, zero_point: int, hr: np.ndarray) -> None:
    """hr_in.bin: int32 n, int32 zero_point, float32 hr (n,), int8 windows (n, L)."""
    q = np.ascontiguousarray(q, np.int8)
    hr = np.asarray(hr, "<f4").reshape(-1)
    if q.ndim != 2 or len(q) != len(hr):
        raise ValueError(f"windows {q.shape} and hr {hr.shape} do not pair up")
    head = np.array([len(hr), int(zero_point)], "<i4")
    (Path(folder) / IN_FILE).write_bytes(head.tobytes() + hr.tobytes() + q.tobytes())


def run(exe: Path, q: np.ndarray, zero_point: int, hr: np.ndarray, work: Path,
        board: str | None = None, timeout_s: float = 300) -> tuple[np.ndarray, dict[str, int]]:
    """Refined hr (N,) float32 of windows q (N, L) int8 by the C, on the host (board None) or
    on QEMU; and the instruction counts a board run prints ({'hr_max', 'hr_sum'})."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    write_inputs(work, q, zero_point, hr)
    if board is None:
        res = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True, timeout=timeout_s)
        code, out = res.returncode, res.stdout + res.stderr
    else:
        r = qemu.run_elf(exe, board, cwd=work, timeout_s=timeout_s)
        code, out = r.returncode, r.stdout
    if code != 0:
        raise CheckError(f"{Path(exe).name} exited {code}: {(out.strip().splitlines() or ['?'])[-1]}")
    got = np.fromfile(work / OUT_FILE, "<f4")
    if len(got) != len(q):
        raise CheckError(f"{Path(exe).name} wrote {len(got)} results for {len(q)} windows")
    return got, qemu.insn_counts(out)


def reference(q: np.ndarray, zero_point: int, hr: np.ndarray, sidecar: dict) -> np.ndarray:
    """edge_runtime's refined hr (N,) float64 for the same windows, zero point and hr, with the
    sidecar's own block (the definition the C follows)."""
    cfg = HRRefine.from_sidecar(sidecar)
    if cfg is None:
        return np.asarray(hr, np.float64)
    fs = float(SignalSpec.from_dict(sidecar["spec"]).ppg_fs)
    return refine_int8(q, zero_point, np.asarray(hr, np.float32).astype(np.float64), fs, cfg)
