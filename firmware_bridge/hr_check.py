"""Build the C HR refinement (c/anyppg_hr.c) on the host or for a QEMU board, run it on int8
windows, and compare it with edge_runtime.hr_refine: what the tests and the bundle's cost
figure use.

    gen = generate_header(sidecar, folder)              # anyppg_model_settings.h
    exe = build_host(gen)                               # -Werror, ASan + UBSan
    got = run(exe, q, zero_point, hr, work)             # (N,) float32 refined hr
    ref = reference(q, zero_point, hr, sidecar)         # edge_runtime.refine_hr on q - zp
    elf = build_board(gen); got, insns = run(elf, ..., board="mps2-an386")

and anyppg_hr_show, the decision of what a watch shows, against edge_runtime.show:

    exe = build_host(gen, runner=SHOW_SOURCES)
    got, _ = run_show(exe, cases, windows, zero_point, work)  # SHOW_OUT records
    want = reference_show(cases, windows, zero_point, sidecar)
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from edge_runtime.af_beats import AFBeats, shown_in_af
from edge_runtime.contract import DEFAULT_DECISION
from edge_runtime.hr_refine import HRRefine, refine_int8
from edge_runtime.show import GATES, LOW_QUALITY_FLAGS, dequantize_scalar, shown_value, withheld
from edge_runtime.spec import SignalSpec

from . import qemu
from .dsp_check import C_DIR, HOST_FLAGS, SANITIZE, TEST_C_DIR, CheckError
from .settings import settings_header

SOURCES = (C_DIR / "anyppg_hr.c", TEST_C_DIR / "anyppg_hr_run.c")
IN_FILE, OUT_FILE = "hr_in.bin", "hr_out.bin"
SHOW_SOURCES = (C_DIR / "anyppg_hr.c", TEST_C_DIR / "anyppg_show_run.c")
SHOW_CASE = np.dtype([("flags", "u1"), ("quality_logit", "i1"), ("hr_confidence", "i1"),
                      ("hr", "i1"), ("af_logit", "i1"), ("pad", "u1", 3), ("window", "<i4")])
SHOW_OUT = np.dtype([("show", "u1"), ("withheld", "u1"), ("pad", "u1", 2), ("hr_bpm", "<f4")])
# anyppg_hr.h's bits, by the reason edge_runtime.show gives
SHOW_VALUES, SHOW_HR = 1, 2
WITHHELD = {"flags": 1, "model_quality": 2, "hr_confidence": 4}


def generate_header(sidecar: dict, folder: Path) -> Path:
    """anyppg_model_settings.h of `sidecar` (at its own rate: the refinement reads the model
    input, whatever the sensor's rate) in folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fs = float(SignalSpec.from_dict(sidecar["spec"]).ppg_fs)
    (folder / "anyppg_model_settings.h").write_text(settings_header(sidecar, fs))
    return folder


def build_host(gen_dir: Path, sanitize: bool = True, compiler: str = "gcc",
               runner: tuple[Path, ...] = SOURCES) -> Path:
    """A runner (c/tests/anyppg_hr_run.c, or SHOW_SOURCES) + anyppg_hr.c for the host."""
    gen_dir = Path(gen_dir)
    out = gen_dir / (runner[-1].stem + ("_san" if sanitize else ""))
    cmd = [compiler, *HOST_FLAGS, *(SANITIZE if sanitize else ()), f"-I{gen_dir}", f"-I{C_DIR}",
           *map(str, runner), "-lm", "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines()
        raise CheckError(f"{compiler} failed on anyppg_hr.c: {lines[0] if lines else 'no message'}")
    return out


def build_board(gen_dir: Path, board: str = qemu.DEFAULT_BOARD, runner: tuple[Path, ...] = SOURCES) -> Path:
    """The same runner as an ELF for a QEMU board, counting instructions per call."""
    gen_dir = Path(gen_dir)
    return qemu.build_elf(list(runner), gen_dir / f"{runner[-1].stem}_{board}.elf", board,
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


def _execute(exe: Path, work: Path, board: str | None, timeout_s: float) -> str:
    """A runner in work/ on the host (board None) or on QEMU: its output; CheckError if it fails."""
    if board is None:
        res = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True, timeout=timeout_s)
        code, out = res.returncode, res.stdout + res.stderr
    else:
        r = qemu.run_elf(exe, board, cwd=work, timeout_s=timeout_s)
        code, out = r.returncode, r.stdout
    if code != 0:
        raise CheckError(f"{Path(exe).name} exited {code}: {(out.strip().splitlines() or ['?'])[-1]}")
    return out


def run(exe: Path, q: np.ndarray, zero_point: int, hr: np.ndarray, work: Path,
        board: str | None = None, timeout_s: float = 300) -> tuple[np.ndarray, dict[str, int]]:
    """Refined hr (N,) float32 of windows q (N, L) int8 by the C, on the host (board None) or
    on QEMU; and the instruction counts a board run prints ({'hr_max', 'hr_sum'})."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    write_inputs(work, q, zero_point, hr)
    out = _execute(exe, work, board, timeout_s)
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


def run_show(exe: Path, cases: np.ndarray, windows: np.ndarray, zero_point: int, work: Path,
             board: str | None = None, timeout_s: float = 300) -> tuple[np.ndarray, dict[str, int]]:
    """anyppg_hr_show of each SHOW_CASE record (its window an index into windows (M, L) int8)
    on the host (board None) or on QEMU: SHOW_OUT records, and a board run's instruction count
    ({'show_max'})."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cases = np.ascontiguousarray(cases, SHOW_CASE)
    windows = np.ascontiguousarray(windows, np.int8)
    head = np.array([len(cases), len(windows), int(zero_point)], "<i4")
    (work / "show_in.bin").write_bytes(head.tobytes() + cases.tobytes() + windows.tobytes())
    out = _execute(exe, work, board, timeout_s)
    got = np.fromfile(work / "show_out.bin", SHOW_OUT)
    if len(got) != len(cases):
        raise CheckError(f"{Path(exe).name} wrote {len(got)} results for {len(cases)} cases")
    return got, qemu.insn_counts(out)


def reference_show(cases: np.ndarray, windows: np.ndarray, zero_point: int, sidecar: dict) -> np.ndarray:
    """What edge_runtime shows for each case (SHOW_OUT records): the stream's decision
    (edge_runtime.show.withheld on readout's values) and its hr (refined, or the beat rate in AF:
    EdgeModel.refined_hr's order)."""
    outs = {e["name"]: e for e in sidecar["outputs"]}
    decision = {**DEFAULT_DECISION, **(sidecar.get("decision") or {})}
    cfg, beats = HRRefine.from_sidecar(sidecar), AFBeats.from_sidecar(sidecar)
    fs = float(SignalSpec.from_dict(sidecar["spec"]).ppg_fs)
    want = np.zeros(len(cases), SHOW_OUT)
    want["hr_bpm"] = np.nan
    for i, c in enumerate(cases):
        if int(c["flags"]) & LOW_QUALITY_FLAGS:
            want[i]["withheld"] = WITHHELD["flags"]
            continue
        vals = {name: shown_value(n, dequantize_scalar(c[n], outs[n]["zero_point"], outs[n]["scale"]))
                for n, (name, _, _) in GATES.items() if n in outs}
        why = withheld(vals, decision)
        want[i]["withheld"] = WITHHELD[why] if why else 0
        if why == "model_quality":
            continue
        want[i]["show"] = SHOW_VALUES
        if why == "hr_confidence":
            continue
        hr = float(dequantize_scalar(c["hr"], outs["hr"]["zero_point"], outs["hr"]["scale"]))
        w = windows[int(c["window"])]
        if cfg is not None:
            hr = float(refine_int8(w[None], zero_point, np.array([hr]), fs, cfg, np.array([int(c["flags"])]))[0])
        if "af_logit" in outs:
            af = shown_value("af_logit", dequantize_scalar(c["af_logit"], outs["af_logit"]["zero_point"],
                                                           outs["af_logit"]["scale"]))
            hr = shown_in_af(hr, af, w, zero_point, fs, beats, int(c["flags"]))
        want[i]["show"] = SHOW_VALUES | SHOW_HR
        want[i]["hr_bpm"] = hr
    return want
