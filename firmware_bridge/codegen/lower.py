"""Lower an int8 .tflite graph into the generator's layers: every fact a C kernel needs
(1-D geometry, int8 weights, folded biases, per-channel multipliers and shifts, zero points,
activation clamps) computed once here, in Python, with TFLite Micro's integer rules.

A graph runs over (1, L, C) activations: TFLite's NHWC tensors with H == 1 or W == 1 are the
same bytes as (L, C). Anything the kernels cannot run exactly raises CodegenError naming the op.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime import tflite_file as tf
from edge_runtime.int8_ops import TFLM_INT8_OPS

from .quant import activation_range, conv_multipliers, f32, quantize_multiplier

# The subset of edge_runtime's int8 allow-list that has a generated kernel.
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "ADD", "PAD", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "LOGISTIC",
                 "SOFTMAX")
assert set(SUPPORTED_OPS) <= TFLM_INT8_OPS


class CodegenError(ValueError):
    """The model cannot be generated exactly (one line: which op, what is wrong)."""


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Layer:
    """One kernel call: kind, int8 activation tensors in/out, and its constant facts."""
    kind: str                       # conv | dwconv | fc | maxpool | avgpool | add | pad | reshape | logistic | softmax
    op_index: int
    inputs: list[int]
    output: int
    p: dict[str, Any] = field(default_factory=dict)
    fused: list[str] = field(default_factory=list)   # TFLite ops folded into this call

    @property
    def label(self) -> str:
        return "+".join([self.kind, *self.fused])


@dataclass
class Lowered:
    tensors: dict[int, Tensor]
    layers: list[Layer]
    inputs: dict[str, int]          # sidecar name -> tensor index
    outputs: dict[str, int]
    ops: list[str]                  # the TFLite op names, in order


def _sidecar_ports(sidecar: dict, key: str) -> list[dict]:
    from edge_runtime.contract import sidecar_inputs
    return sidecar_inputs(sidecar) if key == "inputs" else list(sidecar.get("outputs", []))


def _geometry(shape, what: str) -> tuple[int, int]:
    """(L, C) of a (1, H, W, C) / (1, L, C) / (1, C) int8 activation."""
    s = [int(v) for v in shape]
    if len(s) == 4:
        if s[0] != 1 or (s[1] != 1 and s[2] != 1):
            raise CodegenError(f"{what}: shape {s} is not 1-D (batch 1 and H == 1 or W == 1)")
        return s[1] * s[2], s[3]
    if len(s) == 3 and s[0] == 1:
        return s[1], s[2]
    if len(s) == 2 and s[0] == 1:
        return 1, s[1]
    raise CodegenError(f"{what}: shape {s} not supported")


def _axis(in_shape, k_hw, stride_hw, dil_hw) -> tuple[int, int, int]:
    """(kernel, stride, dilation) along the non-unit spatial axis of a (1, H, W, C) tensor."""
    h = int(in_shape[1]) if len(in_shape) == 4 else 1
    use_h = h > 1
    k = k_hw[0] if use_h else k_hw[1]
    other = k_hw[1] if use_h else k_hw[0]
    if other != 1:
        raise CodegenError(f"kernel {tuple(k_hw)} is 2-D on a 1-D tensor {list(in_shape)}")
    return k, (stride_hw[0] if use_h else stride_hw[1]), (dil_hw[0] if use_h else dil_hw[1])


def _padding(padding: int, in_len: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """(out_len, pad_before) for TFLite SAME (0) / VALID (1) padding."""
    eff = (k - 1) * dil + 1
    if padding == 0:
        out = (in_len + stride - 1) // stride
        total = max(0, (out - 1) * stride + eff - in_len)
        return out, total // 2
    return (in_len - eff + stride) // stride, 0


class _Reader:
    def __init__(self, model):
        self.model = model
        self.sg = model.subgraphs[0]
        self.acts = tf.act_names()
        self.tensors: dict[int, Tensor] = {}

    def where(self, i: int, op) -> str:
        return f"{tf.opcode_name(self.model, op)} (op {i})"

    def act(self, i: int, what: str) -> Tensor:
        """An int8 per-tensor-quantised activation tensor."""
        t = self.sg.tensors[i]
        typ = tf.tensor_type(t)
        if typ != "INT8":
            raise CodegenError(f"{what}: tensor {tf.tensor_name(t)!r} is {typ}; generated inference runs int8 only")
        q = tf.quant_of(t)
        if q is None:
            raise CodegenError(f"{what}: tensor {tf.tensor_name(t)!r} has no quantisation")
        if i not in self.tensors:
            self.tensors[i] = Tensor(i, tf.tensor_name(t), tuple(int(v) for v in t.shape),
                                     f32(q[0][0]), int(q[1][0]))
        return self.tensors[i]

    def const(self, i: int, what: str, dtype: str) -> np.ndarray:
        arr = tf.buffer_array(self.model, i)
        t = self.sg.tensors[i]
        if arr is None:
            raise CodegenError(f"{what}: input {tf.tensor_name(t)!r} must be a constant")
        if tf.tensor_type(t) != dtype:
            raise CodegenError(f"{what}: constant {tf.tensor_name(t)!r} is {tf.tensor_type(t)}, expected {dtype}")
        return arr

    def fused_act(self, opts, out: Tensor, what: str) -> tuple[int, int]:
        name = self.acts.get(int(getattr(opts, "fusedActivationFunction", 0) or 0), "?")
        try:
            return activation_range(name, out.scale, out.zero_point)
        except ValueError as e:
            raise CodegenError(f"{what}: {e}") from None


def _conv(r: _Reader, i: int, op, depthwise: bool) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    w = r.const(int(op.inputs[1]), what, "INT8")
    bias = (r.const(int(op.inputs[2]), what, "INT32") if len(op.inputs) > 2 and int(op.inputs[2]) >= 0
            else None)
    wq = tf.quant_of(r.sg.tensors[int(op.inputs[1])])
    o = op.builtinOptions
    in_len, in_ch = _geometry(x.shape, what)
    out_len, out_ch = _geometry(y.shape, what)
    k, stride, dil = _axis(x.shape, (w.shape[1], w.shape[2]), (o.strideH, o.strideW),
                           (o.dilationHFactor, o.dilationWFactor))
    n_scales = len(wq[0]) if wq is not None else 0
    if wq is None or (n_scales != out_ch and out_ch != 1):
        raise CodegenError(f"{what}: per-tensor-quantised weights ({n_scales} scale(s) for {out_ch} "
                           f"channels); generated inference needs per-channel weights")
    if np.any(wq[1] != 0):
        raise CodegenError(f"{what}: weight zero points must be 0")
    exp_len, pad = _padding(int(o.padding), in_len, k, stride, dil)
    if exp_len != out_len:
        raise CodegenError(f"{what}: output length {out_len} does not match the padding rule ({exp_len})")
    if depthwise:
        dm = int(o.depthMultiplier) or 1
        if out_ch != in_ch * dm:
            raise CodegenError(f"{what}: depth multiplier {dm} does not give {out_ch} channels")
        wk = np.asarray(w, np.int32).reshape(k, out_ch)                 # [K][OC]
    else:
        if w.shape[3] != in_ch:
            raise CodegenError(f"{what}: grouped convolution ({w.shape[3]} of {in_ch} input channels)")
        dm = 1
        wk = np.asarray(w, np.int32).reshape(out_ch, k, in_ch)          # [OC][K][IC]
    b = np.zeros(out_ch, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    scales = np.broadcast_to(np.asarray(wq[0], np.float32), (out_ch,))
    mult, shift = conv_multipliers(x.scale, scales, y.scale)
    lo, hi = r.fused_act(o, y, what)
    return Layer("dwconv" if depthwise else "conv", i, [x.index], y.index,
                 dict(in_len=in_len, in_ch=in_ch, out_len=out_len, out_ch=out_ch, k=k, stride=stride,
                      dil=dil, pad=pad, depth_mult=dm, w=wk, bias=b, mult=mult, shift=shift,
                      in_zp=x.zero_point, out_zp=y.zero_point, act_min=lo, act_max=hi))


def _pool(r: _Reader, i: int, op, kind: str) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    o = op.builtinOptions
    in_len, ch = _geometry(x.shape, what)
    out_len, och = _geometry(y.shape, what)
    k, stride, _ = _axis(x.shape, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), (1, 1))
    exp_len, pad = _padding(int(o.padding), in_len, k, stride, 1)
    if exp_len != out_len or och != ch:
        raise CodegenError(f"{what}: output shape {list(y.shape)} does not match the pooling rule")
    if x.scale != y.scale or x.zero_point != y.zero_point:
        raise CodegenError(f"{what}: int8 pooling needs equal input and output quantisation")
    lo, hi = r.fused_act(o, y, what)
    return Layer(kind, i, [x.index], y.index,
                 dict(in_len=in_len, ch=ch, out_len=out_len, k=k, stride=stride, pad=pad,
                      act_min=lo, act_max=hi))


def _fc(r: _Reader, i: int, op) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    w = np.asarray(r.const(int(op.inputs[1]), what, "INT8"), np.int32)
    bias = (r.const(int(op.inputs[2]), what, "INT32") if len(op.inputs) > 2 and int(op.inputs[2]) >= 0
            else None)
    wq = tf.quant_of(r.sg.tensors[int(op.inputs[1])])
    n_out, n_in = int(w.shape[0]), int(w.shape[1])
    if x.size != n_in or y.size != n_out:
        raise CodegenError(f"{what}: batch > 1 or shapes {list(x.shape)} x {list(w.shape)} -> {list(y.shape)}")
    if wq is None or len(wq[0]) not in (1, n_out):
        raise CodegenError(f"{what}: weights need per-tensor or per-channel int8 quantisation")
    w_zp = int(wq[1][0])
    if np.any(wq[1] != w_zp):
        raise CodegenError(f"{what}: per-channel weight zero points differ")
    # TFLite: input_product_scale = double(float(in * w)); per-channel the same per row.
    scales = np.broadcast_to(np.asarray(wq[0], np.float32), (n_out,))
    mult, shift = [], []
    for s in scales:
        m, sh = quantize_multiplier(float(np.float32(np.float32(x.scale) * s)) / y.scale)
        mult.append(m)
        shift.append(sh)
    b = np.zeros(n_out, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    lo, hi = r.fused_act(op.builtinOptions, y, what)
    return Layer("fc", i, [x.index], y.index,
                 dict(n_in=n_in, n_out=n_out, w=w, w_zp=w_zp, bias=b, mult=mult, shift=shift,
                      in_zp=x.zero_point, out_zp=y.zero_point, act_min=lo, act_max=hi))


def _add(r: _Reader, i: int, op) -> Layer:
    what = r.where(i, op)
    a, b, y = (r.act(int(op.inputs[0]), what), r.act(int(op.inputs[1]), what),
               r.act(int(op.outputs[0]), what))
    if a.size != y.size or b.size != y.size:
        raise CodegenError(f"{what}: broadcasting ADD ({list(a.shape)} + {list(b.shape)}) not supported")
    left_shift = 20
    twice_max = 2.0 * max(a.scale, b.scale)
    m1, s1 = quantize_multiplier(a.scale / twice_max)
    m2, s2 = quantize_multiplier(b.scale / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * y.scale))
    lo, hi = r.fused_act(op.builtinOptions, y, what)
    return Layer("add", i, [a.index, b.index], y.index,
                 dict(n=y.size, left_shift=left_shift, a_zp=a.zero_point, b_zp=b.zero_point,
                      out_zp=y.zero_point, a_mult=m1, a_shift=s1, b_mult=m2, b_shift=s2,
                      out_mult=mo, out_shift=so, act_min=lo, act_max=hi))


def _pad(r: _Reader, i: int, op) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    pads = np.asarray(r.const(int(op.inputs[1]), what, "INT32")).reshape(-1, 2)
    if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
        raise CodegenError(f"{what}: PADV2 constant values not supported")
    if x.scale != y.scale or x.zero_point != y.zero_point:
        raise CodegenError(f"{what}: input and output quantisation differ")
    in_len, ch = _geometry(x.shape, what)
    out_len, och = _geometry(y.shape, what)
    spatial = [int(a) + int(b) for a, b in pads[1:-1]] if len(pads) >= 3 else [0]
    nz = [d for d, (a, b) in enumerate(pads) if a or b]
    if och != ch or any(d in (0, len(pads) - 1) for d in nz) or sum(1 for s in spatial if s) > 1:
        raise CodegenError(f"{what}: only padding along the one spatial axis is supported ({pads.tolist()})")
    before = int(sum(int(a) for a, _ in pads[1:-1]))
    return Layer("pad", i, [x.index], y.index,
                 dict(in_len=in_len, ch=ch, out_len=out_len, before=before, value=y.zero_point))


def _alias(r: _Reader, i: int, op) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    if x.size != y.size or x.scale != y.scale or x.zero_point != y.zero_point:
        raise CodegenError(f"{what}: reshape changes size or quantisation")
    return Layer("reshape", i, [x.index], y.index, {})


def _logistic(r: _Reader, i: int, op) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    if y.zero_point != -128 or y.scale != f32(1.0 / 256):
        raise CodegenError(f"{what}: int8 LOGISTIC output must have scale 1/256 and zero point -128")
    int_bits = 4
    import math
    q, left_shift = math.frexp(x.scale * float(1 << (31 - int_bits)))
    from .quant import round_half_away
    mult = int(round_half_away(q * (1 << 31)))
    radius = int(math.floor(((1 << int_bits) - 1) * (1 << (31 - int_bits)) / (1 << left_shift)))
    return Layer("logistic", i, [x.index], y.index,
                 dict(n=x.size, in_zp=x.zero_point, mult=mult, left_shift=left_shift, radius=radius))


def _softmax(r: _Reader, i: int, op) -> Layer:
    what = r.where(i, op)
    x, y = r.act(int(op.inputs[0]), what), r.act(int(op.outputs[0]), what)
    if y.zero_point != -128 or y.scale != f32(1.0 / 256):
        raise CodegenError(f"{what}: int8 SOFTMAX output must have scale 1/256 and zero point -128")
    import math
    beta = float(np.float32(op.builtinOptions.beta))
    int_bits = 5
    real = min(beta * x.scale * float(1 << (31 - int_bits)), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise CodegenError(f"{what}: input scale too small for int8 SOFTMAX")
    radius = int(math.floor(((1 << int_bits) - 1) * (1 << (31 - int_bits)) / (1 << left_shift)))
    depth = int(x.shape[-1])
    return Layer("softmax", i, [x.index], y.index,
                 dict(rows=x.size // depth, depth=depth, mult=mult, left_shift=left_shift,
                      diff_min=-radius))


_LOWER = {"CONV_2D": lambda r, i, op: _conv(r, i, op, False),
          "DEPTHWISE_CONV_2D": lambda r, i, op: _conv(r, i, op, True),
          "FULLY_CONNECTED": _fc, "ADD": _add, "PAD": _pad,
          "MAX_POOL_2D": lambda r, i, op: _pool(r, i, op, "maxpool"),
          "AVERAGE_POOL_2D": lambda r, i, op: _pool(r, i, op, "avgpool"),
          "RESHAPE": _alias, "SQUEEZE": _alias, "EXPAND_DIMS": _alias,
          "LOGISTIC": _logistic, "SOFTMAX": _softmax}


def _bind(sidecar: dict, key: str, sg_ids: list[int], io: dict) -> dict[str, int]:
    """Sidecar port name -> tensor index: by the sidecar's tensor index, else by signature name."""
    ports = _sidecar_ports(sidecar, key)
    by_sig = {e["signature_name"]: e["index"] for e in io[key] if e.get("signature_name")}
    out = {}
    for p in ports:
        name = p.get("name")
        idx = p.get("index")
        if idx is None or int(idx) not in sg_ids:
            idx = by_sig.get(name, idx if len(sg_ids) == 1 and len(ports) == 1 else None)
        if idx is None or int(idx) not in sg_ids:
            raise CodegenError(f"sidecar {key[:-1]} {name!r} (tensor {p.get('index')}) is not a model {key[:-1]}")
        out[name] = int(idx)
    if not out:
        raise CodegenError(f"sidecar declares no {key}")
    return out


