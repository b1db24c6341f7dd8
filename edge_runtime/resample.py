"""The streaming resampler: one definition for `data prepare`, the edge runtime and the C port.

A stateful polyphase FIR resampler that runs on chunks of any size and gives the same output
for every chunking. It is `scipy.signal.resample_poly` (same prototype filter, same output
sample times) made causal-by-delay, with a defined start (history = first sample), a defined
end (`flush`: hold the last sample) and missing samples flagged instead of interpolated.

Exact arithmetic (what the C port reproduces; all in float64):

1. Ratio. `up, down = resample_ratio(fs_in, fs_out)`: the reduced fraction fs_out / fs_in
   (Fraction.limit_denominator(1000), accepted only if it reproduces fs_out to 1e-9 relative).
   fs_in == fs_out (up == down == 1) is the identity: y = cleaned x, missing = x's flags.
2. Prototype filter. M = max(up, down), H = 10 * M,
   `h = scipy.signal.firwin(2*H + 1, 1/M, window=("kaiser", 5.0)) * up`  (length 2H+1).
   (`prototype_filter` returns it; the C port embeds these taps, it does not redesign them.)
3. Cleaning. Input x[i], i = 0, 1, ...: a non-finite sample (NaN, +-inf) is replaced by the
   last finite sample before it (0.0 if there is none yet) and marked missing.
   History: x[i] for i < 0 equals the cleaned x[0], with x[0]'s missing mark.
4. Output. Sample n (time n / fs_out, so y[0] is at the time of x[0]) is
       y[n] = sum_{k=0}^{2H} h[k] * xu[n*down + H - k],
   xu the zero-stuffed input: xu[m] = x[m / up] if m % up == 0 else 0.
   Only the taps that hit a real sample are summed. With b = (n*down + H) // up and
   p = (n*down + H) % up, those are k = p + j*up for j = 0 .. J-1 (J = ceil((2H+1)/up),
   taps past 2H are zero), each multiplying x[b - j]. The sum is accumulated in that order,
   j = 0 first, as acc = acc + h[p + j*up] * x[b - j] with both roundings (no fused
   multiply-add), starting from acc = 0.0. Interior samples equal resample_poly's to float
   rounding.
5. Latency. y[n] is emitted as soon as x[b] has arrived (b as above, its last input), i.e.
   after N inputs every n with n*down + H <= N*up - 1 has been emitted.
6. Missing. y[n] is marked missing when any input x[i] with |i*up - n*down| <= up (within
   one input period of the output time) was missing.
7. End (`flush`, for files only; a live stream never ends): x[i] for i >= N equals x[N-1]
   (with its mark), and outputs are emitted up to n = ceil(N*up/down) - 1, the length
   resample_poly gives.

State between chunks: the last inputs that outputs still need (J + 2 samples and their marks),
the count of inputs and outputs so far, and the last finite value. Shapes: chunks (T,).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal as sps

MAX_RATIO_TERM = 1000          # largest up or down: the filter has 20*max(up, down)+1 taps
KAISER_BETA = 5.0              # resample_poly's default window
HALF_LEN_PER_RATE = 10         # H = 10 * max(up, down), resample_poly's default


def check_rate(fs: float, what: str = "sampling rate") -> float:
    """A finite, positive rate as float; otherwise a one-line ValueError naming it."""
    try:
        v = float(fs)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {fs!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a finite rate above 0 Hz, got {fs!r}")
    return v


def resample_ratio(fs_in: float, fs_out: float,
                   max_denominator: int = MAX_RATIO_TERM) -> tuple[int, int]:
    """(up, down) in lowest terms with fs_in * up / down == fs_out (e.g. 64 -> 125: 125, 64).

    Raises a one-line ValueError for a non-finite or non-positive rate, or when no fraction
    with terms <= max_denominator gives fs_out (e.g. 64.02 Hz; see runtime rate policy)."""
    fs_in = check_rate(fs_in, "input rate")
    fs_out = check_rate(fs_out, "output rate")
    r = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
    if (abs(float(r) * fs_in - fs_out) > 1e-9 * fs_out
            or max(r.numerator, r.denominator) > max_denominator):
        raise ValueError(f"cannot resample {fs_in:g} Hz to {fs_out:g} Hz: no exact ratio with "
                         f"terms up to {max_denominator}")
    return r.numerator, r.denominator


@lru_cache(maxsize=32)
def prototype_filter(up: int, down: int) -> np.ndarray:
    """h (2H+1,) float64: resample_poly's default low-pass, scaled by `up`."""
    m = max(up, down)
    h = sps.firwin(2 * HALF_LEN_PER_RATE * m + 1, 1.0 / m, window=("kaiser", KAISER_BETA))
    return np.asarray(h, np.float64) * up


