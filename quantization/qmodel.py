"""The int8 view of a student: fold, check, and build the brevitas fake-quant twin.

Three steps, each on a torch.fx graph of the float student (so functional ops in `forward` —
residual adds, `torch.relu`, `.squeeze()` — are seen, not only modules):

1. `fold_for_int8(model)` -> float `GraphModule` that computes the same function as the
   student in eval mode, with every BatchNorm folded into the conv/linear before it, the heads'
   constant de-normalisation (`z * std + mean`) folded into the head Linear, and dropout /
   identity removed. This is exactly the graph that ships: ONNX is exported from it.
2. `check_int8_path(model)` -> list of problems, each naming the layer/node (empty: the int8
   path can carry every op). `build_quant_model` raises `Int8PathError` on the first one.
3. `build_quant_model(folded)` -> `QuantGraph`: the same graph with brevitas quantisers placed
   where a full-int8 TFLite file has quantisation parameters, and nowhere else:

   * weights: 8-bit per output channel, symmetric, narrow range [-127, 127] (TFLite's conv /
     depthwise / fully-connected weights), scale from the weights' max (recomputed every step);
   * biases: int32 with scale = input_scale * weight_scale[c] (TFLite's bias rule);
   * activations: one 8-bit per-tensor quantiser at every tensor TFLite quantises on its own
     (ranges from the 0.001/99.999 percentiles; the model input from min/max, since clipping a
     window's large excursion hurt the embedding far more than the coarser step):
     the input, each conv/linear output, each residual-add output. Where TFLite fuses the
     ReLU/ReLU6 into the producing op, the quantiser sits after the activation and is unsigned
     (uint8, zero point 0 == TFLite int8 zero point -128); elsewhere it is asymmetric (uint8
     with a learned integer zero point == TFLite int8 with zero point zp - 128), so e.g. a
     bpm head spends all 256 levels on its actual range;
   * ops that TFLite runs with the input's scale and zero point (max/avg pool, reshape,
     squeeze, flatten) keep the grid: an average pool re-rounds onto its input's grid, as
     AVERAGE_POOL_2D does.

   Every quantiser and layer records what it is (`QuantGraph.points`, `QuantGraph.layers`), so
   the TFLite rewrite (`quantization.qat_ranges`) can give each TFLite tensor the trained scale.
"""
from __future__ import annotations

import copy
import inspect
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.contract import HR_BIN_MAX_BPM, OUTPUTS
from training.models import int8_layers as L

# Fixed output grids. TFLite requires SOFTMAX and LOGISTIC outputs at int8 scale 1/256, zero
# point -128 (uint8 here: scale 1/256, zero point 0). A logit output ('kind' logit in the
# contract) gets a fixed symmetric grid, scale 1/16 with int8 zero point 0: [-8, 7.94], where
# the sigmoid is saturated, whatever the calibration windows held (percentile ranges of an
# untrained or one-class head clipped every negative logit: [0, 0.38] on a test export).
# The hr output (bpm) gets the fixed grid [0, HR_BIN_MAX_BPM]: calibration windows at rest
# (HR 52-131) would otherwise clip every exercise HR (int8 zero point -128: 0 bpm).
PROB_SCALE = 1.0 / 256.0
LOGIT_SCALE = 1.0 / 16.0
BPM_SCALE = HR_BIN_MAX_BPM / 254.0


class Int8PathError(ValueError):
    """The model has an op or pattern the full-int8 path cannot carry (the message names it)."""


# ---------------------------------------------------------------------------------- op classes
# The one torch-side int8 allow-list (training.models.int8_layers), by role in the folded graph.
_ACT_MODULES = L.ACT_MODULES
_PASS_MODULES = L.PASS_MODULES
_DROP_MODULES = L.DROP_MODULES
_ACT_FUNCS = L.ACT_FUNCS
_PASS_FUNCS = set(L.PASS_FUNCS)
_ADD_FUNCS = set(L.ADD_FUNCS)
_PASS_METHODS = set(L.PASS_METHODS)
_ACT_METHODS = L.ACT_METHODS


def _act_kind(gm: fx.GraphModule, n: fx.Node) -> str | None:
    """'relu' / 'relu6' if node n is an activation the int8 path fuses, else None."""
    if n.op == "call_module":
        m = gm.get_submodule(n.target)
        if isinstance(m, nn.ReLU6):
            return "relu6"
        if isinstance(m, nn.ReLU):
            return "relu"
    elif n.op == "call_function" and n.target in _ACT_FUNCS:
        return _ACT_FUNCS[n.target]
    elif n.op == "call_method" and n.target in _ACT_METHODS:
        return _ACT_METHODS[n.target]
    return None


def _is_pack(n: fx.Node) -> bool:
    """The node builds the output tuple (fx records a NamedTuple constructor as a call)."""
    return n.op == "call_function" and isinstance(n.target, type) and issubclass(n.target, tuple)


