"""HR by counting beats where the student calls the window atrial fibrillation.

In AF the beat-to-beat intervals are irregular, so a window's spectrum has no clean line for
the HR refinement to find, and the wrist student learnt no HR from AF windows (its distillation
kept HR out of them: learning it cost sinus accuracy). Counting the pulse peaks of the window
does not need a regular rhythm. Where the model's own `af_prob` reaches `min_af_prob`, the HR a
device shows is therefore the beat rate of its int8 input window:

    x        = q - zero_point                       (the model's int8 input, (L,))
    level    = the k-th smallest x, k = floor(95 (L - 1) / 100)   (an order statistic)
    peaks    = local maxima x[i] > x[i-1], x[i] >= x[i+1], x[i] > fraction * level (float32),
               scanned in order; one closer than MIN_GAP samples (60 / HR_BIN_MAX_BPM s) to
               the last kept peak replaces it if higher, else is dropped
    hr_beats = 60 fs (n - 1) / (last - first)        (float32; none with fewer than 3 peaks)

Integers up to the float32 threshold and quotient, so the C bundle (`anyppg_hr.c`) gives the
same bits. Windows padded from a shorter recording (too_short) are not counted. The settings
are the sidecar's "af_beats" block, written by the export from its config (chosen on
validation subjects, README); a sidecar without one shows the refined HR in AF too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .contract import HR_BIN_MAX_BPM
from .hr_refine import SKIP_FLAGS
from .interpreters import quantize_input
from .sidecar import sigmoid

METHOD = "af-beats-1"
LEVEL_PERCENT = 95


class AFBeatsConfigError(ValueError):
    """A sidecar's af_beats block that this runtime cannot honour (one line)."""


@dataclass(frozen=True)
class AFBeats:
    """The sidecar's "af_beats" block."""

    min_af_prob: float = 0.9     # af_prob from which the beat count is shown
    fraction: float = 0.2        # peak threshold: this fraction of the window's 95th-percentile level
    method: str = METHOD
    chosen_on: str = ""

    def __post_init__(self) -> None:
        if self.method != METHOD:
            raise AFBeatsConfigError(f"unknown af_beats method {self.method!r} (this runtime knows {METHOD!r})")
        for name in ("min_af_prob", "fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 1:
                raise AFBeatsConfigError(f"af_beats {name} must be a number in (0, 1], not {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_sidecar(cls, sidecar: dict[str, Any]) -> "AFBeats | None":
        block = sidecar.get("af_beats")
        if block is None:
            return None
        if not isinstance(block, dict):
            raise AFBeatsConfigError(f"af_beats must be an object, not {type(block).__name__}")
        unknown = set(block) - set(cls.__dataclass_fields__)
        if unknown:
            raise AFBeatsConfigError(f"af_beats has unknown fields {sorted(unknown)}")
        return cls(**block)


def min_gap(fs: float) -> int:
    """Samples between two beats at the highest HR the contract reads (230 bpm)."""
    return int(math.ceil(60.0 / HR_BIN_MAX_BPM * fs))


def beat_hr_int8(q: np.ndarray, zero_point: int, fs: float, fraction: float) -> float:
    """The beat rate (bpm, float32 arithmetic) of one int8 window q (L,); NaN under 3 peaks."""
    x = np.asarray(q, np.int32).reshape(-1) - int(zero_point)
    level = np.partition(x, (LEVEL_PERCENT * (len(x) - 1)) // 100)[(LEVEL_PERCENT * (len(x) - 1)) // 100]
    thr = np.float32(fraction) * np.float32(level)
    mid = x[1:-1]
    cand = np.flatnonzero((mid > x[:-2]) & (mid >= x[2:]) & (mid.astype(np.float32) > thr)) + 1
    gap, peaks = min_gap(fs), []
    for i in cand:
        if peaks and i - peaks[-1] < gap:
            if x[i] > x[peaks[-1]]:
                peaks[-1] = int(i)
            continue
        peaks.append(int(i))
    if len(peaks) < 3:
        return float("nan")
    return float(np.float32(60.0 * fs) * np.float32(len(peaks) - 1) / np.float32(peaks[-1] - peaks[0]))


def shown_in_af(hr: float, af_prob: float | None, q: np.ndarray, zero_point: int, fs: float,
                cfg: "AFBeats | None", flags: int = 0) -> float:
    """The HR to show: the beat rate where cfg applies (af_prob >= min_af_prob, not too_short,
    at least 3 peaks), else `hr` (the refined one) as it is."""
    if cfg is None or af_prob is None or af_prob < cfg.min_af_prob or int(flags) & SKIP_FLAGS:
        return hr
    b = beat_hr_int8(q, zero_point, fs, cfg.fraction)
    return hr if math.isnan(b) else b


def with_af_beats(out: dict[str, np.ndarray], z: np.ndarray, ppg_input: dict[str, Any], fs: float,
                  cfg: "AFBeats | None", flags: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A batch's outputs by name (hr already refined: hr_refine.with_refined_hr) with `hr` the
    beat rate on the windows z (N, L) where cfg applies; `out` itself without cfg."""
    if cfg is None or "hr" not in out or "af_logit" not in out:
        return out
    q = quantize_input(np.atleast_2d(np.asarray(z, np.float32)), ppg_input["scale"], ppg_input["zero_point"])
    af = sigmoid(np.asarray(out["af_logit"], np.float32).reshape(-1))
    hr = np.asarray(out["hr"], np.float64).reshape(-1)
    fl = np.zeros(len(hr), np.int64) if flags is None else np.asarray(flags).reshape(-1)
    shown = [shown_in_af(float(h), float(a), w, ppg_input["zero_point"], fs, cfg, int(f))
             for h, a, w, f in zip(hr, af, q, fl)]
    return {**out, "hr": np.asarray(shown, np.float64).reshape(np.shape(out["hr"]))}
