"""Sensor rates and timestamps: from what a sensor delivers to a uniform sample grid.

Policy (documented in the README's edge-runtime section and tested):

- A declared rate must be finite, above 0 and at least twice the top of the PPG band (16 Hz for
  0.5-8 Hz): otherwise a one-line error naming the rate.
- Rates the resampler takes exactly (`SUPPORTED_RATES_HZ`, or any rate whose ratio to the model
  rate reduces to terms <= 1000, e.g. 300 Hz) are used as declared.
- A rate that is not exact but within `SNAP_TOLERANCE` (0.5%) of a supported rate, e.g. a
  64.02 Hz crystal, is treated as that nominal rate and the offset is reported
  (`RatePlan.offset_ppm`): without timestamps the recording is read as if sampled at 64 Hz,
  which scales every rate-derived number (HR) by the offset (312 ppm: 0.02 bpm at 72 bpm).
  Any other rate is a one-line error.
- Timestamps (seconds, one per sample) are the truth when given: samples are placed on the
  uniform grid t0 + k / fs_nominal by linear interpolation between neighbouring samples, so
  jitter and clock drift do not bend the time axis (one dropped sample is bridged). A step
  longer than `GAP_PERIODS` (2.5) periods is
  a gap: the grid points inside it are missing (NaN), which flags the windows that touch it.
  Timestamps must be finite and strictly increasing (else a one-line error naming the sample).
  The median of the first `CHECK_STEPS` steps must match the declared rate within 10%; a step
  near 1000 periods is reported as "timestamps in milliseconds".

Shapes: samples and timestamps (T,).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .resample import check_rate, resample_ratio

# 30 and 60: phone cameras, whose NTSC frame rates (29.97, 59.94 fps) snap to them
SUPPORTED_RATES_HZ = (25.0, 30.0, 50.0, 60.0, 64.0, 100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 500.0,
                      1000.0)
SNAP_TOLERANCE = 0.005
GAP_PERIODS = 2.5
CHECK_STEPS = 64
MAX_GAP_S = 24 * 3600.0


class InputError(ValueError):
    """Bad sensor input (rate, timestamps, samples): the message is one line naming it."""


@dataclass(frozen=True)
class RatePlan:
    """How a declared sensor rate is honoured: the nominal rate the resampler uses."""
    declared_hz: float
    nominal_hz: float
    offset_ppm: float           # (declared - nominal) / nominal * 1e6; 0 when exact

    @property
    def note(self) -> str:
        if not self.offset_ppm:
            return ""
        return (f"declared {self.declared_hz:g} Hz read as the nominal {self.nominal_hz:g} Hz "
                f"({self.offset_ppm:+.0f} ppm; pass timestamps to place samples by time)")


def plan_rate(fs, model_fs: float, band_top_hz: float) -> RatePlan:
    """Check a declared rate and choose the nominal rate (see the module's policy)."""
    try:
        fs = check_rate(fs, "sensor rate")
    except ValueError as e:
        raise InputError(str(e)) from None
    if fs < 2 * band_top_hz:
        raise InputError(f"sensor rate {fs:g} Hz is below {2 * band_top_hz:g} Hz, twice the top "
                         f"of the model's {band_top_hz:g} Hz band")
    try:
        resample_ratio(fs, model_fs)
        return RatePlan(fs, fs, 0.0)
    except ValueError:
        pass
    near = min(SUPPORTED_RATES_HZ, key=lambda r: abs(fs / r - 1))
    if abs(fs / near - 1) <= SNAP_TOLERANCE:
        return RatePlan(fs, near, (fs - near) / near * 1e6)
    raise InputError(f"sensor rate {fs:g} Hz is not supported: use one of "
                     f"{', '.join(f'{r:g}' for r in SUPPORTED_RATES_HZ)} Hz, or a rate within "
                     f"{SNAP_TOLERANCE:.1%} of one")


def rate_from_timestamps(t: np.ndarray, what: str = "timestamps") -> float:
    """The sensor rate a file's timestamps show, for files without --fs: samples per second
    over the whole span (robust to timestamps printed with few digits, e.g. BIDMC's CSVs after
    100 s; a file with gaps should be run with its timestamps or a declared rate)."""
    t = np.asarray(t, np.float64)
    if len(t) < 2 or not np.isfinite(t[[0, -1]]).all() or t[-1] <= t[0]:
        raise InputError(f"{what}: timestamps do not span a positive time; pass --fs")
    return (len(t) - 1) / float(t[-1] - t[0])


def check_increasing(t: np.ndarray, prev: float | None, what: str = "timestamps",
                     offset: int = 0) -> None:
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        raise InputError(f"{what}: sample {offset + bad[0]} has a non-finite timestamp ({t[bad[0]]})")
    full = t if prev is None else np.r_[prev, t]
    steps = np.diff(full)
    bad = np.flatnonzero(steps <= 0)
    if len(bad):
        i = bad[0] + (0 if prev is None else -1) + 1
        hint = (" (timestamps printed with too few digits? give the rate instead)"
                if full[bad[0] + 1] == full[bad[0]] else "")
        raise InputError(f"{what}: timestamps must increase, sample {offset + i} at {full[bad[0] + 1]:g} s "
                         f"follows {full[bad[0]]:g} s{hint}")


class GridClock:
    """Timestamped samples -> samples on the uniform grid t0 + k / fs (policy above).

    push(values, t) -> grid values (M,) float64 (NaN inside gaps); any chunking gives the
    same grid values. t0 is the first timestamp.
    """

    def __init__(self, fs: float):
        self.fs = float(fs)
        self.t0: float | None = None
        self.k_next = 0                  # next grid index to fill
        self.prev_t: float | None = None
        self.prev_v = math.nan
        self.n_seen = 0
        self.first_t: list[float] = []   # for the rate check

    def grid_time(self, k) -> np.ndarray:
        return self.t0 + np.asarray(k, np.float64) / self.fs

    def _check_rate(self, t: np.ndarray) -> None:
        if len(self.first_t) > CHECK_STEPS:
            return
        self.first_t.extend(t[: CHECK_STEPS + 1 - len(self.first_t)].tolist())
        if len(self.first_t) < CHECK_STEPS + 1:
            return
        step = float(np.median(np.diff(self.first_t)))
        ratio = step * self.fs
        if 0.9 <= ratio <= 1.1:
            return
        if 800 <= ratio <= 1250:
            raise InputError(f"timestamps look like milliseconds: median step {step:g} where "
                             f"{1 / self.fs:g} s is expected at {self.fs:g} Hz (pass seconds)")
        raise InputError(f"declared rate {self.fs:g} Hz does not match the timestamps: median step "
                         f"{step:g} s ({1 / step:.4g} Hz)")

    def push(self, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float64).reshape(-1)
        t = np.asarray(t, np.float64).reshape(-1)
        if len(v) != len(t):
            raise InputError(f"{len(v)} samples but {len(t)} timestamps")
        if len(t) == 0:
            return np.zeros(0)
        check_increasing(t, self.prev_t, offset=self.n_seen)
        self._check_rate(t)
        self.n_seen += len(t)
        if self.t0 is None:
            self.t0 = float(t[0])
            self.prev_t, self.prev_v = float(t[0]), float(v[0])
            self.k_next = 1
            out0 = v[:1]
            t, v = t[1:], v[1:]
        else:
            out0 = np.zeros(0)
        if len(t) == 0:
            return out0.copy()
        if t[-1] - self.prev_t > MAX_GAP_S:
            raise InputError(f"timestamps jump by {t[-1] - self.prev_t:g} s: start a new stream")
        tt = np.r_[self.prev_t, t]
        vv = np.r_[self.prev_v, v]
        # grid points up to the last timestamp
        k_last = int(math.floor((t[-1] - self.t0) * self.fs + 1e-9))
        k = np.arange(self.k_next, k_last + 1, dtype=np.int64)
        g = self.grid_time(k)
        seg = np.clip(np.searchsorted(tt, g, side="left"), 1, len(tt) - 1)   # tt[seg-1] < g <= tt[seg]
        t_a, t_b = tt[seg - 1], tt[seg]
        w = (g - t_a) / (t_b - t_a)
        out = vv[seg - 1] + (vv[seg] - vv[seg - 1]) * w
        out[(t_b - t_a) > GAP_PERIODS / self.fs] = np.nan
        self.k_next = k_last + 1
        self.prev_t, self.prev_v = float(t[-1]), float(v[-1])
        return np.r_[out0, out]