def _where(n: fx.Node) -> str:
    """A node's human name: the module path for modules, else the fx node name."""
    return str(n.target) if n.op == "call_module" else n.name


def _unused_optional_inputs(model: nn.Module) -> dict[str, None]:
    """forward's optional inputs (default None) the model does not take (`takes_<name>` false,
    e.g. `accel` on a PPG-only student): traced as the constant None, so the graph has one
    input, not a second placeholder the caller never feeds."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    return {p.name: None for p in params
            if p.default is None and not getattr(model, f"takes_{p.name}", False)}


def trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx trace of `model`, or Int8PathError saying why it cannot be traced."""
    fixed = _unused_optional_inputs(model)
    try:
        gm = fx.symbolic_trace(model, concrete_args=fixed or None)
    except Exception as e:  # noqa: BLE001 — any tracing failure is the finding
        msg = str(e).splitlines()[0] if str(e) else ""
        raise Int8PathError(f"<model>: forward cannot be traced to a static graph by torch.fx "
                            f"({type(e).__name__}: {msg})") from None
    # fx keeps a specialised input as a placeholder guarded by an assert: drop both
    for n in list(gm.graph.nodes):
        if n.op == "call_function" and getattr(n.target, "__name__", "") == "_assert_is_none":
            gm.graph.erase_node(n)
    for n in list(gm.graph.nodes):
        if n.op == "placeholder" and not n.users and str(n.target).rsplit("_", 1)[0] in fixed:
            gm.graph.erase_node(n)
    gm.recompile()
    return gm


# ---------------------------------------------------------------------------------- folding
def _is_const(n: Any, consts: dict) -> bool:
    return not isinstance(n, fx.Node) or n in consts


def _const_value(a: Any, consts: dict) -> Any:
    return consts[a] if isinstance(a, fx.Node) else a


def _fold_bn_into(layer: nn.Module, bn: nn.BatchNorm1d) -> None:
    """w' = w * g / sqrt(v + eps) per output channel; b' = (b - mu) * g / sqrt(v + eps) + beta."""
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        g = bn.weight if bn.affine else torch.ones_like(std)
        beta = bn.bias if bn.affine else torch.zeros_like(std)
        k = g / std
        w = layer.weight
        layer.weight.copy_(w * k.view(-1, *([1] * (w.dim() - 1))))
        b = layer.bias if layer.bias is not None else torch.zeros_like(std)
        new_b = (b - bn.running_mean) * k + beta
        if layer.bias is None:
            layer.bias = nn.Parameter(new_b.clone())
        else:
            layer.bias.copy_(new_b)


def _ensure_bias(layer: nn.Module) -> None:
    if layer.bias is None:
        out = layer.weight.shape[0]
        layer.bias = nn.Parameter(torch.zeros(out, dtype=layer.weight.dtype))


def fold_for_int8(model: nn.Module) -> fx.GraphModule:
    """A float GraphModule equal (in eval mode) to `model`, shaped for the int8 path.

    BatchNorm1d after a Conv1d/Linear (its only user) folds into it; a scalar constant `* c`
    and then `+ d` after a Linear/Conv (through squeeze/flatten/reshape) folds into its weight
    and bias; Dropout/Identity disappear. `model` itself is not modified. Every Conv1d/Linear
    of the result has a bias (TFLite always carries one).
    """
    model = copy.deepcopy(model).eval()
    gm = trace(model)
    g = gm.graph

    # constants: get_attr and anything computed only from constants
    consts: dict[fx.Node, Any] = {}
    for n in g.nodes:
        if n.op == "get_attr":
            obj = gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            consts[n] = obj
        elif n.op in ("call_function", "call_method") and n.args and all(
                _is_const(a, consts) for a in list(n.args) + list(n.kwargs.values())):
            args = [_const_value(a, consts) for a in n.args]
            kwargs = {k: _const_value(v, consts) for k, v in n.kwargs.items()}
            try:
                consts[n] = (n.target(*args, **kwargs) if n.op == "call_function"
                             else getattr(args[0], n.target)(*args[1:], **kwargs))
            except Exception:  # noqa: BLE001 — not foldable: left in the graph
                pass

    def layer_of(n: fx.Node):
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), (nn.Conv1d, nn.Linear)):
            return gm.get_submodule(n.target)
        return None

    for n in list(g.nodes):
        if n.op != "call_module":
            continue
        m = gm.get_submodule(n.target)
        if isinstance(m, _DROP_MODULES):
            n.replace_all_uses_with(n.args[0])
            g.erase_node(n)
        elif isinstance(m, nn.BatchNorm1d):
            src = n.args[0]
            layer = layer_of(src) if isinstance(src, fx.Node) else None
            if layer is None or len(src.users) != 1:
                raise Int8PathError(f"{n.target}: BatchNorm1d does not directly follow a Conv1d/"
                                    "Linear whose only user it is, so it cannot be folded")
            if m.training or m.running_mean is None:
                raise Int8PathError(f"{n.target}: BatchNorm1d without running statistics")
            _fold_bn_into(layer, m)
            n.replace_all_uses_with(src)
            g.erase_node(n)

    # scalar affine constants after a layer: layer -> [shape ops] -> * c -> + d
    for n in list(g.nodes):
        if n.op != "call_function" or n.target not in (operator.mul, torch.mul, *_ADD_FUNCS):
            continue
        if n not in g.nodes or len(n.args) != 2:
            continue
        a, b = n.args
        if isinstance(a, fx.Node) and a in consts and not (isinstance(b, fx.Node) and b in consts):
            a, b = b, a
        if not isinstance(a, fx.Node) or a in consts or not _is_const(b, consts):
            continue
        c = _const_value(b, consts)
        c = torch.as_tensor(c, dtype=torch.float32)
        if c.numel() != 1:
            continue
        # walk back through single-user shape ops to a layer
        src = a
        while (src.op == "call_method" and src.target in _PASS_METHODS - {"contiguous"}
               or src.op == "call_function" and src.target in (torch.squeeze, torch.flatten)) \
                and len(src.users) == 1 and isinstance(src.args[0], fx.Node):
            src = src.args[0]
        layer = layer_of(src)
        if layer is None or len(src.users) != 1 or len(a.users) != 1:
            continue
        if layer.weight.shape[0] != 1:
            continue   # only single-output layers: the scalar then applies to the one channel
        _ensure_bias(layer)
        with torch.no_grad():
            if n.target in (operator.mul, torch.mul):
                layer.weight.mul_(c)
                layer.bias.mul_(c)
            else:
                layer.bias.add_(c)
        n.replace_all_uses_with(a)
        g.erase_node(n)

    g.eliminate_dead_code()
    for n in g.nodes:
        layer = layer_of(n)
        if layer is not None:
            _ensure_bias(layer)
    gm.recompile()
    # drop submodules the graph no longer uses (folded BNs), so state dicts stay clean
    gm.delete_all_unused_submodules()
    return gm.eval()


