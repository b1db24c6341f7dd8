"""Wrist-PPG augmentations on model-input windows (B, C, L), torch, reproducible by generator.

    g = torch.Generator().manual_seed(step)
    x_aug = augment(x, g)                 # same shape, re-z-scored per window and channel

What a watch adds to a clean finger/ICU PPG, mildly, each applied per window with its own
probability:

* amplitude drift: a slow gain ramp across the window (strap pressure, perfusion changes);
* baseline wander: a slow sinusoid (arm movement, temperature);
* time shift: a small shift with edge padding (the first/last sample is repeated, no wrap-around);
* noise: white Gaussian noise;
* dropouts: short stretches set to the window mean (sensor lift-off, saturation recovery);
* polarity: the window upside down (off by default, `p_invert`): sensors disagree on which way
  is up (a camera's brightness falls as blood volume rises; many wrist AFEs report raw
  photocurrent), and a student that only saw one polarity reads the other one's HR badly.

Then every window is z-scored again (population std, as edge_runtime.preprocess.zscore), so the
result still satisfies the input contract of the SignalSpec.

Label safety: none of these changes the pulse rate (nor does inversion), and the defaults stay clear of the
respiratory band (0.1-0.5 Hz, what RIAV/RIIV-based RR estimation and the RR head rely on):
the gain is a monotone ramp and the wander is below 0.1 Hz. Heavy noise or long dropouts would
change what a 'quality' label means, so they are kept short and small.

The number of random draws per call does not depend on the data or on which augmentations fire,
so a given generator state always yields the same augmentation of the same batch shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AugmentConfig:
    p_amplitude: float = 0.5
    amplitude_depth: float = 0.3        # gain goes linearly from 1-a to 1+a, a ~ U(-depth, depth)
    p_baseline: float = 0.5
    baseline_amp: float = 0.3           # sinusoid amplitude ~ U(0, baseline_amp), in z units
    baseline_hz: tuple[float, float] = (0.02, 0.1)
    p_shift: float = 0.5
    max_shift_s: float = 0.25           # shift ~ U{-max, ..., max} samples
    p_noise: float = 0.5
    noise_std: tuple[float, float] = (0.01, 0.1)   # in z units
    p_dropout: float = 0.2              # per dropout slot
    dropout_s: tuple[float, float] = (0.1, 0.5)
    max_dropouts: int = 2
    p_invert: float = 0.0               # flip the window's sign (polarity); 0: no draw at all


def zscore(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-window, per-channel z-score over the last axis (a flat window maps to zeros)."""
    mu = x.mean(dim=-1, keepdim=True)
    sd = x.std(dim=-1, keepdim=True, unbiased=False)
    return (x - mu) / sd.clamp_min(eps)


def _u(shape, lo: float, hi: float, g: torch.Generator, device) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=device)


def augment(x: Tensor, generator: torch.Generator, cfg: AugmentConfig | None = None,
            fs: float = 125.0, eps: float = 1e-8) -> Tensor:
    """Augmented copy of x (B, C, L) float; `x` itself is not modified.

    generator: a torch.Generator on x's device (all randomness comes from it).
    """
    if x.dim() != 3:
        raise ValueError(f"augment expects (B, C, L) windows, got shape {tuple(x.shape)}")
    cfg = cfg or AugmentConfig()
    g, dev = generator, x.device
    B, C, L = x.shape
    t = torch.arange(L, device=dev, dtype=x.dtype) / fs            # seconds
    y = x.clone()

    # amplitude drift: gain ramp 1 - a .. 1 + a
    on = torch.rand(B, generator=g, device=dev) < cfg.p_amplitude
    a = _u(B, -cfg.amplitude_depth, cfg.amplitude_depth, g, dev) * on
    ramp = torch.linspace(-1.0, 1.0, L, device=dev, dtype=x.dtype)
    y = y * (1.0 + a[:, None, None] * ramp)

    # baseline wander: slow sinusoid
    on = torch.rand(B, generator=g, device=dev) < cfg.p_baseline
    amp = _u(B, 0.0, cfg.baseline_amp, g, dev) * on
    f = _u(B, *cfg.baseline_hz, g, dev)
    phase = _u(B, 0.0, 2 * math.pi, g, dev)
    y = y + (amp[:, None] * torch.sin(2 * math.pi * f[:, None] * t + phase[:, None]))[:, None, :]

    # time shift with edge padding (replicate the first/last sample)
    on = torch.rand(B, generator=g, device=dev) < cfg.p_shift
    m = int(round(cfg.max_shift_s * fs))
    s = torch.randint(-m, m + 1, (B,), generator=g, device=dev) * on
    idx = (torch.arange(L, device=dev)[None, :] - s[:, None]).clamp(0, L - 1)
    y = torch.gather(y, -1, idx[:, None, :].expand(B, C, L))

    # dropouts: short stretches at the window mean
    mu = y.mean(dim=-1, keepdim=True)
    for _ in range(cfg.max_dropouts):
        on = torch.rand(B, generator=g, device=dev) < cfg.p_dropout
        n = (_u(B, *cfg.dropout_s, g, dev) * fs).round().clamp(1, L)
        start = (torch.rand(B, generator=g, device=dev) * (L - n + 1)).floor()
        pos = torch.arange(L, device=dev)[None, :]
        hole = (pos >= start[:, None]) & (pos < (start + n)[:, None]) & on[:, None]
        y = torch.where(hole[:, None, :], mu, y)

    # white noise
    on = torch.rand(B, generator=g, device=dev) < cfg.p_noise
    sd = _u(B, *cfg.noise_std, g, dev) * on
    y = y + sd[:, None, None] * torch.randn(y.shape, generator=g, device=dev, dtype=y.dtype)

    # polarity, drawn last and only when enabled: configs without it augment as before, bit for bit
    if cfg.p_invert > 0:
        on = torch.rand(B, generator=g, device=dev) < cfg.p_invert
        y = torch.where(on[:, None, None], -y, y)

    return zscore(y, eps)
