"""The torch side of the one int8 allow-list, and the student's layer check that reads it.

Every torch layer, function and method a student may use is listed once here with the TFLite
op it becomes, and each such op must be in `edge_runtime.int8_ops.TFLM_INT8_OPS` (checked at
import). Two checks read these lists: `unsupported_op_check` (the model as written, before
export) and `quantization.qmodel.check_int8_path` (the BN-folded graph the int8 file is made
from, where ops that fold away must be gone).
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from anyppg.stage import one_line
from edge_runtime.int8_ops import TFLM_INT8_OPS

# Modules -> TFLite op; None: folded into the op before it or removed before conversion.
# A depthwise Conv1d arrives as a grouped CONV_2D and the export rewrites it to DEPTHWISE_CONV_2D.
LAYER_OPS: dict[type, str | None] = {
    nn.Conv1d: "CONV_2D", nn.Linear: "FULLY_CONNECTED",
    nn.MaxPool1d: "MAX_POOL_2D", nn.AvgPool1d: "AVERAGE_POOL_2D",
    nn.ReLU: "RELU", nn.ReLU6: "RELU6",          # fused into the producing op where TFLite can
    nn.Flatten: "RESHAPE",
    # fixed-range outputs (int8 scale 1/256, zero point -128): HR bins -> probabilities, and a
    # confidence probability
    nn.Softmax: "SOFTMAX", nn.Sigmoid: "LOGISTIC",
    nn.BatchNorm1d: None, nn.Dropout: None, nn.Identity: None,
}
ACT_MODULES = (nn.ReLU, nn.ReLU6)
FIXED_RANGE_MODULES = {nn.Softmax: "softmax", nn.Sigmoid: "logistic"}
PASS_MODULES = (nn.MaxPool1d, nn.Flatten)       # keep their input's int8 grid
DROP_MODULES = (nn.Dropout, nn.Identity)
FOLD_MODULES = (nn.BatchNorm1d,)

# Functions and methods in a traced forward -> TFLite op (None: no op of its own).
ACT_FUNCS = {torch.relu: "relu", F.relu: "relu", F.relu6: "relu6"}
PASS_FUNCS = {torch.flatten: "RESHAPE", torch.squeeze: "RESHAPE", torch.unsqueeze: "RESHAPE",
              torch.reshape: "RESHAPE", F.max_pool1d: "MAX_POOL_2D"}
AVG_POOL_FUNCS = {F.avg_pool1d: "AVERAGE_POOL_2D"}
ADD_FUNCS = {operator.add: "ADD", operator.iadd: "ADD", torch.add: "ADD"}
# Constant scaling (the heads' de-normalisation, z * std + mean) folds into the head Linear.
FOLD_FUNCS = {operator.mul: "MUL", torch.mul: "MUL"}
CONCAT_FUNCS = {torch.cat: "CONCATENATION"}
ACCESS_FUNCS = {operator.getitem: None, getattr: None}
PASS_METHODS = {"squeeze": "RESHAPE", "unsqueeze": "RESHAPE", "view": "RESHAPE", "reshape": "RESHAPE",
                "flatten": "RESHAPE", "contiguous": None}
ACT_METHODS = {"relu": "relu", "relu_": "relu"}
ADD_METHODS = {"add": "ADD", "add_": "ADD"}
FOLD_METHODS = {"mul": "MUL"}

_ACT_OPS = {"relu": "RELU", "relu6": "RELU6"}
_ALL_OPS = [*LAYER_OPS.values(), *PASS_FUNCS.values(), *AVG_POOL_FUNCS.values(), *ADD_FUNCS.values(),
            *FOLD_FUNCS.values(), *CONCAT_FUNCS.values(), *PASS_METHODS.values(), *ADD_METHODS.values(),
            *FOLD_METHODS.values(), *(_ACT_OPS[k] for k in (*ACT_FUNCS.values(), *ACT_METHODS.values()))]
_OFF_LIST = sorted({op for op in _ALL_OPS if op is not None} - TFLM_INT8_OPS)
if _OFF_LIST:
    raise ImportError(f"int8_layers lists ops outside edge_runtime.int8_ops: {_OFF_LIST}")

ALLOWED_LAYERS: tuple[type, ...] = tuple(LAYER_OPS)
_ALLOWED_FUNCTIONS = {*ACT_FUNCS, *PASS_FUNCS, *AVG_POOL_FUNCS, *ADD_FUNCS, *FOLD_FUNCS, *CONCAT_FUNCS,
                      *ACCESS_FUNCS}
_ALLOWED_METHODS = {*PASS_METHODS, *ACT_METHODS, *ADD_METHODS, *FOLD_METHODS}
_OPSET = ("Conv1d (plain or depthwise), BatchNorm1d, ReLU/ReLU6, Max/AvgPool1d, Linear, "
          "Flatten, residual add")
_WHY = {
    "mean": "MEAN is slow on TFLite Micro; use AvgPool1d(kernel=final length)",
    "size": "dynamic shapes do not export to a static int8 graph",
    "pad": "needs a PAD op; use odd kernels with padding k//2 at stride 1, or pools",
}


def _last(v) -> int:
    return int(v[-1]) if isinstance(v, (tuple, list)) else int(v)


def _check_layer(name: str, m: nn.Module) -> str | None:
    if isinstance(m, nn.Conv1d):
        k, s, d = _last(m.kernel_size), _last(m.stride), max(m.dilation)
        kind = type(m).__name__
        if d != 1:
            return f"{name}: {kind} dilation {d} (dilated convs are not int8-MCU friendly)"
        if m.padding_mode != "zeros":
            return f"{name}: {kind} padding_mode {m.padding_mode!r} needs a PAD op"
        if m.groups != 1 and not (m.groups == m.in_channels == m.out_channels):
            return (f"{name}: {kind} with groups={m.groups} ({m.in_channels} -> {m.out_channels}) is "
                    "neither plain nor depthwise (multiplier 1); grouped convs do not run on TFLM")
        p = m.padding
        if isinstance(p, str):
            if (p == "same" and s == 1 and k % 2 == 1) or p == "valid":
                return None
            return f"{name}: {kind} padding={p!r} with kernel {k}, stride {s} needs a PAD op"
        p = _last(p)
        if p == 0 or (s == 1 and k % 2 == 1 and p == k // 2):
            return None
        return (f"{name}: {kind} kernel {k}, stride {s}, padding {p} is neither TF 'SAME' (stride 1, "
                f"odd kernel, padding k//2) nor 'VALID' (padding 0): onnx2tf would insert a PAD op")
    if isinstance(m, nn.Softmax) and m.dim not in (1, -1):
        return f"{name}: Softmax over dim {m.dim}; TFLite's SOFTMAX runs over the last axis of (B, n)"
    if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)):
        pad = _last(m.padding)
        if pad != 0 or m.ceil_mode:
            return (f"{name}: {type(m).__name__} with padding {pad}, ceil_mode {m.ceil_mode} needs a "
                    "PAD op; pool with padding 0 on lengths the stride divides")
        if isinstance(m, nn.MaxPool1d) and (_last(m.dilation) != 1 or m.return_indices):
            return f"{name}: {type(m).__name__} with dilation/return_indices is not an int8-MCU op"
    return None


def unsupported_op_check(model: nn.Module, allow: tuple[type, ...] = (), trace: bool = True) -> list[str]:
    """Problems that keep `model` off int8 TFLite / TFLite Micro / Ethos-U / Edge TPU; [] if none.

    Each entry names the layer ('stages.1.block0.act: GELU ...'). Two passes:
    * modules: every leaf module must be one of ALLOWED_LAYERS (or `allow`), with settings that
      convert without PAD ops (see `_check_layer`); containers are walked into.
    * functions (trace=True): torch.fx traces forward and every call outside a small allowlist
      (adds, flatten/squeeze/reshape, relu, indexing) is reported, e.g. F.gelu, torch.sigmoid,
      x.mean(...) or x.size(); a forward that cannot be traced (data-dependent control flow) is
      reported too. Pass trace=False for models fx cannot trace by design (e.g. brevitas
      wrappers) and rely on the module pass.
    """
    problems: list[str] = []
    allowed = ALLOWED_LAYERS + tuple(allow)

    def walk(mod: nn.Module, name: str):
        if isinstance(mod, allowed):
            why = _check_layer(name or "<model>", mod)
            if why:
                problems.append(why)
            return
        children = list(mod.named_children())
        if not children:
            problems.append(f"{name or '<model>'}: {type(mod).__name__} is not in the int8 MCU op set "
                            f"({_OPSET})")
            return
        for cname, child in children:
            walk(child, f"{name}.{cname}" if name else cname)

    walk(model, "")
    if not trace:
        return problems
    try:
        import torch.fx
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:   # noqa: BLE001 — any tracing failure is the finding
        problems.append(f"<model>: forward cannot be traced to a static graph by torch.fx "
                        f"({type(e).__name__}: {one_line(e)})")
        return problems
    for node in gm.graph.nodes:
        if node.op == "call_function":
            fn = node.target
            if fn is getattr and len(node.args) > 1 and node.args[1] in ("shape",):
                problems.append(f"{node.name}: reads .shape ({_WHY['size']})")
            elif isinstance(fn, type) and issubclass(fn, tuple):
                continue        # building the NamedTuple output: no op
            elif fn not in _ALLOWED_FUNCTIONS:
                fname = getattr(fn, "__name__", str(fn))
                why = _WHY.get(fname, f"not in the int8 MCU op set ({_OPSET})")
                problems.append(f"{node.name}: function {fname} — {why}")
        elif node.op == "call_method" and node.target not in _ALLOWED_METHODS:
            why = _WHY.get(node.target, f"not in the int8 MCU op set ({_OPSET})")
            problems.append(f"{node.name}: method .{node.target}() — {why}")
    return problems
