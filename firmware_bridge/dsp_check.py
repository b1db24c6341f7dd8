"""Build the C preprocessing for one sensor rate and run it on golden vectors, on the host
(gcc, -Werror, optionally AddressSanitizer + UndefinedBehaviorSanitizer) or on a QEMU board,
and compare it with edge_runtime: what the tests and `python -m firmware_bridge.dsp_bench` use.

    build_dir = generate_sources(sidecar, sensor_fs, folder)   # settings + tables
    exe = build_host(build_dir, "anyppg_dsp_run.c", sanitize=True)
    got = run_golden(exe, golden_folder)      # {'z': (K, L), 'q', 'flags', 'start'}
    cmp = compare(got, load_golden(golden_folder))
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from . import qemu
from .settings import dsp_tables_c, settings_header

C_DIR = Path(__file__).resolve().parent / "c"
TEST_C_DIR = C_DIR / "tests"
HOST_FLAGS = ("-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion",
              "-Wno-sign-conversion", "-ffp-contract=off")
SANITIZE = ("-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
OUTPUT_FILES = ("c_z.f32", "c_q.i8", "c_flags.u8", "c_start.i64")


class CheckError(RuntimeError):
    """A build or run of the C preprocessing failed (one line)."""


def missing_host_compiler() -> str | None:
    """Why host builds cannot happen here (a skip reason), or None."""
    return None if shutil.which("gcc") else "gcc not installed"


def generate_sources(sidecar: dict, sensor_fs: float, folder: Path) -> Path:
    """Write anyppg_model_settings.h and anyppg_dsp_tables.c for `sensor_fs` into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "anyppg_model_settings.h").write_text(settings_header(sidecar, sensor_fs))
    (folder / "anyppg_dsp_tables.c").write_text(dsp_tables_c(sidecar, sensor_fs))
    return folder


def dsp_sources(gen_dir: Path) -> list[Path]:
    return [C_DIR / "anyppg_dsp.c", Path(gen_dir) / "anyppg_dsp_tables.c"]


def build_host(gen_dir: Path, main_c: str | Path, sanitize: bool = True, defines: dict | None = None,
               compiler: str = "gcc", extra: tuple[str, ...] = (), out: Path | None = None) -> Path:
    """Compile the preprocessing + a test main (a name in c/tests/ or a path) for the host."""
    gen_dir = Path(gen_dir)
    main = Path(main_c) if Path(main_c).is_file() else TEST_C_DIR / main_c
    out = out or gen_dir / (main.stem + ("_san" if sanitize else ""))
    cmd = [compiler, *HOST_FLAGS, *(SANITIZE if sanitize else ()), *extra,
           *(f"-D{k}={v}" for k, v in (defines or {}).items()),
           f"-I{gen_dir}", f"-I{C_DIR}", *map(str, dsp_sources(gen_dir)), str(main), "-lm",
           "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines()
        raise CheckError(f"{compiler} failed: {lines[0] if lines else 'no message'}")
    return out


def build_board(gen_dir: Path, board: str = qemu.DEFAULT_BOARD, bench: bool = True,
                max_samples: int = 400_000, defines: dict | None = None) -> Path:
    """The golden runner (c/tests/anyppg_dsp_run.c) as an ELF for a QEMU board."""
    gen_dir = Path(gen_dir)
    return qemu.build_elf([*dsp_sources(gen_dir), TEST_C_DIR / "anyppg_dsp_run.c"],
                          gen_dir / f"anyppg_dsp_run_{board}.elf", board,
                          include_dirs=[gen_dir, C_DIR], cflags=["-Werror", "-ffp-contract=off"],
                          defines={"RUN_BENCH": int(bench), "RUN_MAX_SAMPLES": max_samples,
                                   **(defines or {})})


def read_outputs(folder: Path, window: int) -> dict[str, np.ndarray]:
    folder = Path(folder)
    return {"z": np.fromfile(folder / "c_z.f32", "<f4").reshape(-1, window),
            "q": np.fromfile(folder / "c_q.i8", np.int8).reshape(-1, window),
            "flags": np.fromfile(folder / "c_flags.u8", np.uint8),
            "start": np.fromfile(folder / "c_start.i64", "<i8")}


def run_golden(exe: Path, golden_dir: Path, window: int, work: Path | None = None,
               timeout_s: float = 120) -> dict:
    """Run a host runner on golden_dir/raw.f32 (in `work`, default the golden folder)."""
    work = Path(work or golden_dir)
    if work != Path(golden_dir):
        work.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(golden_dir) / "raw.f32", work / "raw.f32")
    res = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or ["?"])
        raise CheckError(f"{Path(exe).name} exited {res.returncode}: {tail[0]}")
    return {**read_outputs(work, window), "stdout": res.stdout}


def run_board(elf: Path, golden_dir: Path, window: int, work: Path,
              board: str = qemu.DEFAULT_BOARD, timeout_s: float = 300) -> dict:
    """Run the board runner on QEMU over golden_dir/raw.f32; adds 'insns' (label -> count)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(golden_dir) / "raw.f32", work / "raw.f32")
    res = qemu.run_elf(elf, board, cwd=work, timeout_s=timeout_s)
    if res.returncode != 0:
        raise CheckError(f"{Path(elf).name} on {board} exited {res.returncode}: "
                         f"{(res.stdout.strip().splitlines() or ['?'])[-1]}")
    return {**read_outputs(work, window), "stdout": res.stdout, "insns": qemu.insn_counts(res.stdout)}


def compare(got: dict, gold: dict) -> dict:
    """C against edge_runtime: max |z| difference, int8 agreement, flag agreement, windows."""
    ref_z = gold["preprocessed_data"]
    ppg = next(e for e in gold["inputs"] if e["name"] == "ppg")
    ref_q = ppg["data"].reshape(len(ref_z), -1)
    k = min(len(ref_z), len(got["z"]))
    same_windows = (len(got["z"]) == len(ref_z) and
                    np.array_equal(got["start"], np.asarray(gold["window_start"], np.int64)))
    if k == 0:
        return {"windows": 0, "ref_windows": len(ref_z), "same_windows": same_windows,
                "max_abs_z": 0.0, "int8_equal": 1.0, "int8_max_step": 0, "flags_equal": 1.0}
    dq = np.abs(got["q"][:k].astype(np.int32) - ref_q[:k].astype(np.int32))
    return {"windows": int(len(got["z"])), "ref_windows": int(len(ref_z)),
            "same_windows": bool(same_windows),
            "max_abs_z": float(np.abs(got["z"][:k].astype(np.float64) - ref_z[:k]).max()),
            "int8_equal": float((dq == 0).mean()), "int8_max_step": int(dq.max()),
            "flags_equal": float((got["flags"][:k] == gold["flags_data"][:k]).mean())}
