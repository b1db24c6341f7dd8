"""Watch-sized student encoders with task heads, built only from int8-microcontroller ops.

    from training.models import student  # registers the student-* models
    entry = build_model("student-s")
    out = entry.model(torch.zeros(8, 1, 1250))     # StudentOutput(embedding, hr, rr, ...)
    assert student.unsupported_op_check(entry.model) == []

The student is what ships (brevitas QAT -> ONNX -> onnx2tf full-int8 TFLite -> TFLite Micro,
Ethos-U, Edge TPU), so the architecture is chosen for those kernels rather than converted to them:

* Every convolution is either stride 1 with an odd kernel and symmetric `padding=k//2` (onnx2tf
  maps that to TF 'SAME': no PAD op) or unpadded (TF 'VALID'). Downsampling is a max/avg pool with
  kernel == stride and no padding, on lengths it divides exactly (1250 = 2 * 5^4), so every shape
  is static and no PAD or ceil-mode quirk ever reaches the graph. (A strided conv with symmetric
  padding does NOT match TF SAME and would make onnx2tf insert a PAD op.)
* Convolutions are plain (groups 1) or depthwise (groups == channels, multiplier 1); pointwise
  1x1 convs carry the channel mixing. Grouped convs (TFLM: unsupported) are not used.
  Export the 2-D twin (`to_conv2d`, height-1 Conv2d on (B, C, 1, L), same weights and outputs):
  onnx2tf turns a depthwise *Conv1d* into a grouped CONV_2D, the 2-D twin into DEPTHWISE_CONV_2D.
* Conv -> BatchNorm -> ReLU (post-activation, so every BN folds into the conv before it);
  residual adds only between equal shapes; no SE, Swish, GELU, LayerNorm, softmax, mean.
* Global average pooling is an AvgPool1d over the static final length (TFLM's MEAN is slow).
* Heads are Linear layers on the embedding, one per output so each output tensor gets its own
  int8 scale (a bpm value and a logit must not share one). Regression heads predict standardised
  targets and de-normalise with fixed buffers (`label_mean`, `label_std`): the exported graph
  outputs bpm / breaths/min / mmHg directly.

Shapes: x (B, 1, 1250) -> stem (B, stem_width, 1250) -> stage i: pool(pools[i]) then depths[i]
depthwise-separable blocks at widths[i] -> [neck 1x1 conv to embed_dim] -> AvgPool over the final
length -> embedding (B, D) -> heads (B,) each.

Presets (params incl. heads and BN; MACs per 1250-sample window by training.models.flops;
`python -m benchmarks.bench_students` prints the table with the teachers):

    student-xs       9,406 params   0.36 M MACs   72-d
    student-s       37,422 params   1.02 M MACs  128-d   (1/107 of anyppg-net1d's 108.6 M)
    student-m      156,054 params   3.21 M MACs  256-d
    student-tiny       542 params   0.04 M MACs   16-d   (unit tests)

Float student-s -> onnx2tf (2-D twin) gives only CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD,
AVERAGE_POOL_2D, FULLY_CONNECTED and RESHAPE.
"""
from __future__ import annotations

import copy
import dataclasses
import operator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge_runtime.spec import SPECS, SignalSpec, get_spec

from .registry import ModelEntry, register_model

# Output heads, in StudentOutput order (after the embedding). Regression heads are in label
# units; binary heads output logits.
HEAD_NAMES = ("hr", "rr", "af", "quality", "sbp", "dbp")
REGRESSION_HEADS = ("hr", "rr", "sbp", "dbp")
BINARY_HEADS = ("af", "quality")
HEAD_UNITS = {"hr": "bpm", "rr": "breaths/min", "sbp": "mmHg", "dbp": "mmHg", "af": "logit",
              "quality": "logit"}
