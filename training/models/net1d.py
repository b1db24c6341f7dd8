"""Net1D: the 1-D pre-activation ResNet with squeeze-excitation used by AnyPPG and ECGFounder.

One file, one architecture. The module *names* are part of the contract: a user must be able to
load the published AnyPPG PPG encoder (4,044,272 parameters) and the ECGFounder ECG encoder
(30,654,000 parameters) with `load_state_dict(..., strict=True)`, so attribute names follow the
published state dicts key for key:

    first_conv.conv, first_bn,
    stage_list.<i>.block_list.<j>.{bn1, conv1.conv, bn2, conv2.conv, bn3, conv3.conv,
                                   se_fc1, se_fc2}

Shapes used throughout: B batch, C channels, L samples (time).

    x (B, in_channels, L)
      -> stem: SAME conv (stride 2) -> BN -> Swish                  (B, base_filters, ceil(L/2))
      -> stage i: m_blocks_list[i] blocks, block 0 strided           (B, filter_list[i], L_i)
      -> mean over time                                              (B, filter_list[-1])
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from anyppg.config import from_fields


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Net1DConfig:
    """Constructor arguments of Net1D. Field names are the published ones (the `config` dicts of
    the conformance vectors use exactly these), so `Net1D(**published_config)` works.

    filter_list[i] is the output width of stage i; m_blocks_list[i] its number of blocks. The
    grouped 'k' convolution of stage i uses filter_list[i] // groups_width groups, and each block
    has a bottleneck width of int(filter_list[i] * ratio). use_bn=False skips the batch norms in
    forward but keeps the modules, so the state-dict keys do not depend on it (as published).
    """

    in_channels: int = 1
    base_filters: int = 64
    ratio: float = 1.0
    filter_list: tuple[int, ...] = (64, 160, 160, 400, 400, 512)
    m_blocks_list: tuple[int, ...] = (2, 2, 2, 3, 3, 1)
    kernel_size: int = 3
    stride: int = 2
    groups_width: int = 16
    use_bn: bool = True
    use_do: bool = True
    dropout: float = 0.5          # the published value; only used when use_do

    def __post_init__(self):
        # Accept lists (JSON/YAML, the conformance file) but store tuples: frozen and hashable.
        object.__setattr__(self, "filter_list", tuple(int(f) for f in self.filter_list))
        object.__setattr__(self, "m_blocks_list", tuple(int(m) for m in self.m_blocks_list))
        if len(self.filter_list) != len(self.m_blocks_list) or not self.filter_list:
            raise ValueError(
                f"Net1DConfig: filter_list {list(self.filter_list)} and m_blocks_list "
                f"{list(self.m_blocks_list)} must be non-empty and of equal length")
        if any(m < 1 for m in self.m_blocks_list):
            raise ValueError(f"Net1DConfig: every stage needs >= 1 block, got {list(self.m_blocks_list)}")
        if self.in_channels < 1 or self.base_filters < 1 or self.kernel_size < 1 or self.stride < 1:
            raise ValueError("Net1DConfig: in_channels, base_filters, kernel_size, stride must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"Net1DConfig: dropout must lie in [0, 1), got {self.dropout}")
        prev = self.base_filters
        for i, out in enumerate(self.filter_list):
            # The shortcut can only pad channels with zeros, never drop them.
            if out < prev:
                raise ValueError(f"Net1DConfig: stage {i} narrows {prev} -> {out} channels; "
                                 "Net1D's zero-padded shortcut needs non-decreasing widths")
            groups = out // self.groups_width
            mid = int(out * self.ratio)
            if groups < 1 or mid < 1 or mid % groups:
                raise ValueError(
                    f"Net1DConfig: stage {i}: width {out} with groups_width {self.groups_width} "
                    f"gives {groups} groups, which must divide the bottleneck width {mid} "
                    f"(= int({out} * ratio {self.ratio}))")
            if out // 2 < 1:
                raise ValueError(f"Net1DConfig: stage {i} width {out} too small for squeeze-excitation")
            prev = out

    @property
    def embed_dim(self) -> int:
        return self.filter_list[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (lists, not tuples) that round-trips through JSON/YAML."""
        d = dataclasses.asdict(self)
        d["filter_list"] = list(self.filter_list)
        d["m_blocks_list"] = list(self.m_blocks_list)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Net1DConfig":
        return from_fields(cls, d)


# Published presets (NET1D.md, "Sizes").
# AnyPPG PPG encoder: 1 x 1250 (125 Hz, 10 s), 4,044,272 parameters, 512-d embedding.
ANYPPG_PPG = Net1DConfig(
    in_channels=1, base_filters=64, ratio=1.0,
    filter_list=(64, 160, 160, 400, 400, 512), m_blocks_list=(2, 2, 2, 3, 3, 1),
    kernel_size=3, stride=2, groups_width=16, use_bn=True, use_do=True,
)
# ECGFounder single-lead encoder: 1 x 5000 (500 Hz, 10 s), 30,654,000 parameters, 1024-d.
ECGFOUNDER = Net1DConfig(
    in_channels=1, base_filters=64, ratio=1.0,
    filter_list=(64, 160, 160, 400, 400, 1024, 1024), m_blocks_list=(2, 2, 2, 3, 3, 4, 4),
    kernel_size=16, stride=2, groups_width=16, use_bn=True, use_do=False,
)
PRESETS: dict[str, Net1DConfig] = {"anyppg-ppg": ANYPPG_PPG, "ecgfounder": ECGFOUNDER}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