@lru_cache(maxsize=32)
def polyphase_taps(up: int, down: int) -> np.ndarray:
    """(up, J) float64: row p holds h[p + j*up] for j = 0..J-1, zero past the filter's end."""
    h = prototype_filter(up, down)
    j = -(-len(h) // up)
    padded = np.zeros(up * j)
    padded[:len(h)] = h
    return padded.reshape(j, up).T.copy()


@dataclass
class StreamResampler:
    """Chunked polyphase resampling from fs_in to fs_out with missing-sample marks.

    push(chunk) -> (y, missing): the output samples that became computable, (M,) float64 and
    (M,) bool; any chunking of the same input gives the same concatenated output.
    flush() -> (y, missing): the tail of a finite recording (definition step 7).
    """

    fs_in: float
    fs_out: float
    up: int = field(init=False)
    down: int = field(init=False)

    def __post_init__(self):
        self.up, self.down = resample_ratio(self.fs_in, self.fs_out)
        self.identity = self.up == 1 and self.down == 1
        if not self.identity:
            self.taps = polyphase_taps(self.up, self.down)
            self.half = HALF_LEN_PER_RATE * max(self.up, self.down)
        self.n_in = 0                  # inputs received
        self.n_out = 0                 # outputs emitted
        self.last_finite = 0.0
        self.buf = np.zeros(0)         # cleaned inputs x[buf_start ...]
        self.buf_miss = np.zeros(0, dtype=bool)
        self.buf_start = 0
        self.flushed = False

    # ------------------------------------------------------------------ cleaning (step 3)
    def _clean(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        miss = ~np.isfinite(x)
        if not miss.any():
            if len(x):
                self.last_finite = float(x[-1])
            return x, miss
        idx = np.where(miss, -1, np.arange(len(x)))
        np.maximum.accumulate(idx, out=idx)       # index of the last finite sample so far
        vals = np.where(idx >= 0, x[np.maximum(idx, 0)], self.last_finite)
        if (~miss).any():
            self.last_finite = float(x[np.flatnonzero(~miss)[-1]])
        return vals, miss

    def push(self, chunk) -> tuple[np.ndarray, np.ndarray]:
        if self.flushed:
            raise ValueError("resampler already flushed: start a new stream")
        x = np.asarray(chunk, dtype=np.float64).reshape(-1)
        if len(x) == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        vals, miss = self._clean(x)
        if self.identity:
            self.n_in += len(x)
            self.n_out += len(x)
            return vals.copy(), miss
        if self.n_in == 0:                       # history: copies of the first sample
            hist = self.taps.shape[1] + 2
            self.buf = np.full(hist, vals[0])
            self.buf_miss = np.full(hist, miss[0])
            self.buf_start = -hist
        self.buf = np.concatenate([self.buf, vals])
        self.buf_miss = np.concatenate([self.buf_miss, miss])
        self.n_in += len(x)
        last = (self.n_in * self.up - 1 - self.half) // self.down   # step 5
        return self._emit(last)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """Emit the outputs that need inputs past the end, holding the last sample (step 7)."""
        if self.flushed or self.n_in == 0 or self.identity:
            self.flushed = True
            return np.zeros(0), np.zeros(0, dtype=bool)
        total = -(-self.n_in * self.up // self.down)
        pad = self.taps.shape[1] + 2
        self.buf = np.concatenate([self.buf, np.full(pad, self.buf[-1])])
        self.buf_miss = np.concatenate([self.buf_miss, np.full(pad, self.buf_miss[-1])])
        self.flushed = True
        return self._emit(total - 1)

    # ------------------------------------------------------------------ output (steps 4, 6)
    def _emit(self, last: int) -> tuple[np.ndarray, np.ndarray]:
        if last < self.n_out:
            return np.zeros(0), np.zeros(0, dtype=bool)
        n = np.arange(self.n_out, last + 1, dtype=np.int64)
        pos = n * self.down + self.half
        b = pos // self.up - self.buf_start                  # buffer index of x[b]
        p = pos % self.up
        jj = np.arange(self.taps.shape[1])
        prod = self.taps[p] * self.buf[b[:, None] - jj[None, :]]
        # cumsum adds strictly left to right: the order the definition (and the C port) uses.
        y = np.cumsum(prod, axis=1)[:, -1] if prod.shape[1] else np.zeros(len(n))
        # missing: any x[i] with |i*up - n*down| <= up, i.e. i in [ceil(t) - 1, floor(t) + 1]
        q, r = np.divmod(n * self.down, self.up)
        lo = q - 1 + (r > 0) - self.buf_start
        hi = q + 1 - self.buf_start
        cm = np.concatenate([[0], np.cumsum(self.buf_miss)])
        missing = (cm[hi + 1] - cm[lo]) > 0
        self.n_out = last + 1
        self._trim()
        return y, missing

    def _trim(self) -> None:
        """Drop inputs no future output needs (keeps J + 2 before the next output's support)."""
        nxt = self.n_out * self.down
        need = min((nxt + self.half) // self.up - self.taps.shape[1] + 1, nxt // self.up - 1) - 2
        drop = need - self.buf_start
        if drop > 0:
            self.buf = self.buf[drop:]
            self.buf_miss = self.buf_miss[drop:]
            self.buf_start += drop


def resample_stream(x: np.ndarray, fs_in: float, fs_out: float) -> tuple[np.ndarray, np.ndarray]:
    """A whole recording (T,) through the streaming resampler, flushed at the end.

    Returns (y, missing): (ceil(T*up/down),) float64 and bool; y has no NaN."""
    rs = StreamResampler(fs_in, fs_out)
    y1, m1 = rs.push(x)
    y2, m2 = rs.flush()
    return np.concatenate([y1, y2]), np.concatenate([m1, m2])