# De-normalisation before any training data has been seen (typical adult values). Distillation
# overwrites these with the mean/std of its training labels (`StudentNet.set_label_norm`).
DEFAULT_LABEL_NORM = {"hr": (75.0, 15.0), "rr": (16.0, 4.0), "sbp": (120.0, 15.0),
                      "dbp": (75.0, 10.0), "af": (0.0, 1.0), "quality": (0.0, 1.0)}


class StudentOutput(NamedTuple):
    """What a student returns: a plain tuple for tracing / ONNX (output order = field order),
    fields by name for Python.

    embedding:     (B, D)  the feature vector probes and distillation use
    hr:            (B,)    heart rate, bpm
    rr:            (B,)    respiratory rate, breaths/min
    af_logit:      (B,)    atrial fibrillation logit (sigmoid -> probability)
    quality_logit: (B,)    signal-quality logit (sigmoid -> P(usable))
    sbp, dbp:      (B,)    systolic / diastolic blood pressure, mmHg
    """

    embedding: Tensor
    hr: Tensor
    rr: Tensor
    af_logit: Tensor
    quality_logit: Tensor
    sbp: Tensor
    dbp: Tensor


# Output field of each head.
HEAD_FIELDS = {"hr": "hr", "rr": "rr", "af": "af_logit", "quality": "quality_logit",
               "sbp": "sbp", "dbp": "dbp"}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentConfig:
    """Architecture of a student. All tuples have one entry per stage.

    stem_width/stem_kernel: the one full-resolution conv (1 -> stem_width, odd kernel).
    pools[i]:   pool factor (kernel = stride, no padding) applied at the start of stage i; 1 =
                none. The product must divide input_len exactly (1250 = 2 * 5 * 5 * 5 * 5).
    widths[i], depths[i], kernels[i]: output width, number of depthwise-separable blocks and odd
                depthwise kernel of stage i.
    embed_dim:  > 0: a final pointwise conv (+BN+ReLU) to this width before the global pool;
                0: the embedding is the pooled last stage (D = widths[-1]).
    pool_type:  'max' or 'avg' for the downsampling pools (the global pool is always avg).
    act:        'relu' or 'relu6'.
    head_hidden: > 0: a shared Linear(D, head_hidden) + ReLU before the per-head Linear layers.
    """

    in_channels: int = 1
    input_len: int = 1250
    stem_width: int = 16
    stem_kernel: int = 7
    pools: tuple[int, ...] = (2, 5, 5, 5)
    widths: tuple[int, ...] = (24, 32, 64, 128)
    depths: tuple[int, ...] = (1, 2, 2, 2)
    kernels: tuple[int, ...] = (7, 7, 5, 5)
    embed_dim: int = 0
    pool_type: str = "max"
    act: str = "relu"
    head_hidden: int = 0

    def __post_init__(self):
        for f in ("pools", "widths", "depths", "kernels"):
            object.__setattr__(self, f, tuple(int(v) for v in getattr(self, f)))
        n = len(self.widths)
        if n == 0 or not (len(self.pools) == len(self.depths) == len(self.kernels) == n):
            raise ValueError(f"StudentConfig: pools {list(self.pools)}, widths {list(self.widths)}, "
                             f"depths {list(self.depths)}, kernels {list(self.kernels)} must be "
                             "non-empty and of equal length (one entry per stage)")
        if self.in_channels < 1 or self.stem_width < 1 or min(self.widths) < 1:
            raise ValueError("StudentConfig: in_channels, stem_width and widths must be >= 1")
        if min(self.depths) < 1:
            raise ValueError(f"StudentConfig: every stage needs >= 1 block, got {list(self.depths)}")
        for k in (self.stem_kernel,) + self.kernels:
            if k < 1 or k % 2 == 0:
                raise ValueError(f"StudentConfig: kernels must be odd (symmetric SAME padding "
                                 f"without a PAD op), got {k}")
        length = self.input_len
        for i, p in enumerate(self.pools):
            if p < 1 or length % p:
                raise ValueError(f"StudentConfig: stage {i} pool {p} does not divide the length "
                                 f"{length} exactly (static shapes, no padding); input_len "
                                 f"{self.input_len}, pools {list(self.pools)}")
            length //= p
        if self.pool_type not in ("max", "avg"):
            raise ValueError(f"StudentConfig: pool_type must be 'max' or 'avg', got {self.pool_type!r}")
        if self.act not in ("relu", "relu6"):
            raise ValueError(f"StudentConfig: act must be 'relu' or 'relu6', got {self.act!r}")
        if self.embed_dim < 0 or self.head_hidden < 0:
            raise ValueError("StudentConfig: embed_dim and head_hidden must be >= 0")

    @property
    def final_len(self) -> int:
        """Length of the last feature map (the global AvgPool's kernel)."""
        length = self.input_len
        for p in self.pools:
            length //= p
        return length

    @property
    def out_dim(self) -> int:
        """D, the embedding width."""
        return self.embed_dim or self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for f in ("pools", "widths", "depths", "kernels"):
            d[f] = list(d[f])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"StudentConfig: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


