"""The streaming runtime: raw sensor samples in, one result per window out.

    s = PPGStream(EdgeModel.load("runs/x/export"), fs=64)
    for chunk in sensor:                     # any chunk size, with or without timestamps
        for r in s.push(chunk):              # WindowResult: times, flags, HR, AF, ...
            ...
    s.close()                                # end of a file: flush the resampler's tail

Pipeline per chunk: timestamps -> uniform grid (`timebase`), constant-run tracking on the
sensor's samples (the flat check), the streaming resampler (`resample`) to the model's rate,
windows cut every hop, `preprocess.window_features` (what training stored), quantise, invoke,
read outputs by name (`model.readout`). The results do not depend on how the stream is chunked,
and a whole file pushed and closed gives exactly `preprocess.ppg_windows`' windows and flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .accel import AccelChannel
from .model import EdgeModel, readout
from .polarity import VOTE_WINDOWS, Polarity
from .preprocess import window_features
from .resample import StreamResampler
from .show import LOW_QUALITY_FLAGS, withheld
from .spec import FLAG_NAN_GAP, SignalSpec, flag_names
from .timebase import GridClock, InputError, RatePlan, plan_rate


@dataclass
class WindowResult:
    """One window's outcome. `values` holds numbers only for a usable window; `status` is
    'ok' or 'low_quality' and `reasons` says why (flag names, 'model_quality',
    'hr_confidence' when only HR was withheld)."""

    index: int
    t_start: float
    t_end: float
    flags: int
    status: str
    reasons: list[str]
    values: dict[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    z: np.ndarray | None = field(default=None, repr=False)     # the model input (L,) float32
    accel: np.ndarray | None = field(default=None, repr=False)  # accel model input (L, 3)

    def row(self) -> dict[str, Any]:
        return {"window": self.index, "t_start_s": self.t_start, "t_end_s": self.t_end,
                "status": self.status, "reasons": ";".join(self.reasons), "flags": self.flags,
                **self.values}


class ConstantRuns:
    """Streaming `preprocess.constant_runs`: per sensor sample, whether it lies in a run of
    exactly repeated values at least `min_len` long. A sample's mark is decided once its run has
    ended or reached min_len; `decided` counts the samples decided so far."""

    def __init__(self, min_len: int):
        self.min_len = min_len
        self.mask = np.zeros(0, dtype=bool)
        self.start = 0                  # absolute index of mask[0]
        self.n = 0
        self.run_start = 0
        self.run_value = np.nan
        self.decided = 0

    def push(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        same = np.empty(len(x), dtype=bool)
        same[0] = self.n > 0 and x[0] == self.run_value
        np.equal(x[1:], x[:-1], out=same[1:])
        starts = self.n + np.flatnonzero(~same)
        if len(starts) and starts[0] == self.run_start:
            starts = starts[1:]
        bounds = np.concatenate([[self.run_start], starts, [self.n + len(x)]])
        lengths = np.diff(bounds)
        self.mask = np.concatenate([self.mask, np.zeros(len(x), dtype=bool)])
        long = np.repeat(lengths >= self.min_len, lengths)
        off = max(0, self.start - int(bounds[0]))     # the open run may begin before the buffer
        self.mask[bounds[0] + off - self.start:] = long[off:]
        self.n += len(x)
        self.run_start, self.run_value = int(bounds[-2]), x[-1]
        self.decided = self.n if lengths[-1] >= self.min_len else self.run_start

    def close(self) -> None:
        self.decided = self.n

    def trim(self, keep_from: int) -> None:
        # an open run that is already long is decided (all True): no need to keep its start
        open_long = self.decided == self.n and self.n > self.run_start
        drop = (keep_from if open_long else min(keep_from, self.run_start)) - self.start
        if drop > 0:
            self.mask = self.mask[drop:]
            self.start += drop


class PPGStream:
    """Stateful runtime for one sensor stream at a declared rate `fs` (see `timebase` for the
    rate and timestamp policy). `model=None` gives windows and flags without inference."""

    def __init__(self, model: EdgeModel | None, fs: float, spec: SignalSpec | None = None,
                 hop_s: float | None = None, keep_z: bool = False, infer_flagged: bool = False,
                 accel: bool = False, polarity: str | None = None, vote_windows: int | None = None):
        self.model = model
        # which way up the sensor reports the pulse: as declared, else the model's sidecar default
        # ("up" where it has no "polarity" block; edge_runtime.polarity)
        mode, votes = model.polarity if model is not None else ("up", VOTE_WINDOWS)
        self.polarity = Polarity(mode if polarity is None else polarity,
                                 votes if vote_windows is None else vote_windows)
        self.spec = spec or (model.spec if model is not None else SignalSpec())
        self.plan: RatePlan = plan_rate(fs, self.spec.ppg_fs, self.spec.ppg_band_hz[1])
        fs_nom = self.plan.nominal_hz
        # accel is carried when the model takes it (or asked for, to see its windows)
        self.accel = (AccelChannel(fs_nom, self.spec.ppg_fs)
                      if accel or (model is not None and "accel" in model.inputs) else None)
        self.resampler = StreamResampler(fs_nom, self.spec.ppg_fs)
        self.up, self.down = self.resampler.up, self.resampler.down
        self.runs = ConstantRuns(max(2, int(round(self.spec.flat_run_s * fs_nom))))
        self.win = self.spec.ppg_len
        self.hop = max(1, int(round((hop_s or self.spec.hop_s) * self.spec.ppg_fs)))
        self.keep_z, self.infer_flagged = keep_z, infer_flagged
        self.clock: GridClock | None = None
        self.timestamped: bool | None = None
        self.t0 = 0.0
        self.y = np.zeros(0)
        self.miss = np.zeros(0, dtype=bool)
        self.y_start = 0                # absolute output index of y[0]
        self.next_start = 0             # absolute output index of the next window
        self.n_windows = 0
        self.closed = False
        # Samples are only buffered until the next window can complete (results do not depend
        # on chunking, so the work is batched per window: a push costs an append).
        self.pending: list[np.ndarray] = []
        self.pending_n = 0
        self.need_in = self._inputs_needed(self.win - 1)

    # ------------------------------------------------------------------ input
    def push(self, samples, timestamps=None, accel=None) -> list[WindowResult]:
        """Feed raw samples (T,) (and their timestamps in seconds, (T,); accelerometer (T, 3)
        when the model takes it); returns the windows completed by them. A zero-length chunk
        returns []."""
        if self.closed:
            raise InputError("stream is closed")
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if (timestamps is not None) != bool(self.timestamped) and self.timestamped is not None:
            raise InputError("give timestamps with every chunk or with none")
        if len(x) == 0 and (timestamps is None or len(np.asarray(timestamps).reshape(-1)) == 0):
            return []
        if self.timestamped is None:
            self.timestamped = timestamps is not None
            if self.timestamped:
                self.clock = GridClock(self.plan.nominal_hz)
        if self.accel is not None:
            if accel is None:
                raise InputError("this model takes an 'accel' input: push accel=(T, 3) with every chunk")
            self.accel.push(self.accel.check(accel, len(x)),
                            None if timestamps is None else np.asarray(timestamps, np.float64).reshape(-1))
        if self.clock is not None:
            x = self.clock.push(x, np.asarray(timestamps, np.float64).reshape(-1))
            self.t0 = self.clock.t0
        self.pending.append(x)
        self.pending_n += len(x)
        if self.runs.n + self.pending_n < self.need_in:
            return []
        return self._process()

    def _process(self) -> list[WindowResult]:
        x = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending, self.pending_n = [], 0
        self.runs.push(x)
        y, m = self.resampler.push(x)
        if self.accel is not None:
            self.accel.process()
        out = self._take(y, m)
        self.need_in = self._inputs_needed(self.next_start + self.win - 1)
        return out

    def _inputs_needed(self, n: int) -> int:
        """Sensor samples after which output n exists (the resampler's latency rule)."""
        if self.resampler.identity:
            return n + 1
        return -(-(n * self.down + self.resampler.half + 1) // self.up)

    def close(self) -> list[WindowResult]:
        """End of a finite recording: flush the resampler (hold the last sample) and emit the
        windows that completes."""
        if self.closed:
            return []
        res = self._process() if self.pending else []
        y, m = self.resampler.flush()
        if self.accel is not None:
            self.accel.process(flush=True)
        self.runs.close()
        res += self._take(y, m)
        self.closed = True
        return res

    # ------------------------------------------------------------------ windows
    def _take(self, y: np.ndarray, m: np.ndarray) -> list[WindowResult]:
        if len(y):
            self.y = np.concatenate([self.y, y])
            self.miss = np.concatenate([self.miss, m])
        starts = []
        while True:
            end = self.next_start + self.win          # exclusive, absolute output index
            if end > self.y_start + len(self.y) or self._input_hi(end - 1) >= self.runs.decided:
                break
            starts.append(self.next_start)
            self.next_start += self.hop
        out = self._windows(starts) if starts else []
        self._trim()
        return out

    def _input_hi(self, n: int) -> int:
        """The last sensor sample output n's flat mark reads (ceil of n*down/up, clipped)."""
        return min(-(-n * self.down // self.up), self.runs.n - 1)

    def _flat(self, s: int) -> np.ndarray:
        pos = np.arange(s, s + self.win, dtype=np.int64) * self.down
        hi_cap = self.runs.n - 1
        lo = np.minimum(pos // self.up, hi_cap) - self.runs.start
        hi = np.minimum(-(-pos // self.up), hi_cap) - self.runs.start
        return self.runs.mask[lo] | self.runs.mask[hi]

    def _windows(self, starts: list[int]) -> list[WindowResult]:
        """All windows ready in this push, preprocessed as one (N, L) batch (rows are
        independent, so a batch equals its windows one by one), then inferred one by one."""
        a = np.asarray(starts, np.int64) - self.y_start
        if len(a) == 1:
            sl = slice(int(a[0]), int(a[0]) + self.win)
            raw, miss, flat = self.y[sl][None], self.miss[sl][None], self._flat(starts[0])[None]
        else:
            idx = a[:, None] + np.arange(self.win)
            raw, miss = self.y[idx], self.miss[idx]
            flat = np.stack([self._flat(s) for s in starts])
        z, flags = window_features(raw, miss, flat, self.spec)
        return [self._window(s, z[k], int(flags[k])) for k, s in enumerate(starts)]

    def _window(self, s: int, z: np.ndarray, flags: int) -> WindowResult:
        acc = None
        if self.accel is not None:
            acc, acc_missing = self.accel.window(s, self.win, self.spec)
            flags |= FLAG_NAN_GAP if acc_missing else 0
        t_start = self.t0 + s / self.spec.ppg_fs
        r = WindowResult(self.n_windows, t_start, t_start + self.win / self.spec.ppg_fs, flags,
                         "ok", flag_names(flags & LOW_QUALITY_FLAGS),
                         z=z if self.keep_z else None, accel=acc if self.keep_z else None)
        self.n_windows += 1
        if r.reasons:
            r.status = "low_quality"
        if self.model is not None and (not r.reasons or self.infer_flagged):
            self._infer(r, z, acc)
        return r

    def _infer(self, r: WindowResult, z: np.ndarray, acc: np.ndarray | None) -> None:
        acc = acc if "accel" in self.model.inputs else None
        vals, sign = self.polarity.run(lambda x: readout(self.model.run(x, acc)), z)
        emb = vals.pop("embedding", None)
        # edge_runtime.show: the decision the C bundle's anyppg_hr_show makes on the int8 outputs
        why = None if r.reasons else withheld(vals, self.model.decision)
        if why is not None:
            r.reasons.append(why)
        if r.reasons and why != "hr_confidence":
            r.status = "low_quality"
            r.values = {"quality_prob": vals["quality_prob"]} if "quality_prob" in vals else {}
            return
        if why == "hr_confidence":
            vals["hr"] = None
        elif (self.model.hr_refine is not None or self.model.af_beats is not None) and "hr" in vals:
            vals["hr_network"] = vals["hr"]
            vals["hr"] = self.model.refined_hr(z if sign == 1 else -z, vals["hr"], r.flags,
                                               vals.get("af_prob"))
        r.values, r.embedding = vals, emb

    def _trim(self) -> None:
        drop = min(self.next_start - self.y_start, len(self.y))
        if drop > 0:
            self.y, self.miss = self.y[drop:], self.miss[drop:]
            self.y_start += drop
        self.runs.trim(max(0, self.next_start * self.down // self.up - 1))
        if self.accel is not None:
            self.accel.trim(self.next_start)


def run_recording(model: EdgeModel | None, x: np.ndarray, fs: float,
                  timestamps: np.ndarray | None = None, **kw) -> tuple[list[WindowResult], PPGStream]:
    """The batch API: a whole recording (T,) through one stream, closed at its end."""
    s = PPGStream(model, fs, **kw)
    res = s.push(x, timestamps)
    return res + s.close(), s
