"""One record type for every dataset reader.

A reader turns a publisher's files into `Record`s: one subject's synchronised signals at their
native rates, with per-record labels (SBP of a PPG-BP subject, an alarm type) and per-time
labels (1 Hz heart rate of a monitor, rhythm per segment). The window store does the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ReaderError(ValueError):
    """A file could not be read as the dataset it claims to be. The message names the file."""


@dataclass
class Signal:
    """A 1-D signal at its native rate. NaN marks missing samples (gaps), never zero."""

    data: np.ndarray   # (T,) float64
    fs: float          # Hz

    def __post_init__(self):
        self.data = np.asarray(self.data, dtype=np.float64).reshape(-1)
        if not np.isfinite(self.fs) or self.fs <= 0:
            raise ValueError(f"sampling rate must be positive, got {self.fs}")

    @property
    def duration_s(self) -> float:
        return len(self.data) / self.fs


@dataclass
class Series:
    """A label sampled in time: values[i] holds at times_s[i] (seconds from record start)."""

    times_s: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        self.times_s = np.asarray(self.times_s, dtype=np.float64).reshape(-1)
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if self.times_s.shape != self.values.shape:
            raise ValueError("Series: times_s and values differ in length")

    def mean_over(self, t0: float, t1: float) -> float:
        """Mean of the finite values with t0 <= t < t1; NaN where there are none."""
        m = (self.times_s >= t0) & (self.times_s < t1) & np.isfinite(self.values)
        return float(self.values[m].mean()) if m.any() else float("nan")


@dataclass
class Record:
    """One recording of one subject.

    signals: 'ppg' (required by the store) and optionally 'ecg', each at its own rate.
    labels:  per-record scalars (float; NaN if unknown), e.g. {'sbp': 120.0}.
    series:  per-time labels, averaged over each window by the store, e.g. {'hr': Series(...)}.
    window_labels: optional per-window labels when a dataset ships pre-cut segments
             (Liu 2022): name -> (n_segments,) aligned with consecutive windows of `segment_s`.
    """

    subject_id: str
    record_id: str
    source: str
    signals: dict[str, Signal]
    labels: dict[str, float] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # Pre-segmented datasets: the signal is a concatenation of segments of this length, and
    # each segment is one window (no hop, no crossing of segment borders).
    segment_s: float | None = None
    window_labels: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""     # the file it came from, for error messages

    @property
    def ppg(self) -> Signal:
        if "ppg" not in self.signals:
            raise ReaderError(f"{self.path or self.record_id}: record has no PPG channel")
        return self.signals["ppg"]
