"""An exported int8 model, verified and ready to run: inputs and outputs by name from its sidecar.

    m = EdgeModel.load("runs/x/export")            # or a .tflite (+ .json beside it, or embedded)
    out = m.run(z)                                  # z (L,) preprocessed window -> {name: value}
    hr = m.refined_hr(z, out["hr"])                 # the HR a device shows (sidecar "hr_refine")

Backends (`interpreters.BACKENDS`): LiteRT with XNNPACK (default), LiteRT reference kernels
(bit-exact with TFLite Micro), tflite-runtime. Shapes: one window (L,), a batch (N, L).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .af_beats import AFBeats, AFBeatsConfigError, shown_in_af
from .contract import DEFAULT_DECISION, OUTPUTS
from .hr_refine import HRRefine, RefineConfigError, refine_on_input
from .interpreters import InputQuantizer, make_interpreter, quantize_input
from .polarity import VOTE_WINDOWS, PolarityConfigError
from .polarity import from_sidecar as polarity_from_sidecar
from .show import dequantize_scalar
from .sidecar import (ModelFileError, check_against_file, check_inputs, load_verified,
                      model_spec, sigmoid)
from .spec import SignalSpec


@dataclass
class EdgeModel:
    """A verified model file and one interpreter for it."""

    name: str
    data: bytes
    sidecar: dict[str, Any]
    sidecar_source: str
    spec: SignalSpec
    inputs: dict[str, dict[str, Any]]          # name -> sidecar entry
    outputs: dict[str, dict[str, Any]]         # name -> sidecar entry, in the file's order
    backend: str = "xnnpack"
    threads: int = 1
    interp: Any = field(default=None, repr=False)
    hr_refine: HRRefine | None = None          # the sidecar's HR refinement, if it has one
    polarity: tuple[str, int] = ("up", VOTE_WINDOWS)  # (default mode, vote_windows): sidecar "polarity"
    af_beats: AFBeats | None = None            # the beat-count HR in AF, if the sidecar has one
    _quantizers: dict[str, InputQuantizer] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._out_index = [(n, e["index"]) for n, e in self.outputs.items()]
        self._deq = {n: (np.float32(e["zero_point"]), np.float32(e["scale"])) if e["dtype"] == "int8"
                     else (None, None) for n, e in self.outputs.items()}

    @classmethod
    def load(cls, src: str | Path, sidecar: str | Path | None = None, backend: str = "xnnpack",
             threads: int = 1, warmup: int = 1, expect_spec: SignalSpec | None = None) -> "EdgeModel":
        """Load and verify (sha256, I/O against the file, spec, quantisation); one-line
        ModelFileError on anything the runtime cannot honour."""
        data, model, sc, where = load_verified(src, sidecar)
        name = Path(src).name if not Path(src).is_dir() else f"{Path(src).name}/model_int8.tflite"
        ins, outs = check_against_file(sc, model, name)
        spec = model_spec(sc, name, expect_spec)
        check_inputs(ins, spec, name)
        try:
            refine = HRRefine.from_sidecar(sc)
        except (RefineConfigError, TypeError) as e:
            raise ModelFileError(f"{name}: sidecar hr_refine: {e}") from None
        try:
            polarity = polarity_from_sidecar(sc)
        except PolarityConfigError as e:
            raise ModelFileError(f"{name}: sidecar {e}") from None
        try:
            af_beats = AFBeats.from_sidecar(sc)
        except (AFBeatsConfigError, TypeError) as e:
            raise ModelFileError(f"{name}: sidecar af_beats: {e}") from None
        try:
            interp = make_interpreter(data, backend, threads)
        except (RuntimeError, ValueError) as e:
            raise ModelFileError(f"{name}: {e}") from None
        m = cls(name, data, sc, where, spec, {e["name"]: e for e in ins},
                {e["name"]: e for e in outs}, backend, threads, interp, refine, polarity, af_beats)
        zero = np.zeros(spec.ppg_len, np.float32)
        still = np.zeros((spec.ppg_len, 3), np.float32) if "accel" in m.inputs else None
        for _ in range(max(0, warmup)):
            m.invoke_raw(zero, still)
        return m

    @property
    def decision(self) -> dict[str, float]:
        return {**DEFAULT_DECISION, **(self.sidecar.get("decision") or {})}

    @property
    def output_names(self) -> list[str]:
        return list(self.outputs)

    def quantize(self, name: str, x: np.ndarray) -> np.ndarray:
        e = self.inputs[name]
        return quantize_input(np.asarray(x, np.float32).reshape(e["shape"]), e["scale"], e["zero_point"])

    def _set_input(self, name: str, x: np.ndarray) -> None:
        """Quantise x straight into the interpreter's input buffer (a tensor() view, valid until
        the next invoke): no set_tensor copy, no per-window allocation."""
        e = self.inputs[name]
        qz = self._quantizers.get(name)
        if qz is None:
            qz = self._quantizers[name] = InputQuantizer(e["shape"], e["scale"], e["zero_point"])
        qz(x, self.interp.tensor(e["index"])())

    def invoke_raw(self, z: np.ndarray, accel: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One preprocessed window (L,) (and accel (L, 3) if the model takes it) -> the raw
        output tensors by name (int8 or float32, the file's shapes)."""
        self._set_input("ppg", z)
        if "accel" in self.inputs:
            if accel is None:
                raise ValueError(f"{self.name} takes an 'accel' input: supply accelerometer samples")
            self._set_input("accel", accel)
        it = self.interp
        it.invoke()
        get = it.get_tensor
        return {n: get(i) for n, i in self._out_index}          # copies already

    def dequantize(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw tensors -> real values by name, with (1, ...) batch axis dropped."""
        out = {}
        deq = self._deq
        for n, q in raw.items():
            zp, sc = deq[n]
            if zp is not None and q.shape == (1,):
                out[n] = np.array(dequantize_scalar(q[0], zp, sc))
                continue
            v = q.astype(np.float32)
            if zp is not None:      # = interpreters.dequantize, in place on the fresh copy
                v -= zp
                v *= sc
            out[n] = v.reshape(v.shape[1:]) if v.ndim and v.shape[0] == 1 else v
        return out

    def run(self, z: np.ndarray, accel: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One window -> real-valued outputs by name (see `readout` for probabilities)."""
        return self.dequantize(self.invoke_raw(z, accel))

    def refined_hr(self, z: np.ndarray, hr: float, flags: int = 0, af_prob: float | None = None) -> float:
        """The HR a device shows for window z (L,) (quality `flags`) whose network output is
        `hr`: refined on the int8 input minus its zero point, as the C bundle does
        (edge_runtime.hr_refine; `hr` itself where the sidecar has no "hr_refine" block), or,
        where the sidecar has an "af_beats" block and `af_prob` reaches it, the window's beat
        rate (edge_runtime.af_beats)."""
        e = self.inputs["ppg"]
        if self.hr_refine is not None:
            hr = float(refine_on_input(z, hr, e, self.spec.ppg_fs, self.hr_refine, flags)[0])
        if self.af_beats is None or af_prob is None or af_prob < self.af_beats.min_af_prob:
            return float(hr)                # (no need to quantise the window for the count)
        q = quantize_input(np.asarray(z, np.float32).reshape(1, -1), e["scale"], e["zero_point"])[0]
        return float(shown_in_af(hr, af_prob, q, e["zero_point"], self.spec.ppg_fs, self.af_beats, flags))

    def run_batch(self, z: np.ndarray, raw: bool = False) -> dict[str, np.ndarray]:
        """Windows (N, L) -> {name: (N, ...)}: dequantised, or the raw tensors if `raw`."""
        res: dict[str, list] = {n: [] for n in self.outputs}
        for w in np.atleast_2d(z):
            r = self.invoke_raw(w)
            r = r if raw else self.dequantize(r)
            for n, v in r.items():
                res[n].append(v.reshape(v.shape[1:]) if raw and v.ndim and v.shape[0] == 1 else v)
        return {n: np.stack(v) if v else np.zeros((0,)) for n, v in res.items()}


def readout(values: dict[str, np.ndarray]) -> dict[str, Any]:
    """Real outputs by name -> what a device shows: scalars as floats, logits also as
    probabilities (`af_logit` -> `af_prob`), the embedding as a vector. Names come from the
    model; the contract only says what kind each is."""
    out: dict[str, Any] = {}
    for n, v in values.items():
        port = OUTPUTS.get(n)
        if port is None:
            raise ModelFileError(f"output {n!r} is not in the I/O contract")
        if port.kind == "embedding":
            out[n] = np.asarray(v, np.float32).reshape(-1)
            continue
        s = float(np.asarray(v).reshape(-1)[0])
        out[n] = s
        if port.kind == "logit":
            out[n.removesuffix("_logit") + "_prob"] = float(sigmoid(s))
    return out