# Presets. 1250 -> 625 -> 125 -> 25 -> 5 samples; the late, short stages hold most parameters
# for few MACs, the early, long ones are narrow.
STUDENT_PRESETS: dict[str, StudentConfig] = {
    # 9,406 params, ~0.36 M MACs, 72-d
    "student-xs": StudentConfig(stem_width=8, stem_kernel=7, pools=(2, 5, 5, 5),
                                widths=(16, 24, 48, 72), depths=(1, 1, 2, 1), kernels=(7, 7, 5, 5)),
    # 37,422 params, ~1.02 M MACs (1/107 of anyppg-net1d's 108.6 M), 128-d
    "student-s": StudentConfig(),
    # 156,054 params, ~3.2 M MACs, 256-d
    "student-m": StudentConfig(stem_width=24, stem_kernel=7, pools=(2, 5, 5, 5),
                               widths=(32, 64, 128, 256), depths=(1, 2, 3, 2), kernels=(7, 7, 5, 5)),
    # 542 params, ~45 k MACs, 16-d: unit tests
    "student-tiny": StudentConfig(stem_width=4, stem_kernel=5, pools=(5, 5, 5),
                                  widths=(8, 8, 16), depths=(1, 1, 1), kernels=(5, 5, 3)),
}


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

def _act(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.ReLU6()


class ConvBNAct(nn.Sequential):
    """Conv1d (stride 1, 'same' by symmetric padding k//2) -> BatchNorm1d -> ReLU.
    (B, cin, L) -> (B, cout, L). Children named conv / bn / act (fold-friendly)."""

    def __init__(self, cin: int, cout: int, kernel: int, act: str, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.act = _act(act)


class DSBlock(nn.Module):
    """Depthwise-separable block (MobileNet-style), (B, cin, L) -> (B, cout, L):

        dw (k, groups=cin) -> BN -> ReLU -> pw (1x1, cin -> cout) -> BN [+ x if cin == cout] -> ReLU

    Every activation is its own module, so a quantiser can give each its own scale.
    """

    def __init__(self, cin: int, cout: int, kernel: int, act: str):
        super().__init__()
        self.dw = ConvBNAct(cin, cin, kernel, act, groups=cin)
        self.pw = nn.Conv1d(cin, cout, 1, bias=False)
        self.pw_bn = nn.BatchNorm1d(cout)
        self.residual = cin == cout
        self.act = _act(act)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pw_bn(self.pw(self.dw(x)))
        if self.residual:
            y = y + x
        return self.act(y)


class Stage(nn.Sequential):
    """Optional pool (kernel = stride = factor, no padding) then `depth` DSBlocks."""

    def __init__(self, cin: int, cout: int, depth: int, kernel: int, pool: int, pool_type: str,
                 act: str):
        super().__init__()
        if pool > 1:
            self.pool = (nn.MaxPool1d(pool, pool) if pool_type == "max" else nn.AvgPool1d(pool, pool))
        for j in range(depth):
            self.add_module(f"block{j}", DSBlock(cin if j == 0 else cout, cout, kernel, act))


class StudentNet(nn.Module):
    """The student: encoder + task heads. forward(x (B, C, input_len)) -> StudentOutput."""

    def __init__(self, config: StudentConfig | None = None, **kwargs: Any):
        super().__init__()
        config = config or StudentConfig()
        if kwargs:
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        c = config
        self.stem = ConvBNAct(c.in_channels, c.stem_width, c.stem_kernel, c.act)
        stages, prev = [], c.stem_width
        for i in range(len(c.widths)):
            stages.append(Stage(prev, c.widths[i], c.depths[i], c.kernels[i], c.pools[i],
                                c.pool_type, c.act))
            prev = c.widths[i]
        self.stages = nn.Sequential(*stages)
        self.neck = ConvBNAct(prev, c.embed_dim, 1, c.act) if c.embed_dim else nn.Identity()
        # Global average pool as AvgPool1d over the static final length: TFLite AVERAGE_POOL_2D
        # (fast on every int8 backend), not MEAN.
        self.global_pool = nn.AvgPool1d(c.final_len)
        self.flatten = nn.Flatten(1)
        d = c.out_dim
        if c.head_hidden:
            self.head_hidden = nn.Sequential(nn.Linear(d, c.head_hidden), _act(c.act))
            hd = c.head_hidden
        else:
            self.head_hidden = nn.Identity()
            hd = d
        self.heads = nn.ModuleDict({h: nn.Linear(hd, 1) for h in HEAD_NAMES})
        mean = torch.tensor([DEFAULT_LABEL_NORM[h][0] for h in HEAD_NAMES])
        std = torch.tensor([DEFAULT_LABEL_NORM[h][1] for h in HEAD_NAMES])
        # Fixed de-normalisation (buffers: saved, exported, never trained). Order: HEAD_NAMES.
        self.register_buffer("label_mean", mean)
        self.register_buffer("label_std", std)

    @property
    def embed_dim(self) -> int:
        return self.config.out_dim

    def set_label_norm(self, norm: dict[str, tuple[float, float]]) -> None:
        """Set the de-normalisation of regression heads: {head: (mean, std)} in label units.
        Binary heads stay (0, 1): they output logits."""
        for h, (m, s) in norm.items():
            if h not in HEAD_NAMES:
                raise ValueError(f"unknown head {h!r}; heads: {HEAD_NAMES}")
            if h in BINARY_HEADS:
                continue
            if not s > 0:
                raise ValueError(f"head {h}: std must be > 0, got {s}")
            i = HEAD_NAMES.index(h)
            self.label_mean[i] = float(m)
            self.label_std[i] = float(s)

    def label_norm(self) -> dict[str, tuple[float, float]]:
        return {h: (float(self.label_mean[i]), float(self.label_std[i])) for i, h in enumerate(HEAD_NAMES)}

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, L) -> embedding (B, D)."""
        x = self.stages(self.stem(x))
        return self.flatten(self.global_pool(self.neck(x)))

    def head_z(self, embedding: Tensor) -> Tensor:
        """Standardised head outputs (B, 6) in HEAD_NAMES order (logits for binary heads): what
        the training losses see, before de-normalisation."""
        h = self.head_hidden(embedding)
        return torch.cat([self.heads[name](h) for name in HEAD_NAMES], dim=1)

    def forward(self, x: Tensor) -> StudentOutput:
        e = self.encode(x)
        h = self.head_hidden(e)
        outs = []
        for i, name in enumerate(HEAD_NAMES):
            z = self.heads[name](h).squeeze(1)          # (B, 1) -> (B,)
            outs.append(z * self.label_std[i] + self.label_mean[i])
        return StudentOutput(e, *outs)


# --------------------------------------------------------------------------------------------
# Op check: what the export stage calls to fail early, naming the layer
# --------------------------------------------------------------------------------------------

ALLOWED_LAYERS: tuple[type, ...] = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.MaxPool1d,
                                    nn.AvgPool1d, nn.Linear, nn.Identity, nn.Flatten, nn.Dropout,
                                    # the 2-D twin (`to_conv2d`): height-1 kernels only
                                    nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)
_OPSET = ("Conv1d (plain or depthwise), BatchNorm1d, ReLU/ReLU6, Max/AvgPool1d, Linear, "
          "Flatten, residual add")
_ALLOWED_FUNCTIONS = {operator.add, operator.iadd, operator.mul, operator.getitem, getattr,
                      torch.add, torch.mul, torch.flatten, torch.squeeze, torch.cat, torch.relu,
                      F.relu, F.relu6}
_ALLOWED_METHODS = {"add", "add_", "mul", "flatten", "squeeze", "unsqueeze", "view", "reshape",
                    "relu", "relu_", "contiguous"}
_WHY = {
    "mean": "MEAN is slow on TFLite Micro; use AvgPool1d(kernel=final length)",
    "size": "dynamic shapes do not export to a static int8 graph",
    "pad": "needs a PAD op; use odd kernels with padding k//2 at stride 1, or pools",
}


def _last(v) -> int:
    return int(v[-1]) if isinstance(v, (tuple, list)) else int(v)


def _height_one(name: str, m: nn.Module) -> str | None:
    """2-D layers of the 2-D twin: time runs along the width; the height must stay 1."""
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
    s = m.stride if isinstance(m.stride, tuple) else (m.stride, m.stride)
    p = m.padding if isinstance(m.padding, (tuple, str)) else (m.padding, m.padding)
    if k[0] != 1 or s[0] != 1 or (not isinstance(p, str) and p[0] != 0):
        return (f"{name}: {type(m).__name__} kernel {tuple(k)}, stride {tuple(s)}, padding {p}: a 1-D "
                "signal as 2-D needs height-1 kernels, strides 1 and no height padding")
    return None


def _check_layer(name: str, m: nn.Module) -> str | None:
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        why = _height_one(name, m)
        if why:
            return why
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
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
    if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d, nn.MaxPool2d, nn.AvgPool2d)):
        pad = _last(m.padding)
        if pad != 0 or m.ceil_mode:
            return (f"{name}: {type(m).__name__} with padding {pad}, ceil_mode {m.ceil_mode} needs a "
                    "PAD op; pool with padding 0 on lengths the stride divides")
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) and (_last(m.dilation) != 1 or m.return_indices):
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
    if isinstance(model, Student2D):
        model = model.net     # its rank adapter is not in a graph exported from a 4-D input

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
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
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


# --------------------------------------------------------------------------------------------
# 2-D twin for conversion
# --------------------------------------------------------------------------------------------

class Student2D(nn.Module):
    """The same student computed with 2-D layers on (B, C, 1, L): forward((B, C, L)) gives the
    same StudentOutput as the 1-D model it was made from (`to_conv2d`).

    Export it with a 4-D example input (B, C, 1, L) (see `forward`).

    Why: onnx2tf (1.29) recognises a depthwise convolution only on rank-4 tensors. A depthwise
    Conv1d becomes a *grouped* CONV_2D in TFLite, which TFLite Micro / CMSIS-NN, Ethos-U (Vela)
    and the Edge TPU do not run; the 2-D twin converts to DEPTHWISE_CONV_2D. Export this one.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def config(self) -> StudentConfig:
        return self.net.config

    def forward(self, x: Tensor) -> StudentOutput:
        """x: (B, C, L) or (B, C, 1, L). Export with a 4-D example input: onnx2tf's layout
        inference mis-transposes a rank-3 input followed by an Unsqueeze."""
        return self.net(x.unsqueeze(2) if x.dim() == 3 else x)


def _to_2d(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.Conv1d):
        c = nn.Conv2d(m.in_channels, m.out_channels, (1, m.kernel_size[0]), stride=(1, m.stride[0]),
                      padding=(0, m.padding[0]) if not isinstance(m.padding, str) else m.padding,
                      dilation=(1, m.dilation[0]), groups=m.groups, bias=m.bias is not None,
                      padding_mode=m.padding_mode)
        with torch.no_grad():
            c.weight.copy_(m.weight.unsqueeze(2))
            if m.bias is not None:
                c.bias.copy_(m.bias)
        c.weight.requires_grad_(m.weight.requires_grad)
        return c
    if isinstance(m, nn.BatchNorm1d):
        b = nn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                           track_running_stats=m.track_running_stats)
        b.load_state_dict(m.state_dict())
        return b
    if isinstance(m, nn.MaxPool1d):
        return nn.MaxPool2d((1, _last(m.kernel_size)), (1, _last(m.stride)))
    if isinstance(m, nn.AvgPool1d):
        return nn.AvgPool2d((1, _last(m.kernel_size)), (1, _last(m.stride)))
    return None


