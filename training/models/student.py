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
  onnx2tf turns a depthwise Conv1d into a grouped CONV_2D; the export rewrites it to
  DEPTHWISE_CONV_2D (`quantization.op_audit.grouped_to_depthwise`, proved output-identical).
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

The export of student-s holds only CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, ADD,
AVERAGE_POOL_2D, FULLY_CONNECTED and RESHAPE. The layer check (`unsupported_op_check`) lives in
`training.models.int8_layers`, beside the one torch-side allow-list it reads.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from anyppg.config import from_fields
from edge_runtime.contract import OUTPUT_ORDER, UNITS, hr_bin_centres
from edge_runtime.spec import SPECS, SignalSpec, get_spec

from .int8_layers import unsupported_op_check  # noqa: F401  (the student's layer check)
from .registry import ModelEntry, register_model

# Label heads (what a store's labels train; the columns of a head label matrix). Regression heads
# are in label units; binary heads output logits. hr is a distribution over the contract's HR
# bins read out as its expectation; hr_confidence is trained from hr's own error, not a label.
HEAD_NAMES = ("hr", "rr", "af", "quality", "sbp", "dbp")
REGRESSION_HEADS = ("hr", "rr", "sbp", "dbp")
BINARY_HEADS = ("af", "quality")
# Heads a student may leave out of its outputs (StudentConfig.extra_heads picks them). rr is
# not exported by default: it does not beat the subject mean on BIDMC test patients (issue 11).
OPTIONAL_HEADS = ("rr", "sbp", "dbp")
DEFAULT_EXTRA_HEADS = ("sbp", "dbp")
# Output field of each label head; names, units and kinds are the contract's.
HEAD_FIELDS = {"hr": "hr", "rr": "rr", "af": "af_logit", "quality": "quality_logit",
               "sbp": "sbp", "dbp": "dbp"}
HEAD_UNITS = {h: UNITS[f] for h, f in HEAD_FIELDS.items()}
HR_BINS = tuple(hr_bin_centres())
# The HR read-out is a Linear with fixed weights (centre - HR_READOUT_BIAS) and bias
# HR_READOUT_BIAS: weights centred on zero so int8 weight rounding costs little (< 0.4 bpm).
HR_READOUT_BIAS = 130.0
# De-normalisation before any training data has been seen (typical adult values). Distillation
# overwrites these with the mean/std of its training labels (`StudentNet.set_label_norm`).
DEFAULT_LABEL_NORM = {"hr": (75.0, 15.0), "rr": (16.0, 4.0), "sbp": (120.0, 15.0),
                      "dbp": (75.0, 10.0), "af": (0.0, 1.0), "quality": (0.0, 1.0)}


class StudentOutput(NamedTuple):
    """Every output a student can return, in the contract's order (edge_runtime.contract
    OUTPUT_ORDER). A student returns `output_type(extra_heads)`: the same fields without the
    optional heads it does not have. A plain tuple for tracing / ONNX, fields by name for Python.

    embedding:     (B, D)  the feature vector probes and distillation use
    hr:            (B,)    heart rate, bpm (expectation over HR_BINS)
    hr_confidence: (B,)    0-1, P(|hr error| <= HR_CONFIDENT_WITHIN_BPM)
    af_logit:      (B,)    atrial fibrillation logit (sigmoid -> probability)
    quality_logit: (B,)    signal-quality logit (sigmoid -> P(usable))
    rr:            (B,)    respiratory rate, breaths/min (only if configured)
    sbp, dbp:      (B,)    systolic / diastolic blood pressure, mmHg (only if configured)
    """

    embedding: Tensor
    hr: Tensor
    hr_confidence: Tensor
    af_logit: Tensor
    quality_logit: Tensor
    rr: Tensor
    sbp: Tensor
    dbp: Tensor


assert StudentOutput._fields == OUTPUT_ORDER, "StudentOutput must follow the contract's order"
_OUTPUT_TYPES: dict[tuple[str, ...], type] = {}