def lower(model_bytes: bytes, sidecar: dict) -> Lowered:
    """Read and check the model; one Layer per TFLite op (before fusion)."""
    try:
        model = tf.load_model(model_bytes)
    except Exception as e:  # noqa: BLE001  (flatbuffer errors have no common base)
        raise CodegenError(f"not a readable .tflite flatbuffer ({type(e).__name__})") from None
    if len(model.subgraphs) != 1:
        raise CodegenError(f"{len(model.subgraphs)} subgraphs; generated inference needs exactly one")
    r = _Reader(model)
    layers, ops = [], []
    for i, op in enumerate(r.sg.operators):
        name = tf.opcode_name(model, op)
        ops.append(name)
        if name not in _LOWER:
            raise CodegenError(f"{name} (op {i}) is not supported by the generated kernels "
                               f"(supported: {', '.join(SUPPORTED_OPS)})")
        layers.append(_LOWER[name](r, i, op))
    io = tf.io_binding(model)
    ins = _bind(sidecar, "inputs", [int(v) for v in r.sg.inputs], io)
    outs = _bind(sidecar, "outputs", [int(v) for v in r.sg.outputs], io)
    for n, t in {**ins, **outs}.items():
        r.act(t, f"model port {n!r}")
    return Lowered(r.tensors, layers, ins, outs, ops)
