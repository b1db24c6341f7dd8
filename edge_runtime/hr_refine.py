"""HR refinement: the network's HR as a prior, the window's own spectrum as the evidence.

The student reads HR as the expectation of a distribution over 4-bpm bins. Where its features
have drifted from the training data (a new sensor, a new kind of motion) that distribution
broadens and its expectation slides toward the training mean, even when the pulse stands clear
in the window's spectrum; at rest the 4-bpm bins also cost precision. A spectral peak, on the
other hand, is precise when right but locks onto motion when the pulse is weak. Combined, the
network decides *where* to look and the spectrum decides *exactly where*:

    candidates  g = HR_BIN_MIN_BPM + k * step_bpm   (k = 0, 1, ...; g <= HR_BIN_MAX_BPM)
                with |g - hr| <= radius_bpm          (hr: the network's own output, bpm)
    P(g)        = |sum_n x[n] exp(-2 pi i (g / 60) n / fs)|^2   (x: the model's input window)
    w(g)        = exp(-(g - hr)^2 / (2 sigma_bpm^2)) * (P(g) / max_g P)^power
    hr_refined  = sum_g w(g) g / sum_g w(g)

No window function (rectangular: a Hann window was worse on both validation sets) and no mean
removal (the window is band-passed). P is scale-free through max_g P, so x may be the float
window or, as on a device, the int8 input minus its zero point. A window with no power at any
candidate (all zeros), or a window padded from a shorter recording (SKIP_FLAGS), keeps the
network's hr (a window with a low-quality flag shows no number at all: edge_runtime.show). The
parameters are chosen on validation windows
by the export (`quantization.decision`) and recorded in the sidecar's "hr_refine" block; a
sidecar without one is not refined. The C bundle implements the same definition
(firmware_bridge), measured against `refine_hr` on real windows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .contract import HR_BIN_MAX_BPM, HR_BIN_MIN_BPM
from .interpreters import quantize_input
from .spec import FLAG_TOO_SHORT

METHOD = "spectral-prior-1"
# Windows with these flags keep the network's hr: a recording shorter than one window is padded
# by repeating itself, so its spectrum is a comb at the repetition rate, not the pulse (PPG-BP's
# 2.1-s segments, wrist student: refined 7.35 against the network's 5.28 bpm on validation
# subjects, 5.93 against 4.62 on test subjects).
SKIP_FLAGS = FLAG_TOO_SHORT


class RefineConfigError(ValueError):
    """A sidecar's hr_refine block that this runtime cannot honour (one line)."""


@dataclass(frozen=True)
class HRRefine:
    """The refinement's parameters (the sidecar's "hr_refine" block)."""

    sigma_bpm: float = 7.5       # width of the prior around the network's hr
    power: float = 2.0           # exponent on the normalised spectrum (sharpens the evidence)
    radius_bpm: float = 30.0     # candidates beyond this from hr carry no weight (4 sigma)
    step_bpm: float = 1.0        # candidate spacing
    method: str = METHOD

    def __post_init__(self) -> None:
        if self.method != METHOD:
            raise RefineConfigError(f"hr_refine.method {self.method!r}: this runtime knows {METHOD!r}")
        for k in ("sigma_bpm", "power", "radius_bpm", "step_bpm"):
            v = getattr(self, k)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise RefineConfigError(f"hr_refine.{k} must be a positive number, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_sidecar(cls, sidecar: dict[str, Any]) -> "HRRefine | None":
        """The sidecar's block (None where it has none). Unknown keys are refused: a device
        that ignored one would compute another number than the one the export measured."""
        block = sidecar.get("hr_refine")
        if block is None:
            return None
        if not isinstance(block, dict):
            raise RefineConfigError("hr_refine must be an object")
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(block) - known - {"chosen_on"})
        if extra:
            raise RefineConfigError(f"hr_refine has unknown key(s) {extra}")
        return cls(**{k: v for k, v in block.items() if k in known})

    def candidates(self) -> np.ndarray:
        """All candidate rates (bpm), ascending; a window uses those within radius of its hr."""
        n = int(np.floor((HR_BIN_MAX_BPM - HR_BIN_MIN_BPM) / self.step_bpm + 1e-9)) + 1
        return HR_BIN_MIN_BPM + self.step_bpm * np.arange(n)


