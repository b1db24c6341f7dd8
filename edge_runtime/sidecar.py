"""A model file's sidecar: finding it (beside the file or inside its metadata), proving it belongs
to the file, and checking that the runtime can honour what it declares.

Embedded sidecar: the JSON is stored in the `.tflite`'s `Model.metadata` entry named
`SIDECAR_METADATA_NAME` (written by `quantization.tflite_edit.embed_sidecar`). A file cannot
hold its own hash, so the embedded copy carries `sha256_blanked`: the sha256 of the file with
the embedded JSON's bytes replaced by zero bytes. The external sidecar carries the same fields
plus `sha256` and `bytes` of the whole file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import tflite_file as tff
from .contract import ACCEL_PREPROCESSING, INPUTS, ContractError, check_ports, sidecar_inputs
from .spec import SignalSpec, SpecMismatch

SIDECAR_METADATA_NAME = "anyppg_sidecar"
SIDECAR_FILE_SUFFIX = ".json"


class ModelFileError(ValueError):
    """A model file, or its sidecar, that the runtime refuses (one line, names the file)."""


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def blanked_sha256(file_bytes: bytes, json_bytes: bytes) -> str:
    """sha256 of `file_bytes` with its one copy of `json_bytes` overwritten by zero bytes."""
    at = file_bytes.find(json_bytes)
    if at < 0 or file_bytes.find(json_bytes, at + 1) >= 0:
        raise ModelFileError("embedded sidecar not found exactly once in the file")
    return sha256(file_bytes[:at] + bytes(len(json_bytes)) + file_bytes[at + len(json_bytes):])


def _parse_model(data: bytes, name: str):
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{name}: not a TFLite flatbuffer (no TFL3 identifier; "
                             f"{len(data)} bytes, truncated or another format?)")
    try:
        return tff.load_model(data)
    except Exception as e:          # the flatbuffer reader raises anything on a corrupt file
        raise ModelFileError(f"{name}: corrupt TFLite file ({type(e).__name__})") from None


def locate(src: str | Path) -> tuple[Path, Path | None]:
    """(model file, sidecar or None) from an export folder or a .tflite path."""
    src = Path(src)
    if src.is_dir():
        tfl = src / "model_int8.tflite"
        if not tfl.exists():
            cands = sorted(src.glob("*.tflite"))
            if len(cands) != 1:
                raise ModelFileError(f"{src}: expected model_int8.tflite in the export folder")
            tfl = cands[0]
    else:
        tfl = src
    if not tfl.exists():
        raise ModelFileError(f"{tfl}: no such model file")
    side = tfl.with_suffix(SIDECAR_FILE_SUFFIX)
    return tfl, (side if side.exists() else None)


def load_verified(src: str | Path, sidecar_path: str | Path | None = None
                  ) -> tuple[bytes, Any, dict[str, Any], str]:
    """(file bytes, ModelT, sidecar, where the sidecar came from) after checking that the
    sidecar is this file's: external sidecar by sha256, embedded one by sha256_blanked."""
    tfl, side = locate(src)
    if sidecar_path is not None:
        side = Path(sidecar_path)
        if not side.exists():
            raise ModelFileError(f"{side}: no such sidecar")
    data = tfl.read_bytes()
    if side is not None:
        try:
            sc = json.loads(side.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{side}: not valid JSON ({e})") from None
        if sc.get("sha256") != sha256(data):
            raise ModelFileError(f"{tfl.name}: sha256 {sha256(data)[:12]}... does not match its sidecar "
                                 f"{side.name} ({str(sc.get('sha256'))[:12]}...): wrong or modified file")
        return data, _parse_model(data, tfl.name), sc, str(side)
    model = _parse_model(data, tfl.name)
    raw = tff.read_metadata(model, SIDECAR_METADATA_NAME)
    if raw is None:
        raise ModelFileError(f"{tfl.name}: no sidecar ({tfl.with_suffix('.json').name}) and none "
                             f"embedded in the file's metadata")
    try:
        sc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{tfl.name}: embedded sidecar is not valid JSON") from None
    if sc.get("sha256_blanked") != blanked_sha256(data, raw):
        raise ModelFileError(f"{tfl.name}: file content does not match its embedded sidecar "
                             f"(modified after export)")
    return data, model, sc, f"{tfl.name}:metadata/{SIDECAR_METADATA_NAME}"


def _close(a, b) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-6 * max(abs(float(b)), 1e-30)


def check_against_file(sc: dict[str, Any], model, name: str) -> tuple[list[dict], list[dict]]:
    """The sidecar's (inputs, outputs), each checked against the file's own tensors: index,
    shape, dtype, scale and zero point must agree; int8 tensors must carry quantisation."""
    try:
        check_ports(sc, require=("embedding",))
        ins, outs = sidecar_inputs(sc), list(sc.get("outputs", []))
    except ContractError as e:
        raise ModelFileError(f"{name}: {e}") from None
    io = tff.io_binding(model)
    by_index = {e["index"]: e for e in io["inputs"] + io["outputs"]}
    for kind, entries, actual in (("input", ins, io["inputs"]), ("output", outs, io["outputs"])):
        if sorted(int(e["index"]) for e in entries) != sorted(a["index"] for a in actual):
            raise ModelFileError(f"{name}: sidecar {kind}s {[e['name'] for e in entries]} do not cover "
                                 f"the file's {kind} tensors")
        for e in entries:
            f = by_index[int(e["index"])]
            for key in ("shape", "dtype", "zero_point"):
                if e.get(key) != f[key]:
                    raise ModelFileError(f"{name}: sidecar says {kind} {e['name']} {key} {e.get(key)}, "
                                         f"the file has {f[key]}")
            if f["dtype"] == "int8" and not (_close(e.get("scale"), f["scale"]) and f["scale"] > 0):
                raise ModelFileError(f"{name}: {kind} {e['name']} scale {e.get('scale')} in the sidecar, "
                                     f"{f['scale']} in the file")
            if f["dtype"] not in ("int8", "float32"):
                raise ModelFileError(f"{name}: {kind} {e['name']} is {f['dtype']}; the runtime takes "
                                     f"int8 or float32")
    return ins, outs


def check_inputs(ins: list[dict], spec: SignalSpec, name: str) -> None:
    """Every input must be a (1, L, C) window of the spec's length with its contract channels."""
    channels = {"ppg": 1, "accel": 3}
    for e in ins:
        want = [1, spec.ppg_len, channels[e["name"]]]
        if list(e["shape"]) != want:
            raise ModelFileError(f"{name}: input {e['name']} has shape {e['shape']}, the spec "
                                 f"({spec.ppg_fs:g} Hz x {spec.window_s:g} s) needs {want}")
        if e["dtype"] != "int8":
            raise ModelFileError(f"{name}: input {e['name']} is {e['dtype']}; the runtime feeds "
                                 f"full-int8 models ({INPUTS[e['name']].doc})")
        if e["name"] == "accel" and e.get("preprocessing", ACCEL_PREPROCESSING) != ACCEL_PREPROCESSING:
            raise ModelFileError(f"{name}: accel input made with preprocessing {e['preprocessing']!r}; "
                                 f"this runtime feeds {ACCEL_PREPROCESSING!r}")


def model_spec(sc: dict[str, Any], name: str, expect: SignalSpec | None = None) -> SignalSpec:
    try:
        spec = SignalSpec.from_dict(sc["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{name}: sidecar has no usable signal spec ({e})") from None
    if expect is not None:
        try:
            expect.check_compatible(spec, name)
        except SpecMismatch as e:
            raise ModelFileError(str(e)) from None
    return spec


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