# ---------------------------------------------------------------------------------- checking
def check_int8_path(model: nn.Module) -> list[str]:
    """Problems (each naming the layer or node) that keep `model` off the full-int8 path.

    Traces and folds the model, then walks the graph: allowed are Conv1d (plain or depthwise,
    dilation 1, zero padding), Linear, ReLU/ReLU6 (module, torch.relu, F.relu/relu6,
    .relu()), MaxPool1d / AvgPool1d (no padding, no ceil mode), flatten/squeeze/unsqueeze/
    view/reshape and residual adds of two tensors. Anything else is reported.
    """
    problems: list[str] = []
    try:
        gm = fold_for_int8(model)
    except Int8PathError as e:
        return [str(e)]
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "output", "get_attr") or _is_pack(n):
            continue
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            if isinstance(m, nn.Conv1d):
                if m.groups != 1 and not (m.groups == m.in_channels == m.out_channels):
                    problems.append(f"{n.target}: Conv1d with groups={m.groups} is neither plain nor "
                                    "depthwise (multiplier 1)")
                if m.dilation[0] != 1 or m.padding_mode != "zeros":
                    problems.append(f"{n.target}: Conv1d dilation/padding mode not on the int8 path")
            elif isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)):
                pad = m.padding if isinstance(m.padding, int) else m.padding[0]
                if pad or m.ceil_mode:
                    problems.append(f"{n.target}: {type(m).__name__} with padding/ceil_mode")
            elif not isinstance(m, tuple(k for k in L.LAYER_OPS if k not in L.FOLD_MODULES + L.DROP_MODULES)):
                problems.append(f"{n.target}: {type(m).__name__} has no int8 TFLite kernel on this "
                                "path (allowed: Conv1d, Linear, ReLU/ReLU6, Max/AvgPool1d, Flatten, "
                                "residual add)")
        elif n.op == "call_function":
            ok = (n.target in _ACT_FUNCS or n.target in _PASS_FUNCS or n.target in L.AVG_POOL_FUNCS
                  or n.target is operator.getitem
                  or (n.target in _ADD_FUNCS and all(isinstance(a, fx.Node) for a in n.args[:2])))
            if not ok:
                name = getattr(n.target, "__name__", str(n.target))
                problems.append(f"{n.name}: function {name} has no place on the int8 path")
        elif n.op == "call_method":
            if n.target not in _PASS_METHODS and n.target not in _ACT_METHODS:
                problems.append(f"{n.name}: method .{n.target}() has no place on the int8 path")
    return problems


