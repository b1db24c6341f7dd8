"""The optional accelerometer input of motion-aware models (contract input `accel`).

One definition for the store, the stream runtime and the benchmarks: each axis (in g) goes
through the PPG's own timebase and streaming resampler, so its samples sit on the PPG window's
samples; a window's accel input is each axis band-passed with the PPG's band-pass sections
(zero-phase, per window, like the PPG), divided by `ACCEL_SCALE_G` and clipped to
+-`ACCEL_CLIP` (`edge_runtime.contract`). The band-pass removes gravity, so a still wrist reads
~0 and an absent accelerometer is fed as zeros. Missing accel samples mark the window like
missing PPG (nan_gap).
Shapes: a chunk (T, 3), a window (L, 3), a record's windows (K, 3, L).
"""
from __future__ import annotations

import numpy as np

from .contract import ACCEL_CLIP, ACCEL_SCALE_G
from .preprocess import filter_windows, frame, ppg_sos, resample
from .resample import StreamResampler
from .spec import SignalSpec
from .timebase import GridClock, InputError


def accel_channels_first(raw: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(..., 3, L) resampled acceleration in g -> (..., 3, L) float32 model input."""
    a = np.ascontiguousarray(raw, np.float64)        # the sosfilt kernel wants C order
    y = filter_windows(a.reshape(-1, a.shape[-1]), ppg_sos(spec)).reshape(a.shape)
    return np.clip(y / ACCEL_SCALE_G, -ACCEL_CLIP, ACCEL_CLIP).astype(np.float32)


def accel_window(raw: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(L, 3) resampled acceleration in g -> (L, 3) float32 model input (NWC, as the model file)."""
    return accel_channels_first(np.asarray(raw).T, spec).T.copy()


def accel_windows(axes: np.ndarray, fs: float, spec: SignalSpec, start_s: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A record's three axes (3, T) at rate `fs` (g) -> (windows (K, 3, L) float32, missing (K,)
    bool) on the PPG windows starting at `start_s` (s). Resampled with the PPG's resampler;
    windows running past the record's end are zeros and marked missing."""
    outs = [resample(np.asarray(ax, np.float64), fs, spec.ppg_fs) for ax in axes]
    y = np.stack([o[0] for o in outs])
    miss = outs[0][1] | outs[1][1] | outs[2][1]
    win = spec.ppg_len
    starts = np.round(np.asarray(start_s) * spec.ppg_fs).astype(np.int64)
    ok = (starts >= 0) & (starts + win <= y.shape[1])
    x = np.zeros((len(starts), 3, win), np.float32)
    missing = ~ok
    if ok.any():
        raw = np.stack([frame(y[k], starts[ok], win) for k in range(3)], axis=1)   # (K, 3, L)
        x[ok] = accel_channels_first(raw, spec)
        missing[ok] = frame(miss, starts[ok], win).any(axis=1)
    return x, missing


class AccelChannel:
    """Three axes carried beside a PPG stream: same rates, same timestamps, same chunking."""

    def __init__(self, fs_nominal: float, fs_model: float):
        self.fs = fs_nominal
        self.resamplers = [StreamResampler(fs_nominal, fs_model) for _ in range(3)]
        self.clocks: list[GridClock] | None = None
        self.pending: list[np.ndarray] = []
        self.buf = np.zeros((0, 3))
        self.miss = np.zeros(0, dtype=bool)
        self.start = 0                          # absolute output index of buf[0]

    def check(self, accel, n: int) -> np.ndarray:
        a = np.asarray(accel, np.float64)
        if a.ndim != 2 or a.shape != (n, 3):
            raise InputError(f"accel must be (T, 3) beside T = {n} PPG samples, got shape {a.shape}")
        return a

    def push(self, a: np.ndarray, t: np.ndarray | None) -> None:
        if t is not None:
            if self.clocks is None:
                self.clocks = [GridClock(self.fs) for _ in range(3)]
            a = np.stack([c.push(a[:, k], t) for k, c in enumerate(self.clocks)], axis=1)
        self.pending.append(a)

    def process(self, flush: bool = False) -> None:
        a = np.concatenate(self.pending) if self.pending else np.zeros((0, 3))
        self.pending = []
        outs = [r.flush() if flush else r.push(a[:, k]) for k, r in enumerate(self.resamplers)]
        if len(outs[0][0]):
            self.buf = np.concatenate([self.buf, np.stack([o[0] for o in outs], axis=1)])
            self.miss = np.concatenate([self.miss, outs[0][1] | outs[1][1] | outs[2][1]])

    def window(self, s: int, length: int, spec: SignalSpec) -> tuple[np.ndarray, bool]:
        """(L, 3) model input of the window starting at output s, and whether any was missing."""
        a = s - self.start
        return accel_window(self.buf[a:a + length], spec), bool(self.miss[a:a + length].any())

    def trim(self, keep_from: int) -> None:
        drop = min(keep_from - self.start, len(self.buf))
        if drop > 0:
            self.buf, self.miss = self.buf[drop:], self.miss[drop:]
            self.start += drop
