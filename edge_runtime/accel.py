"""The optional accelerometer input of motion-aware models (contract input `accel`).

Each axis goes through the same timebase and streaming resampler as the PPG, so its samples sit
on the PPG window's samples; a window's accel input is each axis z-scored over the window
(`accel_window`). Missing accel samples mark the window like missing PPG (nan_gap).
Shapes: a chunk (T, 3), a window (L, 3).
"""
from __future__ import annotations

import numpy as np

from .preprocess import zscore
from .resample import StreamResampler
from .timebase import GridClock, InputError


def accel_window(raw: np.ndarray, eps: float) -> np.ndarray:
    """(L, 3) resampled acceleration -> (L, 3) float32 model input, each axis z-scored."""
    return zscore(np.asarray(raw, np.float64).T, eps).T.astype(np.float32)


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

    def window(self, s: int, length: int, eps: float) -> tuple[np.ndarray, bool]:
        """(L, 3) model input of the window starting at output s, and whether any was missing."""
        a = s - self.start
        return accel_window(self.buf[a:a + length], eps), bool(self.miss[a:a + length].any())

    def trim(self, keep_from: int) -> None:
        drop = min(keep_from - self.start, len(self.buf))
        if drop > 0:
            self.buf, self.miss = self.buf[drop:], self.miss[drop:]
            self.start += drop