# ---------------------------------------------------------------------------------- brevitas
def _brevitas():
    import warnings
    # brevitas notes on optional kernels and on accumulator zero points it does not need to
    # compute here (we never use the accumulator's QuantTensor): not actionable for users
    warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    warnings.filterwarnings("ignore", message="Computing zero point of output accumulator")
    warnings.filterwarnings("ignore", message="Positional args are being deprecated")
    import brevitas.nn as qnn
    from brevitas.quant import (Int8WeightPerChannelFloat, Int32Bias, ShiftedUint8ActPerTensorFloat,
                                Uint8ActPerTensorFloat)
    return qnn, Int8WeightPerChannelFloat, Int32Bias, ShiftedUint8ActPerTensorFloat, Uint8ActPerTensorFloat


def qvalue(q):
    """The float value of a quantiser's output (a plain tensor while calibration disables
    quantisation)."""
    return getattr(q, "value", q)


def _is_qt(q) -> bool:
    return hasattr(q, "scale") and hasattr(q, "zero_point") and hasattr(q, "value")


class ActQuant(nn.Module):
    """One activation quantisation point: [ReLU/ReLU6], then 8-bit per-tensor fake quant.

    Returns brevitas' IntQuantTensor (value, scale, zero point). kind 'relu'/'relu6': uint8
    with zero point 0 (TFLite int8 zero point -128); 'none': asymmetric uint8 with a learned
    integer zero point (TFLite int8 zero point zp - 128).
    """

    def __init__(self, kind: str, source: str, inputs: tuple[str, ...] = (), full_range: bool = False):
        super().__init__()
        qnn, _, _, Shifted, Uint8 = _brevitas()
        if kind not in ("relu", "relu6", "none"):
            raise ValueError(f"unknown activation kind {kind!r}")
        self.kind = kind
        self.source = source
        self.inputs = tuple(inputs)
        q = Uint8 if kind != "none" else Shifted
        if full_range:
            # min/max instead of the 0.001/99.999 percentiles: used for the model input, where
            # clipping the rare large excursion of a window costs far more than a finer step
            q = q.let(high_percentile_q=100.0, low_percentile_q=1e-12) if kind == "none" \
                else q.let(high_percentile_q=100.0)
        self.quant = qnn.QuantIdentity(act_quant=q, return_quant_tensor=True)

    def forward(self, x: Tensor):
        if self.kind == "relu":
            x = F.relu(x)
        elif self.kind == "relu6":
            x = F.hardtanh(x, 0.0, 6.0)
        return self.quant(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, source={self.source}"


class FixedQuant(nn.Module):
    """A quantisation point with a fixed uint8 grid (value = (q - zero_point) * scale), after an
    optional fixed-range function: 'softmax' (over dim 1), 'logistic', or none: 'logit' (the
    symmetric logit grid), 'bpm' (the hr grid). Returns brevitas' IntQuantTensor, with a straight-through
    rounding gradient, in every mode (a fixed grid needs no calibration)."""

    def __init__(self, kind: str, source: str, inputs: tuple[str, ...] = ()):
        super().__init__()
        grids = {"softmax": (PROB_SCALE, 0.0), "logistic": (PROB_SCALE, 0.0),
                 "logit": (LOGIT_SCALE, 128.0), "bpm": (BPM_SCALE, 0.0)}
        if kind not in grids:
            raise ValueError(f"unknown fixed-range kind {kind!r}")
        self.kind, self.source, self.inputs = kind, source, tuple(inputs)
        scale, zp = grids[kind]
        self.register_buffer("scale", torch.tensor(scale))
        self.register_buffer("zero_point", torch.tensor(zp))

    def forward(self, x: Tensor):
        from brevitas.function.ops_ste import round_ste
        from brevitas.quant_tensor import IntQuantTensor
        x = qvalue(x)
        if self.kind == "softmax":
            x = torch.softmax(x, dim=1)
        elif self.kind == "logistic":
            x = torch.sigmoid(x)
        q = torch.clamp(round_ste(x / self.scale + self.zero_point), 0.0, 255.0)
        v = (q - self.zero_point) * self.scale
        return IntQuantTensor(v, self.scale, self.zero_point, torch.tensor(8.0), False, self.training)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, source={self.source}, scale={float(self.scale):g}"


class SameGrid(nn.Module):
    """Re-round `x` onto the grid (scale, zero point, bits) of a reference IntQuantTensor, as
    TFLite's AVERAGE_POOL_2D does (its output keeps the input's quantisation)."""

    def forward(self, x: Tensor, ref):
        from brevitas.function.ops_ste import round_ste
        from brevitas.quant_tensor import IntQuantTensor
        if not _is_qt(ref):      # calibration: quantisation is off
            return x
        bits = int(ref.bit_width.item())
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ref.signed else (0, 2 ** bits - 1)
        q = torch.clamp(round_ste(x / ref.scale + ref.zero_point), lo, hi)
        v = (q - ref.zero_point) * ref.scale
        return IntQuantTensor(v, ref.scale, ref.zero_point, ref.bit_width, ref.signed, self.training)


class QLayer(nn.Module):
    """A brevitas QuantConv1d / QuantLinear fed with the grid of its input quantiser."""

    def __init__(self, float_layer: nn.Module, name: str):
        super().__init__()
        qnn, WQ, BQ, _, _ = _brevitas()
        self.name = name
        if isinstance(float_layer, nn.Conv1d):
            m = float_layer
            q = qnn.QuantConv1d(m.in_channels, m.out_channels, m.kernel_size[0], stride=m.stride[0],
                                padding=m.padding[0] if not isinstance(m.padding, str) else m.padding,
                                dilation=m.dilation[0], groups=m.groups, bias=True,
                                weight_quant=WQ, bias_quant=BQ, input_quant=None, output_quant=None,
                                return_quant_tensor=False)
            self.kind = "depthwise" if (m.groups > 1 and m.groups == m.in_channels) else "conv"
        elif isinstance(float_layer, nn.Linear):
            m = float_layer
            q = qnn.QuantLinear(m.in_features, m.out_features, bias=True, weight_quant=WQ,
                                bias_quant=BQ, input_quant=None, output_quant=None,
                                return_quant_tensor=False)
            self.kind = "linear"
        else:
            raise TypeError(type(float_layer).__name__)
        with torch.no_grad():
            q.weight.copy_(m.weight)
            q.bias.copy_(m.bias if m.bias is not None else torch.zeros_like(q.bias))
        # a fixed layer (the HR read-out: bin centres) stays fixed through QAT
        q.weight.requires_grad_(m.weight.requires_grad)
        q.bias.requires_grad_(m.bias is None or m.bias.requires_grad)
        self.layer = q

    def forward(self, x: Tensor, ref):
        from brevitas.quant_tensor import IntQuantTensor
        if not _is_qt(ref):      # calibration: quantisation is off
            return self.layer(x)
        qt = IntQuantTensor(x, ref.scale, ref.zero_point, ref.bit_width, ref.signed, self.training)
        return self.layer(qt)

    @torch.no_grad()
    def int_weight(self) -> tuple[Tensor, Tensor]:
        """(int8 weights as brevitas holds them (out, in/groups, k) or (out, in), scale (out,))."""
        qw = self.layer.quant_weight()
        return qw.int().to(torch.int8), qw.scale.detach().reshape(-1).clone()

    @torch.no_grad()
    def int_bias(self, in_scale: Tensor) -> tuple[Tensor, Tensor]:
        """(int32 bias, scale (out,) = in_scale * weight_scale) for an input of scale in_scale."""
        from brevitas.quant_tensor import IntQuantTensor
        qw = self.layer.quant_weight()
        s = torch.as_tensor(in_scale, dtype=torch.float32).reshape(())
        shape = (1, self.layer.in_features) if self.kind == "linear" else (1, self.layer.in_channels, 1)
        inp = IntQuantTensor(torch.zeros(shape), s, torch.zeros(()), torch.tensor(8.0), False, False)
        qb = self.layer.bias_quant(self.layer.bias, inp, qw)
        scale = qb.scale.detach().reshape(-1)
        # integers from brevitas' own (float32) dequantised bias, in float64: QuantTensor.int()
        # refuses values whose float32 ratio is not integral to its tolerance (huge biases)
        b = torch.round(qb.value.detach().reshape(-1).double() / scale.double())
        b = b.clamp(-(2 ** 31) + 1, 2 ** 31 - 1)
        return b.to(torch.int32), scale.clone()


@dataclass
class PointInfo:
    """What an activation quantiser quantises (for mapping onto TFLite tensors)."""
    name: str          # submodule name in the QuantGraph
    kind: str          # 'relu', 'relu6', 'none', 'softmax', 'logistic' (fixed 1/256 grid)
    role: str          # 'input', 'layer', 'add', 'act'
    source: str        # layer name for role 'layer', fx node name for 'add'/'act', 'input'
    inputs: tuple[str, ...] = ()   # quant points feeding an 'add' / standalone 'act'


@dataclass
class LayerInfo:
    name: str          # float layer path (e.g. 'stages.0.block0.dw.conv')
    module: str        # submodule name of the QLayer in the QuantGraph
    kind: str          # 'conv', 'depthwise', 'linear'
    input_point: str   # quant point whose grid feeds it


@dataclass
class GraphInfo:
    points: dict[str, PointInfo] = field(default_factory=dict)
    layers: dict[str, LayerInfo] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)   # output field -> quant point