def output_type(extra_heads: tuple[str, ...]) -> type:
    """The NamedTuple a student with these optional heads returns (contract order)."""
    fields = tuple(f for f in OUTPUT_ORDER if f not in OPTIONAL_HEADS or f in extra_heads)
    if fields == OUTPUT_ORDER:
        return StudentOutput
    if fields not in _OUTPUT_TYPES:
        extra = "_".join(f for f in fields if f in OPTIONAL_HEADS)
        _OUTPUT_TYPES[fields] = NamedTuple(f"StudentOutput_{extra or 'base'}",
                                           [(f, Tensor) for f in fields])
    return _OUTPUT_TYPES[fields]


@dataclass
class HeadZ:
    """What the training losses see: z (B, H) standardised outputs in HEAD_NAMES order (hr: its
    standardised expectation; binary heads: logits; heads the student lacks: 0), hr_logits
    (B, len(HR_BINS)) and hr_conf_logit (B,)."""
    z: Tensor
    hr_logits: Tensor
    hr_conf_logit: Tensor


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
    extra_heads: optional outputs (subset of OPTIONAL_HEADS) besides the contract's required ones.
    accel_channels: 0, or 3: a second input `accel` (B, 3, input_len) (edge_runtime.accel) through
                its own stem (accel_kernel, -> stem_width) added to the PPG stem's output.
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
    extra_heads: tuple[str, ...] = DEFAULT_EXTRA_HEADS
    accel_channels: int = 0
    accel_kernel: int = 1

    def __post_init__(self):
        for f in ("pools", "widths", "depths", "kernels"):
            object.__setattr__(self, f, tuple(int(v) for v in getattr(self, f)))
        object.__setattr__(self, "extra_heads", tuple(str(h) for h in self.extra_heads))
        bad = [h for h in self.extra_heads if h not in OPTIONAL_HEADS]
        if bad:
            raise ValueError(f"StudentConfig: extra_heads {bad} unknown; optional heads: "
                             f"{', '.join(OPTIONAL_HEADS)}")
        n = len(self.widths)
        if n == 0 or not (len(self.pools) == len(self.depths) == len(self.kernels) == n):
            raise ValueError(f"StudentConfig: pools {list(self.pools)}, widths {list(self.widths)}, "
                             f"depths {list(self.depths)}, kernels {list(self.kernels)} must be "
                             "non-empty and of equal length (one entry per stage)")
        if self.accel_channels not in (0, 3):
            raise ValueError(f"StudentConfig: accel_channels must be 0 or 3 (x, y, z), got {self.accel_channels}")
        if self.in_channels < 1 or self.stem_width < 1 or min(self.widths) < 1:
            raise ValueError("StudentConfig: in_channels, stem_width and widths must be >= 1")
        if min(self.depths) < 1:
            raise ValueError(f"StudentConfig: every stage needs >= 1 block, got {list(self.depths)}")
        for k in (self.stem_kernel, self.accel_kernel) + self.kernels:
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
        for f in ("pools", "widths", "depths", "kernels", "extra_heads"):
            d[f] = list(d[f])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentConfig":
        return from_fields(cls, d)


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
    # student-s with only the contract's required outputs (no rr/sbp/dbp): the wrist student
    "student-wrist-s": StudentConfig(extra_heads=()),
    # the wrist student with a 3-axis accelerometer input: + a 1x1 stem (3 -> 16), ~60 k MACs
    "student-wrist-accel-s": StudentConfig(extra_heads=(), accel_channels=3),
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
        # accel (B, 3, L) -> its own stem, added to the PPG stem's (one ADD in the int8 graph)
        self.accel_stem = (ConvBNAct(c.accel_channels, c.stem_width, c.accel_kernel, c.act)
                           if c.accel_channels else None)
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
        self.head_names = ("hr", "af", "quality") + tuple(h for h in OPTIONAL_HEADS
                                                           if h in c.extra_heads)
        heads = {h: nn.Linear(hd, len(HR_BINS) if h == "hr" else 1) for h in self.head_names}
        heads["hr_confidence"] = nn.Linear(hd, 1)
        self.heads = nn.ModuleDict(heads)
        # softmax over the bin logits -> fixed read-out Linear = the expectation in bpm
        self.hr_softmax = nn.Softmax(dim=1)
        self.hr_readout = nn.Linear(len(HR_BINS), 1)
        with torch.no_grad():
            self.hr_readout.weight.copy_(torch.tensor(HR_BINS)[None] - HR_READOUT_BIAS)
            self.hr_readout.bias.fill_(HR_READOUT_BIAS)
        self.hr_readout.requires_grad_(False)
        self.hr_conf_act = nn.Sigmoid()
        self.output_type = output_type(c.extra_heads)
        mean = torch.tensor([DEFAULT_LABEL_NORM[h][0] for h in HEAD_NAMES])
        std = torch.tensor([DEFAULT_LABEL_NORM[h][1] for h in HEAD_NAMES])
        # Fixed de-normalisation (buffers: saved, exported, never trained). Order: HEAD_NAMES.
        # hr's entry standardises the expectation for the losses; it is not part of the graph.
        self.register_buffer("label_mean", mean)
        self.register_buffer("label_std", std)

    @property
    def embed_dim(self) -> int:
        return self.config.out_dim

    @property
    def output_fields(self) -> tuple[str, ...]:
        """Output names in the order forward returns them (the contract's order)."""
        return self.output_type._fields

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

    @property
    def takes_accel(self) -> bool:
        return self.accel_stem is not None

    def encode(self, x: Tensor, accel: Tensor | None = None) -> Tensor:
        """(B, C, L) [and accel (B, 3, L)] -> embedding (B, D). A student with an accel input fed
        accel=None sees zeros: a still wrist, what the runtime feeds without an accelerometer."""
        h = self.stem(x)
        if self.accel_stem is not None:
            if accel is None:
                accel = x.new_zeros(x.shape[0], self.config.accel_channels, x.shape[-1])
            h = h + self.accel_stem(accel)
        x = self.stages(h)
        return self.flatten(self.global_pool(self.neck(x)))

    def hr_expectation(self, hr_logits: Tensor) -> Tensor:
        """(B, n_bins) bin logits -> (B,) bpm."""
        return self.hr_readout(self.hr_softmax(hr_logits)).squeeze(1)

    def head_z(self, embedding: Tensor) -> HeadZ:
        """What the training losses see (HeadZ), before de-normalisation."""
        h = self.head_hidden(embedding)
        hr_logits = self.heads["hr"](h)
        cols = []
        for i, name in enumerate(HEAD_NAMES):
            if name == "hr":
                cols.append((self.hr_expectation(hr_logits) - self.label_mean[i]) / self.label_std[i])
            elif name in self.heads:
                cols.append(self.heads[name](h).squeeze(1))
            else:
                cols.append(torch.zeros_like(hr_logits[:, 0]))
        return HeadZ(torch.stack(cols, 1), hr_logits, self.heads["hr_confidence"](h).squeeze(1))

    def forward(self, x: Tensor, accel: Tensor | None = None):
        """(B, C, L) [, accel (B, 3, L)] -> output_type: embedding, hr, hr_confidence, af_logit,
        quality_logit[, ...]."""
        e = self.encode(x, accel)
        h = self.head_hidden(e)
        hr = self.hr_readout(self.hr_softmax(self.heads["hr"](h))).squeeze(1)
        conf = self.hr_conf_act(self.heads["hr_confidence"](h)).squeeze(1)
        outs = [e, hr, conf, self.heads["af"](h).squeeze(1), self.heads["quality"](h).squeeze(1)]
        for i, name in enumerate(HEAD_NAMES):
            if name in OPTIONAL_HEADS and name in self.heads:
                z = self.heads[name](h).squeeze(1)          # (B, 1) -> (B,)
                outs.append(z * self.label_std[i] + self.label_mean[i])
        return self.output_type(*outs)


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
student_wrist_s = _register("student-wrist-s", "student-s with the contract's required outputs only.")
student_wrist_accel_s = _register("student-wrist-accel-s",
                                  "student-wrist-s with a second input, the 3-axis accelerometer.")
student_tiny = _register("student-tiny", "Student of a few hundred params, for fast tests.")

STUDENT_MODELS = tuple(STUDENT_PRESETS)


def is_student(model: nn.Module) -> bool:
    return isinstance(model, StudentNet)