class EncoderOutput(NamedTuple):
    """What an encoder returns. A NamedTuple (not a dataclass) so torch.jit.trace / ONNX export
    see a plain tuple of tensors, while Python code reads fields by name.

    embedding: (B, D)     mean over time of the last stage, D = filter_list[-1]
    features:  (B, D, L') the last stage's feature map, L' = Net1D.output_length(L)
    """

    embedding: Tensor
    features: Tensor


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

def same_pad_amount(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(left, right) zero padding for TensorFlow-style SAME: output length ceil(L / stride).

    Total p = max(0, (ceil(L/s) - 1) * s + k - L); the extra sample of an odd p goes right.
    """
    out_len = (length + stride - 1) // stride
    p = max(0, (out_len - 1) * stride + kernel_size - length)
    return p // 2, p - p // 2


class Conv1dPadSame(nn.Module):
    """Conv1d with SAME padding computed from the actual input length, so any L works (odd
    lengths included). (B, C_in, L) -> (B, C_out, ceil(L / stride)). Always has a bias.

    The padding depends on L, so it cannot be a fixed `padding=` argument of nn.Conv1d; the conv
    lives in `.conv` because that is where the published checkpoints keep its weights.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                              groups=groups, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        left, right = same_pad_amount(x.shape[-1], self.kernel_size, self.stride)
        return self.conv(F.pad(x, (left, right)))


class MaxPool1dPadSame(nn.Module):
    """Max-pool with kernel = stride = `kernel_size` for the shortcut of a downsampling block.
    (B, C, L) -> (B, C, ceil(L / kernel_size)), matching the strided conv path's length.

    Pads (k-1)//2 zeros left and the rest right. Zeros, not -inf: that is what the published
    network does, and with an odd L it means the last pooled sample is max(x[-1], 0) rather than
    x[-1]. Reproducing the quirk is required to match published outputs bit-for-bit.
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        p = max(0, self.kernel_size - 1)
        x = F.pad(x, (p // 2, p - p // 2))          # mode='constant', value=0
        return F.max_pool1d(x, kernel_size=self.kernel_size)


class BasicBlock(nn.Module):
    """One pre-activation bottleneck block with squeeze-excitation.

    (B, in_channels, L) -> (B, out_channels, ceil(L / stride)) when downsample, else same L.

        bn1 -> Swish -> dropout -> conv1 (1x1, in -> mid)      [skipped pre-act in the first block]
        bn2 -> Swish -> dropout -> conv2 (k, stride, groups)   mid -> mid
        bn3 -> Swish -> dropout -> conv3 (1x1, mid -> out)
        SE: mean over L -> se_fc1 (out -> out/2) -> Swish -> se_fc2 -> sigmoid -> scale channels
        + shortcut (max-pooled if downsample, zero-padded along channels if out > in)
    """

    def __init__(self, in_channels: int, out_channels: int, ratio: float, kernel_size: int,
                 stride: int, groups: int, downsample: bool, use_bn: bool, use_do: bool,
                 dropout: float, is_first_block: bool):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.downsample = downsample
        self.stride = stride if downsample else 1
        self.use_bn = use_bn
        self.use_do = use_do
        self.is_first_block = is_first_block
        mid = int(out_channels * ratio)

        # bn1 exists even in the very first block (published checkpoints carry its keys); it is
        # simply never applied there because the stem just did BN -> Swish on the same tensor,
        # so a second pre-activation would be redundant.
        self.bn1 = nn.BatchNorm1d(in_channels)
        if is_first_block:
            # Never used, so never trained: DDP would otherwise wait forever for its gradient.
            self.bn1.requires_grad_(False)
        self.conv1 = Conv1dPadSame(in_channels, mid, 1)
        self.bn2 = nn.BatchNorm1d(mid)
        self.conv2 = Conv1dPadSame(mid, mid, kernel_size, stride=self.stride, groups=groups)
        self.bn3 = nn.BatchNorm1d(mid)
        self.conv3 = Conv1dPadSame(mid, out_channels, 1)
        self.se_fc1 = nn.Linear(out_channels, out_channels // 2)
        self.se_fc2 = nn.Linear(out_channels // 2, out_channels)

        self.act = nn.SiLU()                         # Swish: x * sigmoid(x); no parameters
        self.drop = nn.Dropout(dropout) if use_do else nn.Identity()
        self.pool = MaxPool1dPadSame(self.stride) if downsample else nn.Identity()

    def _pre_act(self, x: Tensor, bn: nn.BatchNorm1d) -> Tensor:
        if self.use_bn:
            x = bn(x)
        return self.drop(self.act(x))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = x if self.is_first_block else self._pre_act(x, self.bn1)
        out = self.conv1(out)
        out = self.conv2(self._pre_act(out, self.bn2))
        out = self.conv3(self._pre_act(out, self.bn3))

        # Squeeze-excitation: (B, C, L) -> (B, C) gate in (0, 1) -> per-channel scale.
        se = self.se_fc2(self.act(self.se_fc1(out.mean(dim=-1))))
        out = out * torch.sigmoid(se).unsqueeze(-1)

        identity = self.pool(identity)
        if self.out_channels != self.in_channels:
            # Grow the shortcut with zero channels, (out-in)//2 before and the rest after: a
            # parameter-free projection, so widening adds no keys to the state dict.
            extra = self.out_channels - self.in_channels
            identity = F.pad(identity, (0, 0, extra // 2, extra - extra // 2))
        return out + identity


class BasicStage(nn.Module):
    """m_blocks blocks of equal width; block 0 changes width and downsamples by `stride`.
    (B, in_channels, L) -> (B, out_channels, ceil(L / stride))."""

    def __init__(self, in_channels: int, out_channels: int, ratio: float, kernel_size: int,
                 stride: int, groups: int, i_stage: int, m_blocks: int, use_bn: bool,
                 use_do: bool, dropout: float):
        super().__init__()
        self.block_list = nn.ModuleList(
            BasicBlock(
                in_channels=in_channels if j == 0 else out_channels,
                out_channels=out_channels, ratio=ratio, kernel_size=kernel_size,
                stride=stride, groups=groups, downsample=(j == 0),
                use_bn=use_bn, use_do=use_do, dropout=dropout,
                is_first_block=(i_stage == 0 and j == 0),
            )
            for j in range(m_blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block_list:
            x = block(x)
        return x


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------

class Net1D(nn.Module):
    """The Net1D encoder. Build with a config or with its fields as keywords:

        Net1D(ANYPPG_PPG)
        Net1D(**{"in_channels": 1, "base_filters": 16, "filter_list": [16, 32], ...})
        Net1D(ANYPPG_PPG, use_do=False)          # keywords override config fields

    forward(x: (B, in_channels, L) float) -> EncoderOutput(embedding (B, D), features (B, D, L')).
    """

    # The stem always halves the length (NET1D.md: "kernel k, stride 2"), independent of the
    # blocks' stride.
    STEM_STRIDE = 2

    def __init__(self, config: Net1DConfig | None = None, **kwargs: Any):
        super().__init__()
        if config is None:
            config = Net1DConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        c = config
        self.grad_checkpointing = False

        self.first_conv = Conv1dPadSame(c.in_channels, c.base_filters, c.kernel_size,
                                        stride=self.STEM_STRIDE)
        self.first_bn = nn.BatchNorm1d(c.base_filters)
        self.first_act = nn.SiLU()

        stages = []
        in_ch = c.base_filters
        for i, (out_ch, m) in enumerate(zip(c.filter_list, c.m_blocks_list)):
            stages.append(BasicStage(
                in_channels=in_ch, out_channels=out_ch, ratio=c.ratio, kernel_size=c.kernel_size,
                stride=c.stride, groups=out_ch // c.groups_width, i_stage=i, m_blocks=m,
                use_bn=c.use_bn, use_do=c.use_do, dropout=c.dropout,
            ))
            in_ch = out_ch
        self.stage_list = nn.ModuleList(stages)

    @property
    def embed_dim(self) -> int:
        """D, the width of `EncoderOutput.embedding`."""
        return self.config.embed_dim

    def output_length(self, length: int) -> int:
        """L', the time length of `EncoderOutput.features` for an input of `length` samples."""
        n = (length + self.STEM_STRIDE - 1) // self.STEM_STRIDE
        for _ in self.config.filter_list:
            n = (n + self.config.stride - 1) // self.config.stride
        return n

    def set_grad_checkpointing(self, enable: bool = True) -> "Net1D":
        """Recompute each stage's activations in the backward pass instead of storing them:
        trades ~1 extra forward for far less activation memory (the paper ran its ECG encoder
        this way). Only active while training with gradients enabled."""
        self.grad_checkpointing = bool(enable)
        return self

    def forward(self, x: Tensor) -> EncoderOutput:
        """x: (B, in_channels, L) -> EncoderOutput(embedding (B, D), features (B, D, L'))."""
        if x.dim() != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"Net1D expects (B, {self.config.in_channels}, L), got {tuple(x.shape)}")
        out = self.first_conv(x)
        if self.config.use_bn:
            out = self.first_bn(out)
        out = self.first_act(out)
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for stage in self.stage_list:
            out = checkpoint(stage, out, use_reentrant=False) if use_ckpt else stage(out)
        return EncoderOutput(embedding=out.mean(dim=-1), features=out)