def _safe(s: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", s)


class QuantGraph(fx.GraphModule):
    """A GraphModule with `info: GraphInfo` describing its quantisers (see module doc)."""
    info: GraphInfo


def _fixed_grid_producers(gm: fx.GraphModule) -> dict[fx.Node, str]:
    """Layer/add nodes (through shape ops) whose value is a model output of contract kind
    'logit' or a sigmoid's input -> 'logit', or the 'hr' output -> 'bpm': fixed grids."""
    found: dict[fx.Node, str] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.Sigmoid):
            pairs = [(None, n.args[0])]           # a sigmoid's input is a logit too
        elif _is_pack(n) and hasattr(n.target, "_fields"):
            pairs = zip(n.target._fields, list(n.args) + list(n.kwargs.values()))
        elif n.op == "output" and isinstance(n.args[0], tuple) and hasattr(n.args[0], "_fields"):
            pairs = zip(n.args[0]._fields, n.args[0])
        else:
            continue
        for name, a in pairs:
            grid = "bpm" if name == "hr" else "logit"
            if name not in (None, "hr") and (name not in OUTPUTS or OUTPUTS[name].kind != "logit"):
                continue
            while isinstance(a, fx.Node) and (
                    (a.op == "call_method" and a.target in _PASS_METHODS)
                    or (a.op == "call_function" and a.target in _PASS_FUNCS)):
                a = a.args[0]
            if isinstance(a, fx.Node):
                found[a] = grid
    return found


