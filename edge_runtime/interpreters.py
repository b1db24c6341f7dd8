"""Running full-int8 .tflite files: LiteRT (XNNPACK or reference kernels), TFLite Micro's
reference kernels (the `tflite-micro` wheel, the golden reference for C code), and the
quantisation of inputs / dequantisation of outputs with TFLite's rounding.

Shapes: windows x (N, L) float; outputs one array per model output (N, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def litert(src: str | Path | bytes, ref: bool = False, preserve: bool = False, threads: int = 1):
    """An allocated ai-edge-litert interpreter: XNNPACK (default kernels) or BUILTIN_REF."""
    from ai_edge_litert import interpreter as lr
    kw: dict[str, Any] = {"num_threads": threads,
                          "experimental_preserve_all_tensors": preserve}
    if ref:
        kw["experimental_op_resolver_type"] = lr.OpResolverType.BUILTIN_REF
    if isinstance(src, (bytes, bytearray)):
        it = lr.Interpreter(model_content=bytes(src), **kw)
    else:
        it = lr.Interpreter(model_path=str(src), **kw)
    it.allocate_tensors()
    return it


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 with TFLite's rounding (half away from zero) and saturation.

    v = x / scale in float64; numpy's rint rounds ties to even, so exact ties (rare) are fixed
    up to trunc(v) + sign(v); everything else is rint(v)."""
    v = np.divide(x, scale, dtype=np.float64)
    q = np.rint(v)
    tie = np.abs(v - q) == 0.5
    if tie.any():
        q[tie] = np.trunc(v[tie]) + np.sign(v[tie])
    q += zero_point
    return np.clip(q, -128, 127, out=q).astype(np.int8)


class InputQuantizer:
    """`quantize_input` bit for bit, written straight into an int8 buffer with preallocated
    float64 scratch: the per-window path of the runtime allocates nothing. Shape: the input
    tensor's (e.g. (1, L, 1)); x may be any array of that size."""

    def __init__(self, shape, scale: float, zero_point: int):
        self.shape = tuple(int(d) for d in shape)
        self.scale, self.zp = float(scale), float(zero_point)
        self.v = np.empty(self.shape, np.float64)
        self.q = np.empty(self.shape, np.float64)
        self.t = np.empty(self.shape, np.float64)

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        v, q, t = self.v, self.q, self.t
        np.divide(np.asarray(x, np.float32).reshape(self.shape), self.scale, out=v, dtype=np.float64)
        np.rint(v, out=q)
        np.subtract(v, q, out=t)
        np.abs(t, out=t)
        if t.max() == 0.5:               # exact ties (rare): half away from zero, as TFLite
            tie = t == 0.5
            q[tie] = np.trunc(v[tie]) + np.sign(v[tie])
        q += self.zp
        np.minimum(q, 127.0, out=q)      # = np.clip, without its Python-side dispatch
        np.maximum(q, -128.0, out=q)
        out[...] = q
        return out


def run_int8(it, x: np.ndarray) -> list[np.ndarray]:
    """Run windows x (N, L) float through a full-int8 LiteRT interpreter, one at a time.
    Returns the raw int8 outputs, one array per model output (N, ...), in subgraph order."""
    inp = it.get_input_details()[0]
    s, z = inp["quantization"]
    outs = it.get_output_details()
    res: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        xq = quantize_input(np.asarray(x[i], np.float32).reshape(inp["shape"]), s, z)
        it.set_tensor(inp["index"], xq)
        it.invoke()
        for k, d in enumerate(outs):
            res[k].append(it.get_tensor(d["index"]).copy())
    return [np.concatenate(r) for r in res]


def run_tflm(src: str | Path | bytes, x: np.ndarray, in_scale: float, in_zp: int,
             n_outputs: int) -> list[np.ndarray]:
    """Run windows x (N, L) float through TFLite Micro's reference kernels (tflite-micro wheel)."""
    import tflite_micro
    rt = tflite_micro.runtime
    it = (rt.Interpreter.from_bytes(bytes(src)) if isinstance(src, (bytes, bytearray))
          else rt.Interpreter.from_file(str(src)))
    shape = it.get_input_details(0)["shape"]
    res: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for i in range(len(x)):
        it.set_input(quantize_input(np.asarray(x[i], np.float32).reshape(shape), in_scale, in_zp), 0)
        it.invoke()
        for k in range(n_outputs):
            res[k].append(np.array(it.get_output(k)).copy())
        it.reset()
    return [np.concatenate(r) for r in res]


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


BACKENDS = ("xnnpack", "ref", "tflite-runtime")


def tflite_runtime(src: str | Path | bytes, threads: int = 1):
    """An allocated `tflite-runtime` interpreter (the wheel many Raspberry Pi images carry)."""
    try:
        from tflite_runtime import interpreter as tr
    except ImportError:
        raise RuntimeError("backend 'tflite-runtime' needs `pip install tflite-runtime==2.14.0` "
                           "(the project's `pi` extra)") from None
    if isinstance(src, (bytes, bytearray)):
        it = tr.Interpreter(model_content=bytes(src), num_threads=threads)
    else:
        it = tr.Interpreter(model_path=str(src), num_threads=threads)
    it.allocate_tensors()
    return it


def make_interpreter(src: str | Path | bytes, backend: str = "xnnpack", threads: int = 1):
    """An allocated interpreter of `backend` (one of BACKENDS): LiteRT with XNNPACK (its default
    kernels), LiteRT's reference kernels (bit-exact with TFLite Micro), or tflite-runtime."""
    if backend == "xnnpack":
        return litert(src, threads=threads)
    if backend == "ref":
        return litert(src, ref=True, threads=threads)
    if backend == "tflite-runtime":
        return tflite_runtime(src, threads=threads)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