@lru_cache(maxsize=8)
def _tables(step_bpm: float, fs: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidates (G,), DFT rows (G, 2, L): cos and sin at every candidate rate). Candidates
    near one hr are consecutive, so a window's rows are a view, one matrix-vector product."""
    g = HRRefine(step_bpm=step_bpm).candidates()
    ph = 2.0 * np.pi * (g[:, None] / 60.0) * (np.arange(length)[None, :] / fs)
    return g, np.ascontiguousarray(np.stack([np.cos(ph), np.sin(ph)], axis=1))


def refine_hr(x: np.ndarray, hr: np.ndarray | float, fs: float, cfg: HRRefine,
              flags: np.ndarray | int | None = None) -> np.ndarray:
    """Refined HR (N,) bpm of windows x (N, L) (or one (L,)) given the network's hr (N,);
    windows whose quality flags (N,) include SKIP_FLAGS keep the network's hr."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    hr = np.atleast_1d(np.asarray(hr, np.float64))
    if len(hr) != len(x):
        raise ValueError(f"refine_hr: {len(x)} windows but {len(hr)} hr values")
    g, cs = _tables(float(cfg.step_bpm), float(fs), x.shape[1])   # g = cfg.candidates()
    near = np.abs(g[None, :] - hr[:, None]) <= cfg.radius_bpm             # (N, G)
    ok = near.any(axis=1) & np.isfinite(hr)
    if flags is not None:
        ok &= (np.broadcast_to(np.asarray(flags, np.int64), hr.shape) & SKIP_FLAGS) == 0
    out = hr.copy()
    for i in np.flatnonzero(ok):
        rows = np.flatnonzero(near[i])
        sl = slice(rows[0], rows[-1] + 1)
        out[i] = _refine_one(x[i], hr[i], g[sl], cs[sl], cfg)
    return out


def _refine_one(x: np.ndarray, hr: float, g: np.ndarray, cs: np.ndarray, cfg: HRRefine) -> float:
    """One window x (L,): candidates g (n,) near hr and their DFT rows cs (n, 2, L) (a view)."""
    p = ((cs.reshape(-1, x.shape[0]) @ x) ** 2).reshape(-1, 2).sum(axis=1)
    pmax = p.max()
    if not (pmax > 0 and np.isfinite(pmax)):
        return float(hr)
    w = np.exp(-0.5 * ((g - hr) / cfg.sigma_bpm) ** 2) * (p / pmax) ** cfg.power
    total = w.sum()
    return float((w * g).sum() / total) if total > 0 else float(hr)


def refine_on_input(z: np.ndarray, hr: np.ndarray | float, ppg_input: dict[str, Any], fs: float,
                    cfg: HRRefine, flags: np.ndarray | int | None = None) -> np.ndarray:
    """What a device shows: windows z (N, L) (or one (L,)) quantised to the model's int8 input as
    the runtime does (`ppg_input`: the sidecar's input entry, scale and zero_point), then refined
    on the integers minus the zero point, as the C bundle does. (N,) bpm."""
    q = quantize_input(np.atleast_2d(np.asarray(z, np.float32)), ppg_input["scale"], ppg_input["zero_point"])
    return refine_int8(q, ppg_input["zero_point"], hr, fs, cfg, flags)


def refine_int8(q: np.ndarray, zero_point: int | float, hr: np.ndarray | float, fs: float,
                cfg: HRRefine, flags: np.ndarray | int | None = None) -> np.ndarray:
    """The refinement of int8 model inputs q (N, L) (or (N, L, 1), one (L,)) as a device runs it:
    on q - zero_point. (N,) bpm."""
    q = np.asarray(q)
    x = q.reshape(len(q), -1) if q.ndim > 1 else q
    return refine_hr(x.astype(np.float64) - float(zero_point), hr, fs, cfg, flags)


def with_refined_hr(out: dict[str, np.ndarray], z: np.ndarray, ppg_input: dict[str, Any], fs: float,
                    cfg: HRRefine | None, flags: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A batch's dequantised outputs by name as a device shows them: with a refinement, `hr`
    refined on windows z (N, L) (`refine_on_input`) and the network's own kept as `hr_network`;
    `out` itself without one (or without an hr output)."""
    if cfg is None or "hr" not in out:
        return out
    hr = np.asarray(out["hr"])
    return {**out, "hr_network": hr,
            "hr": refine_on_input(z, hr, ppg_input, fs, cfg, flags)}
