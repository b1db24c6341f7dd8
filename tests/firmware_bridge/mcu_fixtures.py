"""A firmware run folder for the MCU stage's tests: the export's model + sidecar, the C
preprocessing with its generated settings, and golden vectors of a synthetic stream. Uses
`anyppg firmware` (firmware_bridge.bundle) when it exists, else assembles the same pieces."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

FW_C = Path(__file__).resolve().parents[2] / "firmware_bridge" / "c"


def synthetic_stream(seconds: float, fs: float, seed: int = 0) -> np.ndarray:
    """(T,) a pulsatile PPG-like float32 stream with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    hr = 1.2 + 0.1 * np.sin(2 * np.pi * 0.05 * t)
    x = np.sin(2 * np.pi * np.cumsum(hr) / fs) + 0.3 * np.sin(4 * np.pi * np.cumsum(hr) / fs)
    return (1000 + 50 * x + rng.normal(0, 2, t.shape)).astype(np.float32)


def firmware_run(export_dir: Path, out: Path, sensor_fs: float = 125.0, seconds: float = 32.0) -> Path:
    from firmware_bridge.golden import write_golden
    from firmware_bridge.settings import dsp_tables_c, settings_header
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(export_dir / "model_int8.tflite", out / "model_int8.tflite")
    shutil.copyfile(export_dir / "model_int8.json", out / "model_int8.json")
    sidecar = json.loads((export_dir / "model_int8.json").read_text())
    c = out / "c"
    c.mkdir(exist_ok=True)
    for f in ("anyppg_dsp.c", "anyppg_dsp.h", "anyppg_hr.c", "anyppg_hr.h"):
        shutil.copyfile(FW_C / f, c / f)
    (c / "anyppg_model_settings.h").write_text(settings_header(sidecar, sensor_fs))
    (c / "anyppg_dsp_tables.c").write_text(dsp_tables_c(sidecar, sensor_fs))
    write_golden(out / "golden", synthetic_stream(seconds, sensor_fs), sensor_fs, sidecar,
                 (export_dir / "model_int8.tflite").read_bytes(), "synthetic test stream")
    return out


def has_bundle() -> bool:
    return importlib.util.find_spec("firmware_bridge.bundle") is not None