def build_quant_model(folded: fx.GraphModule) -> QuantGraph:
    """The brevitas twin of a folded float graph (see the module docstring for placement).

    Raises Int8PathError naming the node for anything the int8 path cannot carry.
    """
    src_gm = folded
    holder = nn.Module()
    info = GraphInfo()
    g = fx.Graph()
    env: dict[fx.Node, Any] = {}      # float value node in the new graph
    qref: dict[fx.Node, Any] = {}     # node producing the IntQuantTensor describing its grid
    qname: dict[fx.Node, str] = {}    # quant point name of that grid
    raw: dict[fx.Node, fx.Node] = {}  # pre-activation float output of a layer / add

    def add_module(name: str, m: nn.Module) -> str:
        name = _safe(name)
        base, i = name, 1
        while hasattr(holder, name):
            i += 1
            name = f"{base}_{i}"
        holder.add_module(name, m)
        return name

    def point(value_node: fx.Node, kind: str, role: str, source: str, inputs=()) -> tuple:
        pname = add_module(f"aq_{source}" + ("" if kind == "none" else f"_{kind}"),
                           ActQuant(kind, source, inputs, full_range=(role == "input")))
        info.points[pname] = PointInfo(pname, kind, role, source, tuple(inputs))
        q = g.call_module(pname, (value_node,))
        v = g.call_function(qvalue, (q,))
        return q, v, pname

    def need_grid(n: fx.Node, a: Any) -> None:
        if not isinstance(a, fx.Node) or a not in qref:
            raise Int8PathError(f"{_where(n)}: its input is not an int8 tensor on the path "
                                "(an unquantised float reaches it)")

    def fixed_point(value_node: fx.Node, kind: str, role: str, source: str, inputs=()) -> tuple:
        pname = add_module(f"aq_{source}_{kind}", FixedQuant(kind, source, inputs))
        # a logit / bpm grid stands where a plain ('none') quantiser would: same TFLite rule
        info.points[pname] = PointInfo(pname, "none" if kind in ("logit", "bpm") else kind, role,
                                       source, tuple(inputs))
        q = g.call_module(pname, (value_node,))
        return q, g.call_function(qvalue, (q,)), pname

    fixed_nodes = _fixed_grid_producers(src_gm)

    def finish_producer(n: fx.Node, out: fx.Node, role: str, source: str, inputs=()) -> None:
        """Quantise a layer/add output: fused with its activation when that is its only user."""
        users = list(n.users)
        raw[n] = out
        if len(users) == 1 and _act_kind(src_gm, users[0]) is not None:
            return   # the activation node creates the (fused) quant point
        if n in fixed_nodes:
            q, v, pname = fixed_point(out, fixed_nodes[n], role, source, inputs)
        else:
            q, v, pname = point(out, "none", role, source, inputs)
        env[n], qref[n], qname[n] = v, q, pname

    for n in src_gm.graph.nodes:
        if n.op == "placeholder":
            x = g.placeholder(n.name)
            q, v, pname = point(x, "none", "input", "input")
            env[n], qref[n], qname[n] = v, q, pname
            continue
        if _is_pack(n):
            vals = list(n.args) + list(n.kwargs.values())
            names = list(n.target._fields) if hasattr(n.target, "_fields") else \
                [f"output_{i}" for i in range(len(vals))]
            for nm, a in zip(names, vals):
                if not isinstance(a, fx.Node) or a not in env:
                    raise Int8PathError(f"output {nm}: not computed on the int8 path")
                info.outputs[nm] = qname.get(a, "")
            env[n] = g.create_node(n.op, n.target, fx.node.map_arg(n.args, lambda x: env[x]),
                                   fx.node.map_arg(n.kwargs, lambda x: env[x]))
            continue
        if n.op == "output":
            res = n.args[0]
            if isinstance(res, fx.Node) and _is_pack(res):
                g.output(env[res])
                continue
            flat = list(res) if isinstance(res, (tuple, list)) else [res]
            fields = getattr(type(res), "_fields", None)
            names = list(fields) if fields else [f"output_{i}" for i in range(len(flat))]
            for nm, a in zip(names, flat):
                if not isinstance(a, fx.Node) or a not in env:
                    raise Int8PathError(f"output {nm}: not computed on the int8 path")
                info.outputs[nm] = qname.get(a, "")
            g.output(fx.node.map_aggregate(res, lambda a: env[a] if isinstance(a, fx.Node) else a))
            continue
        if n.op == "get_attr":
            raise Int8PathError(f"{n.target}: a constant tensor is used on the path (only weights, "
                                "folded scalars and biases are allowed)")

        kind = _act_kind(src_gm, n)
        if kind is not None:
            a = n.args[0]
            if a in raw:
                # fused into the producer (conv/linear/add). If the producer has other users
                # too, TFLite duplicates it with the activation fused, so the float output is
                # quantised a second time here, exactly as the file will compute it.
                role = "layer" if a.op == "call_module" else "add"
                src = a.target if role == "layer" else a.name
                ins = tuple(qname[x] for x in a.args[:2] if isinstance(x, fx.Node)) \
                    if role == "add" else ()
                q, v, pname = point(raw[a], kind, role, src, ins)
            else:
                need_grid(n, a)
                q, v, pname = point(env[a], kind, "act", n.name, (qname[a],))
            env[n], qref[n], qname[n] = v, q, pname
            continue

        if n.op == "call_module":
            m = src_gm.get_submodule(n.target)
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                a = n.args[0]
                need_grid(n, a)
                mname = add_module(f"ql_{n.target}", QLayer(m, n.target))
                info.layers[mname] = LayerInfo(n.target, mname, holder.get_submodule(mname).kind,
                                               qname[a])
                out = g.call_module(mname, (env[a], qref[a]))
                finish_producer(n, out, "layer", n.target)
                continue
            if type(m) in L.FIXED_RANGE_MODULES:
                a = n.args[0]
                need_grid(n, a)
                if isinstance(m, nn.Softmax) and m.dim not in (1, -1):
                    raise Int8PathError(f"{n.target}: Softmax over dim {m.dim}; SOFTMAX runs over "
                                        "the last axis of (B, n)")
                q, v, pname = fixed_point(env[a], L.FIXED_RANGE_MODULES[type(m)], "act", n.name,
                                          (qname[a],))
                env[n], qref[n], qname[n] = v, q, pname
                continue
            if isinstance(m, _PASS_MODULES):
                a = n.args[0]
                need_grid(n, a)
                mname = add_module(n.target, copy.deepcopy(m))
                env[n] = g.call_module(mname, (env[a],))
                qref[n], qname[n] = qref[a], qname[a]
                continue
            if isinstance(m, nn.AvgPool1d):
                a = n.args[0]
                need_grid(n, a)
                mname = add_module(n.target, copy.deepcopy(m))
                pooled = g.call_module(mname, (env[a],))
                rq = g.call_module(add_module(f"grid_{n.target}", SameGrid()), (pooled, qref[a]))
                env[n] = g.call_function(qvalue, (rq,))
                qref[n], qname[n] = rq, qname[a]
                continue
            raise Int8PathError(f"{n.target}: {type(m).__name__} has no int8 TFLite kernel on this path")

        if n.op == "call_function" and n.target in _ADD_FUNCS:
            a, b = n.args[:2]
            if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
                raise Int8PathError(f"{n.name}: add of a tensor and a constant is not folded into a "
                                    "layer; the int8 path carries only residual adds")
            need_grid(n, a)
            need_grid(n, b)
            out = g.call_function(operator.add, (env[a], env[b]))
            finish_producer(n, out, "add", n.name, (qname[a], qname[b]))
            continue
        if (n.op == "call_function" and (n.target in _PASS_FUNCS or n.target is operator.getitem)) \
                or (n.op == "call_method" and n.target in _PASS_METHODS):
            a = n.args[0]
            need_grid(n, a)
            args = fx.node.map_arg(n.args, lambda x: env[x])
            kwargs = fx.node.map_arg(n.kwargs, lambda x: env[x])
            env[n] = g.create_node(n.op, n.target, args, kwargs)
            qref[n], qname[n] = qref[a], qname[a]
            continue
        if n.op == "call_function" and n.target is F.avg_pool1d:
            a = n.args[0]
            need_grid(n, a)
            args = fx.node.map_arg(n.args, lambda x: env[x])
            kwargs = fx.node.map_arg(n.kwargs, lambda x: env[x])
            pooled = g.create_node(n.op, n.target, args, kwargs)
            rq = g.call_module(add_module(f"grid_{n.name}", SameGrid()), (pooled, qref[a]))
            env[n] = g.call_function(qvalue, (rq,))
            qref[n], qname[n] = rq, qname[a]
            continue
        what = getattr(n.target, "__name__", str(n.target))
        raise Int8PathError(f"{_where(n)}: {n.op} {what} has no place on the int8 path")

    qg = QuantGraph(holder, g, class_name="QuantStudent")
    qg.info = info
    return qg


