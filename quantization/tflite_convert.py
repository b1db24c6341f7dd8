"""onnx2tf 1.29.24: plain float ONNX -> full-int8 TFLite, calibrated on store windows.

    tfl = convert(onnx_path, calib_windows)              # bytes of *_full_integer_quant.tflite

Runs, in a temporary folder that is always removed,

    onnx2tf -i model.onnx -o <tmp>/out -b 1 -osd -oiqt -qt per-channel -iqd int8 -oqd int8 \\
        -cind ppg <tmp>/calib.npy "[[[0.0]]]" "[[[1.0]]]"

as a subprocess (TensorFlow stays out of this process; a crash or hang cannot leave state
behind; a timeout applies). Calibration windows are the store's preprocessed windows in NWC
layout (N, 1250, 1) — mean 0 / std 1 because the store already z-scores them. onnx2tf reports
a failed full-int8 quantisation only as a warning, so a missing output file is an error here.

Determinism: the subprocess runs with PYTHONHASHSEED=0, TF_DETERMINISTIC_OPS=1, one thread
and no GPU; identical inputs give a byte-identical file (checked by tests and by `export`).
Never passes -dgc (it splits grouped convs into hundreds of ops).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ONNX2TF_VERSION = "1.29.24"


class ConversionError(RuntimeError):
    """onnx2tf did not produce a full-int8 file (the message is one line)."""


@dataclass
class ConversionResult:
    tflite: bytes            # *_full_integer_quant.tflite
    float_tflite: bytes      # *_float32.tflite (for diagnostics)
    seconds: float
    command: list[str]       # as run (executable included)
    args: list[str]          # onnx2tf's arguments


def _onnx2tf_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("onnx2tf")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "onnx2tf"]


def _last_error(log: str) -> str:
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    keys = ("Error", "ERROR", "error:", "Exception", "failed", "Failed")
    for l in reversed(lines):
        if any(k in l for k in keys):
            return l[:300]
    return lines[-1][:300] if lines else "no output"


def deterministic_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PYTHONHASHSEED": "0",
        "TF_DETERMINISTIC_OPS": "1",
        "TF_CUDNN_DETERMINISTIC": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    })
    return env


def calibration_windows(windows: np.ndarray) -> np.ndarray:
    """(N, L) or (N, 1, L) windows -> (N, L, 1) float32 NWC, as onnx2tf's -cind wants."""
    w = np.asarray(windows, np.float32)
    if w.ndim == 3 and w.shape[1] == 1:
        w = w[:, 0, :]
    if w.ndim != 2 or len(w) == 0:
        raise ValueError(f"calibration windows must be (N, L) with N > 0, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("calibration windows contain NaN/inf")
    return np.ascontiguousarray(w[:, :, None])


def convert(onnx_path: str | Path, calib: np.ndarray, input_name: str = "ppg",
            timeout_s: float = 600.0, keep_dir: str | Path | None = None) -> ConversionResult:
    """Convert; returns the full-int8 and float32 .tflite bytes. Raises ConversionError.

    `calib`: (N, L) windows (converted to NWC here). `keep_dir`: copy onnx2tf's folder and log
    there for debugging (not needed normally).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ConversionError(f"{onnx_path}: no such ONNX file")
    nwc = calibration_windows(calib)
    tmp = Path(tempfile.mkdtemp(prefix="anyppg-onnx2tf-"))
    try:
        model = tmp / "model.onnx"
        shutil.copyfile(onnx_path, model)
        np.save(tmp / "calib.npy", nwc)
        out = tmp / "out"
        args = ["-i", "model.onnx", "-o", "out", "-b", "1", "-osd", "-oiqt",
                "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8",
                "-cind", input_name, "calib.npy", "[[[0.0]]]", "[[[1.0]]]"]
        cmd = _onnx2tf_cmd() + args
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=deterministic_env(), capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"onnx2tf timed out after {timeout_s:.0f} s") from None
        except OSError as e:
            raise ConversionError(f"onnx2tf could not be started ({e})") from None
        dt = time.perf_counter() - t0
        log = (proc.stdout or "") + "\n" + (proc.stderr or "")
        (tmp / "onnx2tf.log").write_text(log)
        full = out / "model_full_integer_quant.tflite"
        flt = out / "model_float32.tflite"
        if keep_dir is not None:
            shutil.copytree(tmp, keep_dir, dirs_exist_ok=True)
        if proc.returncode != 0:
            raise ConversionError(f"onnx2tf failed (exit {proc.returncode}): {_last_error(log)}")
        if not full.is_file():
            raise ConversionError(f"onnx2tf produced no full-int8 file: {_last_error(log)}")
        return ConversionResult(full.read_bytes(), flt.read_bytes() if flt.is_file() else b"",
                                dt, cmd, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
