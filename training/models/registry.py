"""A small timm-like model registry: names -> factories -> `ModelEntry`.

    entry = build_model("anyppg-net1d")                 # the published PPG encoder, random init
    entry = build_model("net1d-small", use_do=False)    # any Net1DConfig field can be overridden
    out = entry.model(torch.zeros(8, *entry.input_shape))   # EncoderOutput(embedding, features)

A `ModelEntry` carries everything a caller needs to feed the model correctly: the `SignalSpec`
(rate, window, filters, normalisation), which signal it eats ('ppg' or 'ecg'), the embedding
width and the config as a plain dict (for run manifests and checkpoints).

Registered encoders (parameters; MACs per 10 s window):

    anyppg-net1d      PPG 125 Hz x 1250   4,044,272 params  ~108.6 M MACs  512-d   (published)
    ecgfounder-net1d  ECG 500 Hz x 5000  30,654,000 params  ~1.14 G MACs   1024-d  (published)
    net1d-small       PPG 125 Hz x 1250     208,664 params  ~6.6 M MACs    128-d
    net1d-ecg-small   ECG 125 Hz x 1250     228,664 params  ~7.7 M MACs    128-d
    net1d-tiny        PPG 125 Hz x 1250       5,324 params  ~0.5 M MACs    32-d    (unit tests)
    net1d-ecg-tiny    ECG 125 Hz x 1250       6,236 params  ~0.6 M MACs    32-d    (unit tests)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from edge_runtime.spec import SPECS, SignalSpec, get_spec

from .net1d import ANYPPG_PPG, ECGFOUNDER, Net1D, Net1DConfig

INPUT_KINDS = ("ppg", "ecg")


@dataclass
class ModelEntry:
    """A built model plus the facts needed to feed it.

    name:       registry name it was built from
    model:      the nn.Module; forward (B, C, L) -> EncoderOutput(embedding (B, D), features)
    spec:       the SignalSpec of its input windows
    input_kind: 'ppg' or 'ecg' (which of the spec's rates/lengths apply)
    embed_dim:  D
    config:     the architecture config as a plain dict (JSON/YAML-safe)
    """

    name: str
    model: nn.Module
    spec: SignalSpec
    input_kind: str
    embed_dim: int
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"ModelEntry {self.name!r}: input_kind must be one of {INPUT_KINDS}, "
                             f"got {self.input_kind!r}")

    @property
    def input_fs(self) -> float:
        """Sampling rate (Hz) of the model's input signal."""
        return self.spec.ppg_fs if self.input_kind == "ppg" else self.spec.ecg_fs

    @property
    def input_len(self) -> int:
        """Samples per input window."""
        return self.spec.ppg_len if self.input_kind == "ppg" else self.spec.ecg_len

    @property
    def input_shape(self) -> tuple[int, int]:
        """(C, L) of one window; prepend the batch size for a forward pass."""
        return (int(self.config.get("in_channels", 1)), self.input_len)


_REGISTRY: dict[str, Callable[..., ModelEntry]] = {}


def register_model(name: str):
    """Decorator: register `fn(**overrides) -> ModelEntry` under `name` (unique)."""
    def deco(fn: Callable[..., ModelEntry]) -> Callable[..., ModelEntry]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn
    return deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, **overrides: Any) -> ModelEntry:
    """Build a registered model. `overrides` are Net1DConfig fields, plus `spec` (a SignalSpec
    or a name in edge_runtime.spec.SPECS) to change the input contract."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None
    return factory(**overrides)


def _net1d_entry(name: str, base: Net1DConfig, spec: SignalSpec, input_kind: str,
                 overrides: dict[str, Any]) -> ModelEntry:
    """Shared body of the Net1D factories: apply overrides, build, wrap."""
    overrides = dict(overrides)
    if "spec" in overrides:
        s = overrides.pop("spec")
        spec = get_spec(s) if isinstance(s, str) else s
        if not isinstance(spec, SignalSpec):
            raise ValueError(f"{name}: spec must be a SignalSpec or a spec name, got {type(s).__name__}")
    known = {f.name for f in dataclasses.fields(Net1DConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{name}: unknown override(s) {unknown}; allowed: spec, {', '.join(sorted(known))}")
    cfg = dataclasses.replace(base, **overrides)
    model = Net1D(cfg)
    return ModelEntry(name=name, model=model, spec=spec, input_kind=input_kind,
                      embed_dim=cfg.embed_dim, config=cfg.to_dict())


# --- published encoders ---------------------------------------------------------------------

@register_model("anyppg-net1d")
def anyppg_net1d(**overrides: Any) -> ModelEntry:
    """The AnyPPG PPG encoder (4,044,272 params, 512-d), PPG 125 Hz x 1250 samples."""
    return _net1d_entry("anyppg-net1d", ANYPPG_PPG, SPECS["small"], "ppg", overrides)


@register_model("ecgfounder-net1d")
def ecgfounder_net1d(**overrides: Any) -> ModelEntry:
    """The ECGFounder single-lead encoder (30,654,000 params, 1024-d), ECG 500 Hz x 5000."""
    return _net1d_entry("ecgfounder-net1d", ECGFOUNDER, SPECS["full"], "ecg", overrides)


# --- small CPU variants: same topology, fewer/narrower stages --------------------------------

# ~209 k params, 128-d, ~6.6 M MACs per window: trains on a laptop CPU.
NET1D_SMALL = Net1DConfig(
    in_channels=1, base_filters=16, ratio=1.0,
    filter_list=(16, 32, 64, 96, 128), m_blocks_list=(1, 1, 2, 2, 2),
    kernel_size=3, stride=2, groups_width=16, use_bn=True, use_do=True,
)
# ECG at 125 Hz: kernel 5 (40 ms) so the stem still spans a QRS slope; no dropout, as ECGFounder.
NET1D_ECG_SMALL = dataclasses.replace(NET1D_SMALL, kernel_size=5, use_do=False)
# A few thousand params: for unit tests that must run in milliseconds.
NET1D_TINY = Net1DConfig(
    in_channels=1, base_filters=8, ratio=1.0,
    filter_list=(8, 16, 32), m_blocks_list=(1, 1, 1),
    kernel_size=3, stride=2, groups_width=8, use_bn=True, use_do=True,
)
NET1D_ECG_TINY = dataclasses.replace(NET1D_TINY, kernel_size=5, use_do=False)


@register_model("net1d-small")
def net1d_small(**overrides: Any) -> ModelEntry:
    """Small PPG Net1D (~209 k params, 128-d), PPG 125 Hz x 1250."""
    return _net1d_entry("net1d-small", NET1D_SMALL, SPECS["small"], "ppg", overrides)


@register_model("net1d-ecg-small")
def net1d_ecg_small(**overrides: Any) -> ModelEntry:
    """Small ECG Net1D (~229 k params, 128-d), ECG 125 Hz x 1250."""
    return _net1d_entry("net1d-ecg-small", NET1D_ECG_SMALL, SPECS["small"], "ecg", overrides)


@register_model("net1d-tiny")
def net1d_tiny(**overrides: Any) -> ModelEntry:
    """Tiny PPG Net1D (~5 k params, 32-d) for fast tests."""
    return _net1d_entry("net1d-tiny", NET1D_TINY, SPECS["small"], "ppg", overrides)


@register_model("net1d-ecg-tiny")
def net1d_ecg_tiny(**overrides: Any) -> ModelEntry:
    """Tiny ECG Net1D (~6.2 k params, 32-d), ECG 125 Hz x 1250, for fast tests."""
    return _net1d_entry("net1d-ecg-tiny", NET1D_ECG_TINY, SPECS["small"], "ecg", overrides)