# ---------------------------------------------------------------------------------- calibration
@torch.no_grad()
def calibrate(qg: QuantGraph, batches) -> None:
    """Initialise every activation scale / zero point from statistics over `batches` (brevitas'
    calibration mode: float forward passes, percentile statistics, then frozen into params).
    Statistics are averaged over batches: pass one batch for exact global percentiles (the
    input quantiser uses min/max, so its range then covers every calibration window)."""
    from brevitas.graph.calibrate import calibration_mode
    qg.eval()
    with calibration_mode(qg):
        for x in batches:
            qg(x)
    qg.eval()


@torch.no_grad()
def point_params(qg: QuantGraph, sample: Tensor) -> dict[str, dict]:
    """Each quant point's scale and zero point, in brevitas terms and in TFLite int8 terms
    (zero point - 128 for the unsigned 8-bit quantisers used here). Eval mode, one forward."""
    was = qg.training
    qg.eval()
    got: dict[str, dict] = {}
    hooks = []
    for name in qg.info.points:
        mod = qg.get_submodule(name)

        def hook(m, inp, out, name=name):
            s = float(out.scale.detach().reshape(()))
            zp = float(out.zero_point.detach().reshape(()))
            bits = int(out.bit_width.item())
            signed = bool(out.signed)
            got[name] = {"scale": s, "zero_point": zp, "bits": bits, "signed": signed,
                         "tflite_scale": s,
                         "tflite_zero_point": int(round(zp)) - (0 if signed else 2 ** (bits - 1))}
        hooks.append(mod.register_forward_hook(hook))
    try:
        qg(sample[:1])
    finally:
        for h in hooks:
            h.remove()
        qg.train(was)
    return got