def to_conv2d(model: nn.Module) -> Student2D:
    """A 2-D twin of a student (weights copied, original untouched), same outputs to float
    rounding; Conv1d/BatchNorm1d/Max/AvgPool1d become height-1 2-D layers. Train mode and
    device follow the original."""
    net = copy.deepcopy(model)

    def swap(parent: nn.Module):
        for name, child in parent.named_children():
            new = _to_2d(child)
            if new is None:
                swap(child)
            else:
                setattr(parent, name, new)

    swap(net)
    try:
        p = next(model.parameters())
        net.to(p.device)
    except StopIteration:
        pass
    out = Student2D(net)
    out.train(model.training)
    return out


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

def _student_entry(name: str, overrides: dict[str, Any]) -> ModelEntry:
    overrides = dict(overrides)
    spec = SPECS["small"]
    if "spec" in overrides:
        s = overrides.pop("spec")
        spec = get_spec(s) if isinstance(s, str) else s
        if not isinstance(spec, SignalSpec):
            raise ValueError(f"{name}: spec must be a SignalSpec or a spec name, got {type(s).__name__}")
        overrides.setdefault("input_len", spec.ppg_len)
    known = {f.name for f in dataclasses.fields(StudentConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{name}: unknown override(s) {unknown}; allowed: spec, {', '.join(sorted(known))}")
    cfg = dataclasses.replace(STUDENT_PRESETS[name], **overrides)
    if cfg.input_len != spec.ppg_len:
        raise ValueError(f"{name}: input_len {cfg.input_len} differs from the spec's PPG window "
                         f"({spec.ppg_len} samples)")
    model = StudentNet(cfg)
    return ModelEntry(name=name, model=model, spec=spec, input_kind="ppg", embed_dim=cfg.out_dim,
                      config=cfg.to_dict())


def _register(name: str, doc: str):
    @register_model(name)
    def factory(**overrides: Any) -> ModelEntry:
        return _student_entry(name, overrides)
    factory.__doc__ = doc
    factory.__name__ = name.replace("-", "_")
    return factory


student_xs = _register("student-xs", "Student, ~10 k params: the smallest watch model.")
student_s = _register("student-s", "Student, <= 50 k params, ~1/100 of the teacher's MACs.")
student_m = _register("student-m", "Student, ~150 k params.")
student_tiny = _register("student-tiny", "Student of a few hundred params, for fast tests.")

STUDENT_MODELS = tuple(STUDENT_PRESETS)


def is_student(model: nn.Module) -> bool:
    return isinstance(model, StudentNet)
