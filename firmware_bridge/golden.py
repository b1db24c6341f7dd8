"""Golden vectors: raw sensor stream -> preprocessed float windows -> int8 model inputs ->
expected int8 model outputs (TFLite Micro's reference kernels, the `tflite-micro` wheel).

The C preprocessing (anyppg_dsp.c) and the generated C inference are both checked against
these files. Generation is deterministic: the same stream, model and sidecar give the same
bytes (no timestamps, sorted JSON, fixed float formatting).

Format (one folder; version 1). Binary files are raw little-endian arrays in C order, no header:

    golden.json
        format: "anyppg-golden", version: 1
        source: free text (what the stream is), model_sha256: of the .tflite used
        sensor_fs: the stream's rate (Hz); ppg_fs: the model's rate; window: L; hop (samples
            at ppg_fs); pad_short: whether a record shorter than a window was tiled to one
        n_raw: T; n_windows: K
        raw:          {"file": "raw.f32", "dtype": "float32", "shape": [T]}
                      the sensor samples exactly as the C API receives them (NaN/inf allowed)
        window_start: [K ints] first sample of each window, at ppg_fs from the stream's start
        flags:        {"file": "flags.u8", "dtype": "uint8", "shape": [K]}  (spec.FLAG_* bits)
        preprocessed: {"file": "ppg_float.f32", "dtype": "float32", "shape": [K, L]}
                      edge_runtime.preprocess.ppg_windows' output (band-passed, z-scored)
        inputs:  [{"name", "position", "file": "input_<name>.i8", "dtype": "int8",
                   "shape": [K, ...per-window input shape], "scale", "zero_point", "from"}]
                  "from": "preprocessed" for ppg (quantize_input of `preprocessed`); any other
                  input (e.g. accel) is "zeros": a still sensor reads 0 (edge_runtime.accel), so
                  the file holds the zero point
        outputs: [{"name", "position", "file": "output_<name>.i8", "dtype": "int8",
                   "shape": [K, ...], "scale", "zero_point", "unit"}]
                  raw int8 outputs of TFLite Micro's reference kernels; real value =
                  scale * (q - zero_point)

Inputs and outputs are bound by name through the sidecar (schema 1 or 2), never by a list.
`position` is the tensor's place in the subgraph's inputs/outputs. Read a set back with
`load_golden(folder)` -> dict of numpy arrays keyed like the JSON.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.contract import sidecar_inputs
from edge_runtime.hr_refine import HRRefine, refine_int8
from edge_runtime.interpreters import quantize_input
from edge_runtime.preprocess import ppg_windows
from edge_runtime.spec import SignalSpec

FORMAT = "anyppg-golden"
VERSION = 1


def _write(folder: Path, name: str, arr: np.ndarray, dtype: str) -> dict[str, Any]:
    a = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    (folder / name).write_bytes(a.tobytes())
    return {"file": name, "dtype": dtype, "shape": list(a.shape)}


def _position(entry: dict, default: int) -> int:
    return int(entry.get("position", default))


def tflm_outputs(model_bytes: bytes, inputs: dict[int, np.ndarray], n_outputs: int) -> list[np.ndarray]:
    """Run int8 windows through TFLite Micro's reference kernels (the `tflite-micro` wheel).

    inputs: {input position: (K, ...) int8}. Returns one (K, ...) int8 array per output
    position. (edge_runtime.interpreters.run_tflm takes one float input; a model with a
    second input needs each one set by position, hence this.)"""
    import tflite_micro
    it = tflite_micro.runtime.Interpreter.from_bytes(bytes(model_bytes))
    k = len(next(iter(inputs.values())))
    res: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for i in range(k):
        for pos, arr in inputs.items():
            shape = it.get_input_details(pos)["shape"]
            it.set_input(np.asarray(arr[i], np.int8).reshape(shape), pos)
        it.invoke()
        for o in range(n_outputs):
            res[o].append(np.array(it.get_output(o)).copy())
        it.reset()
    return [np.concatenate(r) if r else np.zeros((0,), np.int8) for r in res]


def reference_windows(raw: np.ndarray, sensor_fs: float, spec: SignalSpec,
                      pad_short: bool = False) -> dict[str, np.ndarray]:
    """edge_runtime's windows of a float32 stream (T,): what the C API must reproduce.

    The stream is taken as float32 first (what the C API receives), then as float64."""
    x = np.asarray(raw, np.float32).astype(np.float64)
    return ppg_windows(x, sensor_fs, spec, pad_short=pad_short)


def write_golden(folder: str | Path, raw: np.ndarray, sensor_fs: float, sidecar: dict,
                 model_bytes: bytes | None, source: str, pad_short: bool = False) -> dict:
    """Write one golden set for the stream `raw` (T,) at `sensor_fs` into `folder`.

    model_bytes None skips the model outputs (preprocessing-only sets). Returns golden.json's
    content. The folder is created; files in it are overwritten."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = SignalSpec.from_dict(sidecar["spec"])
    raw32 = np.asarray(raw, np.float32).reshape(-1)
    w = reference_windows(raw32, sensor_fs, spec, pad_short)
    x = np.asarray(w["x"], np.float32)
    k, win = x.shape
    meta: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "source": source,
        "model_sha256": sidecar.get("sha256", ""),
        "sensor_fs": float(sensor_fs), "ppg_fs": float(spec.ppg_fs), "window": int(win),
        "hop": int(max(1, round(spec.hop_s * spec.ppg_fs))), "pad_short": bool(pad_short),
        "n_raw": int(len(raw32)), "n_windows": int(k),
        "raw": _write(folder, "raw.f32", raw32, "float32"),
        "window_start": [int(round(s * spec.ppg_fs)) for s in np.asarray(w["start_s"])],
        "flags": _write(folder, "flags.u8", w["flags"], "uint8"),
        "preprocessed": _write(folder, "ppg_float.f32", x, "float32"),
        "inputs": [], "outputs": [],
    }
    q_by_pos: dict[int, np.ndarray] = {}
    for i, e in enumerate(sidecar_inputs(sidecar)):
        name, pos = e["name"], _position(e, i)
        per = list(e.get("shape", [1, win, 1]))[1:]
        scale, zp = float(e["scale"]), int(e["zero_point"])
        src = x if name == "ppg" else np.zeros((k, *per), np.float32)
        q = quantize_input(src.reshape(k, *per), scale, zp)
        q_by_pos[pos] = q
        meta["inputs"].append({"name": name, "position": pos, "scale": scale, "zero_point": zp,
                               "from": "preprocessed" if name == "ppg" else "zeros",
                               **_write(folder, f"input_{name}.i8", q, "int8")})
    if model_bytes is not None and k:
        outs = sidecar.get("outputs", [])
        got = tflm_outputs(model_bytes, q_by_pos, len(outs))
        for i, e in enumerate(outs):
            pos = _position(e, i)
            arr = got[pos].reshape(k, *list(e.get("shape", [1, -1]))[1:])
            meta["outputs"].append({"name": e["name"], "position": pos,
                                    "scale": float(e["scale"]), "zero_point": int(e["zero_point"]),
                                    "unit": e.get("unit", ""),
                                    **_write(folder, f"output_{e['name']}.i8", arr, "int8")})
    (folder / "golden.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def load_golden(folder: str | Path) -> dict[str, Any]:
    """golden.json plus its arrays: meta['raw_data'], ['flags_data'], ['preprocessed_data'],
    and each input/output entry's 'data'."""
    folder = Path(folder)
    meta = json.loads((folder / "golden.json").read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{folder / 'golden.json'}: not an {FORMAT} v{VERSION} set")

    def arr(e):
        return np.fromfile(folder / e["file"], dtype=np.dtype(e["dtype"]).newbyteorder("<")
                           ).reshape(e["shape"])
    for key in ("raw", "flags", "preprocessed"):
        meta[f"{key}_data"] = arr(meta[key])
    for e in meta["inputs"] + meta["outputs"]:
        e["data"] = arr(e)
    return meta


def golden_refined_hr(gold: dict[str, Any], sidecar: dict, k: int | None = None) -> np.ndarray | None:
    """edge_runtime's HR for the first k golden windows as a device shows it: the golden network
    hr dequantised in float32 (as the C does), refined on the golden int8 input with the
    sidecar's hr_refine block (edge_runtime.hr_refine.refine_int8). None without a block."""
    cfg = HRRefine.from_sidecar(sidecar)
    if cfg is None:
        return None
    hr = next(e for e in gold["outputs"] if e["name"] == "hr")
    ppg = next(e for e in gold["inputs"] if e["name"] == "ppg")
    q = ppg["data"].reshape(len(ppg["data"]), -1)[:k]
    net = np.float32(hr["scale"]) * (hr["data"].reshape(len(ppg["data"]), -1)[:k, 0].astype(np.float32)
                                     - np.float32(hr["zero_point"]))
    return refine_int8(q, ppg["zero_point"], net.astype(np.float64), float(gold["ppg_fs"]), cfg)