@torch.no_grad()
def layer_params(qg: QuantGraph, sample: Tensor) -> dict[str, dict]:
    """Per QLayer: int8 weights, weight scales, int32 bias and bias scales (with the input
    scale of its input quant point), keyed by the float layer name."""
    pts = point_params(qg, sample)
    out = {}
    for mname, li in qg.info.layers.items():
        ql: QLayer = qg.get_submodule(mname)
        w, ws = ql.int_weight()
        in_s = pts[li.input_point]["scale"]
        b, bs = ql.int_bias(torch.tensor(in_s))
        out[li.name] = {"module": mname, "kind": li.kind, "input_point": li.input_point,
                        "weight_int": w, "weight_scale": ws, "bias_int": b, "bias_scale": bs,
                        "input_scale": in_s}
    return out


@torch.no_grad()
def deployable_float(folded: fx.GraphModule, qg: QuantGraph, sample: Tensor) -> fx.GraphModule:
    """The folded float graph with every weight and bias replaced by brevitas' dequantised
    integers (w_int * w_scale, b_int * in_scale * w_scale): what ONNX carries to onnx2tf."""
    dep = copy.deepcopy(folded).eval()
    for name, p in layer_params(qg, sample).items():
        layer = dep.get_submodule(name)
        w = p["weight_int"].float() * p["weight_scale"].view(-1, *([1] * (layer.weight.dim() - 1)))
        layer.weight.copy_(w)
        layer.bias.copy_(p["bias_int"].double().mul(p["bias_scale"].double()).float())
    return dep


@torch.no_grad()
def quant_spec(qg: QuantGraph, sample: Tensor) -> dict[str, Any]:
    """Everything the TFLite range rewrite needs, as numpy/JSON-able data (no torch):

    points:  {name: {kind, role, source, inputs, scale, zero_point, tflite_scale,
                     tflite_zero_point, ...}}
    layers:  {float layer name: {kind, input_point, weight_int (np.int8, torch layout),
                                 weight_scale (np.float32 per out channel), bias_int (np.int32),
                                 bias_scale (np.float32), input_scale}}
    outputs: {output field: quant point name}
    """
    import dataclasses as dc
    pts = point_params(qg, sample)
    lps = layer_params(qg, sample)
    points = {}
    for name, pi in qg.info.points.items():
        d = dc.asdict(pi)
        d["inputs"] = list(d["inputs"])
        d.update(pts[name])
        points[name] = d
    layers = {}
    for lname, p in lps.items():
        layers[lname] = {"kind": p["kind"], "module": p["module"], "input_point": p["input_point"],
                         "input_scale": p["input_scale"],
                         "weight_int": p["weight_int"].cpu().numpy().astype("int8"),
                         "weight_scale": p["weight_scale"].cpu().numpy().astype("float32"),
                         "bias_int": p["bias_int"].cpu().numpy().astype("int32"),
                         "bias_scale": p["bias_scale"].cpu().numpy().astype("float32")}
    return {"points": points, "layers": layers, "outputs": dict(qg.info.outputs)}
