"""numpy/scipy implementation of the signal contract in `spec.py`.

The watch only ever holds the current window, so filtering and normalisation are defined per
window (cut, then zero-phase band-pass, then z-score) and training uses these same functions.
Resampling happens on the stream before windowing (`resample.StreamResampler`, polyphase).

Shapes: a record is (T,), a batch of windows is (N, L).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as sps

try:        # the kernel behind scipy.signal.sosfilt (private: fall back to the public call)
    from scipy.signal._sosfilt import _sosfilt
except ImportError:                                   # pragma: no cover
    _sosfilt = None

from .resample import resample_ratio, resample_stream  # noqa: F401 (re-export)
from .spec import (FLAG_AMPLITUDE, FLAG_CLIPPING, FLAG_FLAT, FLAG_NAN_GAP, FLAG_TOO_SHORT,
                   SignalSpec)


# --------------------------------------------------------------------------- resampling
def resample(x: np.ndarray, fs_in: float, fs_out: float) -> tuple[np.ndarray, np.ndarray]:
    """A record (T,) through the one streaming resampler (`resample.py`), flushed at its end.

    Missing (non-finite) samples hold the last finite value and are reported as a boolean mask
    at the output rate (an output within one input period of a missing input), so a window that
    touched a gap is flagged rather than filled by interpolation across it.

    Returns (y, missing): y (T',) float64 without NaN and missing (T',) bool.
    """
    return resample_stream(x, fs_in, fs_out)


# --------------------------------------------------------------------------- windowing
def window_starts(n_samples: int, win: int, hop: int) -> np.ndarray:
    """Start indices of all full windows of length `win` with step `hop`. (K,) int64."""
    if n_samples < win:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - win + 1, hop, dtype=np.int64)


def frame(x: np.ndarray, starts: np.ndarray, win: int) -> np.ndarray:
    """Cut windows (K, win) out of a record (T,) at `starts` (copies)."""
    if len(starts) == 0:
        return np.zeros((0, win), dtype=x.dtype)
    return x[starts[:, None] + np.arange(win)[None, :]]


# --------------------------------------------------------------------------- filters
@lru_cache(maxsize=32)
def ppg_sos(spec: SignalSpec) -> np.ndarray:
    """Second-order sections of the PPG band-pass (Butterworth, order spec.ppg_filter_order)."""
    return sps.butter(spec.ppg_filter_order, spec.ppg_band_hz, btype="bandpass", fs=spec.ppg_fs,
                      output="sos")


@lru_cache(maxsize=32)
def ecg_sos(spec: SignalSpec) -> np.ndarray:
    """High-pass, then (optionally) the mains notch, as one cascade of second-order sections."""
    hp = sps.butter(spec.ecg_filter_order, spec.ecg_highpass_hz, btype="highpass", fs=spec.ecg_fs,
                    output="sos")
    if not spec.mains_hz:
        return hp
    b, a = sps.iirnotch(spec.mains_hz, spec.notch_q, fs=spec.ecg_fs)
    return np.vstack([hp, sps.tf2sos(b, a)])


@lru_cache(maxsize=32)
def _sos_state(sos_bytes: bytes, n_sections: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(sos, sosfilt_zi, odd-pad length) exactly as scipy's sosfiltfilt derives them, cached:
    sosfilt_zi solves a linear system per call, which costs more than filtering one window."""
    sos = np.frombuffer(sos_bytes, np.float64).reshape(n_sections, 6).copy()
    ntaps = 2 * n_sections + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return sos, sps.sosfilt_zi(sos), 3 * ntaps


def filter_windows(w: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Zero-phase filter each window of (N, L) independently: `scipy.signal.sosfiltfilt` with
    odd padding, bit for bit (same steps, the initial conditions cached)."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    sos = np.ascontiguousarray(sos, np.float64)
    sos, zi, pad = _sos_state(sos.tobytes(), len(sos))
    if w.shape[-1] <= pad:
        return sps.sosfiltfilt(sos, w, axis=-1)      # scipy's own error for too-short input
    ext = np.concatenate([2 * w[:, :1] - w[:, pad:0:-1], w,
                          2 * w[:, -1:] - w[:, -2:-(pad + 2):-1]], axis=-1)
    if _sosfilt is None:
        zi = zi.reshape(len(sos), 1, 2)
        y, _ = sps.sosfilt(sos, ext, axis=-1, zi=zi * ext[None, :, :1])
        y, _ = sps.sosfilt(sos, y[:, ::-1], axis=-1, zi=zi * y[None, :, -1:])
        return y[:, ::-1][:, pad:-pad]
    # sosfilt's own kernel on the (N, L) rows in place; zi (N, sections, 2) as sosfilt lays it
    # out. Skips sosfilt's validation, moveaxis and copies, which cost more than the filtering.
    _sosfilt(sos, ext, zi[None] * ext[:, :1, None])
    y = ext[:, ::-1].copy()
    _sosfilt(sos, y, zi[None] * y[:, :1, None])
    return y[:, ::-1][:, pad:-pad]


def mean_std(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) over the last axis of float64 (N, L), keepdims: the steps of numpy's own
    `mean` and `std` (pairwise sums, divide by L), bit for bit, sharing the mean and without
    their Python-side dispatch."""
    n = w.shape[-1]
    mu = np.add.reduce(w, axis=-1, keepdims=True)
    mu /= n
    d = w - mu
    np.multiply(d, d, out=d)
    var = np.add.reduce(d, axis=-1, keepdims=True)
    var /= n
    return mu, np.sqrt(var, out=var)


def zscore(w: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-window z-score of (N, L). A flat window maps to zeros, not NaN."""
    w = np.atleast_2d(w)
    if w.dtype != np.float64:
        mu = w.mean(axis=-1, keepdims=True)
        sd = w.std(axis=-1, keepdims=True)
        return (w - mu) / np.maximum(sd, eps)
    mu, sd = mean_std(w)
    d = w - mu
    d /= np.maximum(sd, eps, out=sd)
    return d


def preprocess_ppg_windows(raw: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """Raw PPG windows at spec.ppg_fs (N, L) -> model input (N, L) float32."""
    return zscore(filter_windows(raw, ppg_sos(spec)), spec.zscore_eps).astype(np.float32)


def preprocess_ecg_windows(raw: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """Raw ECG windows at spec.ecg_fs (N, L) -> encoder input (N, L) float32."""
    return zscore(filter_windows(raw, ecg_sos(spec)), spec.zscore_eps).astype(np.float32)


# --------------------------------------------------------------------------- quality
def constant_runs(x: np.ndarray, fs: float, min_run_s: float) -> np.ndarray:
    """(T,) bool: samples inside a run of exactly repeated values lasting >= min_run_s.

    Computed on the sensor's own samples, before resampling: a disconnected sensor repeats one
    ADC code exactly, while the resampled stream only repeats it up to rounding and ringing.
    """
    x = np.asarray(x).reshape(-1)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=bool)
    same = np.r_[False, x[1:] == x[:-1]]
    starts = np.flatnonzero(~same)
    lengths = np.diff(np.r_[starts, n])
    return np.repeat(lengths >= max(2, int(round(min_run_s * fs))), lengths)


def map_mask(mask: np.ndarray, fs_in: float, fs_out: float, n_out: int) -> np.ndarray:
    """Carry a per-sample bool mask from fs_in to the n_out samples of a stream at fs_out.

    Output n (time n / fs_out) takes the input samples on either side of it (floor and ceil of
    n * down / up, in exact integers, so the streaming runtime maps identically), clipped to the
    record."""
    if fs_in == fs_out and len(mask) == n_out:
        return mask
    up, down = resample_ratio(fs_in, fs_out)
    pos = np.arange(n_out, dtype=np.int64) * down
    lo = np.clip(pos // up, 0, len(mask) - 1)
    hi = np.clip(-(-pos // up), 0, len(mask) - 1)
    return mask[lo] | mask[hi]


def quality_flags(raw: np.ndarray, missing: np.ndarray | None, fs: float,
                  spec: SignalSpec, flat_mask: np.ndarray | None = None) -> np.ndarray:
    """Quality bitmask per raw window (N, L) -> (N,) uint8 (FLAG_* of spec.py).

    - nan_gap: any sample of the window was missing in the recording;
    - flat: negligible variance, or a constant run of >= spec.flat_run_s (sensor off), taken
      from `flat_mask` (N, L) when the caller computed it on the sensor's samples
      (see `constant_runs`), else searched in the window itself;
    - clipping: more than spec.clip_fraction of samples pinned at the window's min or max;
    - amplitude: after band-pass and z-score, a spike beyond spec.max_abs_z (a PPG pulse stays
      within about 4 sigma; motion spikes and electrical transients do not).
    """
    raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
    n, L = raw.shape
    flags = np.zeros(n, dtype=np.uint8)
    if n == 0:
        return flags
    if missing is not None:
        flags[np.logical_or.reduce(np.atleast_2d(missing), axis=-1)] |= FLAG_NAN_GAP
    mu, sd = mean_std(raw)
    scale = np.abs(mu[:, 0]) + 1.0
    flat = sd[:, 0] < spec.flat_rel_std * scale
    if flat_mask is None:
        flat_mask = np.stack([constant_runs(r, fs, spec.flat_run_s) for r in raw])
    # At least flat_run_s of the window inside a long constant run (not just one sample next
    # to one, which the resampling map can touch at a window edge).
    flat |= np.add.reduce(np.atleast_2d(flat_mask), axis=-1, dtype=np.intp) >= spec.flat_run_s * fs
    flags[flat] |= FLAG_FLAT
    lo = np.minimum.reduce(raw, axis=-1, keepdims=True)
    hi = np.maximum.reduce(raw, axis=-1, keepdims=True)
    tol = 1e-9 * np.maximum(hi - lo, 1e-12)
    pin = raw <= lo + tol
    pin |= raw >= hi - tol
    pinned = np.add.reduce(pin, axis=-1, dtype=np.intp) / L    # = the bool mean
    flags[(pinned > spec.clip_fraction) & ~flat] |= FLAG_CLIPPING
    return flags


def amplitude_flags(z: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """FLAG_AMPLITUDE where a preprocessed (z-scored) window (N, L) has a spike. (N,) uint8."""
    z = np.atleast_2d(z)
    hi = np.maximum(np.maximum.reduce(z, axis=-1), -np.minimum.reduce(z, axis=-1))  # = max |z|
    return np.where(hi > spec.max_abs_z, FLAG_AMPLITUDE, 0).astype(np.uint8)


# --------------------------------------------------------------------------- one window
def window_features(raw: np.ndarray, missing: np.ndarray, flat: np.ndarray,
                    spec: SignalSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw PPG windows at spec.ppg_fs (N, L), their missing and constant-run masks (N, L) ->
    (model input (N, L) float32, quality flags (N,) uint8). What training stores and what the
    streaming runtime feeds the model: one function."""
    raw = np.atleast_2d(raw)
    flags = quality_flags(raw, missing, spec.ppg_fs, spec, flat)
    z = (preprocess_ppg_windows(raw, spec) if len(raw)
         else np.zeros((0, raw.shape[-1]), np.float32))
    return z, (flags | amplitude_flags(z, spec)).astype(np.uint8)


# --------------------------------------------------------------------------- one record
def pad_to_window(x: np.ndarray, missing: np.ndarray, win: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat a too-short record cyclically up to one window (e.g. PPG-BP's 2.1 s segments).

    Tiling keeps the pulse shape and rate (a zero pad would not), and the window is flagged
    too_short so that users choose whether to keep it.
    """
    reps = int(np.ceil(win / max(len(x), 1)))
    return np.tile(x, reps)[:win], np.tile(missing, reps)[:win]


def ppg_windows(x: np.ndarray, fs: float, spec: SignalSpec, pad_short: bool = False,
                starts_s: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Cut a PPG record (T,) at rate `fs` into model inputs following `spec`.

    starts_s: window starts in seconds; default every spec.hop_s seconds.
    Returns dict with 'x' (K, spec.ppg_len) float32, 'start_s' (K,), 'flags' (K,) uint8.
    """
    y, miss = resample(x, fs, spec.ppg_fs)
    flat = map_mask(constant_runs(x, fs, spec.flat_run_s), fs, spec.ppg_fs, len(y))
    win = spec.ppg_len
    short = len(y) < win
    if short:
        if not pad_short or len(y) == 0:
            return {"x": np.zeros((0, win), np.float32), "start_s": np.zeros(0),
                    "flags": np.zeros(0, np.uint8), "too_short": np.array(True)}
        y, miss = pad_to_window(y, miss, win)
        flat = np.resize(flat, win)
    if starts_s is None:
        starts = window_starts(len(y), win, max(1, int(round(spec.hop_s * spec.ppg_fs))))
    else:
        starts = np.round(np.asarray(starts_s) * spec.ppg_fs).astype(np.int64)
        starts = starts[(starts >= 0) & (starts + win <= len(y))]
    z, flags = window_features(frame(y, starts, win), frame(miss, starts, win),
                               frame(flat, starts, win), spec)
    if short:
        flags |= FLAG_TOO_SHORT
    return {"x": z, "start_s": starts / spec.ppg_fs, "flags": flags.astype(np.uint8),
            "too_short": np.array(short)}


def ecg_windows(x: np.ndarray, fs: float, spec: SignalSpec,
                starts_s: np.ndarray) -> dict[str, np.ndarray]:
    """ECG windows aligned with PPG window starts (seconds). 'x' (K, spec.ecg_len) float32.

    Windows that run past the end of the ECG get flags with FLAG_NAN_GAP set and zeros.
    """
    y, miss = resample(x, fs, spec.ecg_fs)
    flat = map_mask(constant_runs(x, fs, spec.flat_run_s), fs, spec.ecg_fs, len(y))
    win = spec.ecg_len
    starts = np.round(np.asarray(starts_s) * spec.ecg_fs).astype(np.int64)
    ok = (starts >= 0) & (starts + win <= len(y))
    out = np.zeros((len(starts), win), np.float32)
    flags = np.full(len(starts), FLAG_NAN_GAP, np.uint8)
    if ok.any():
        raw = frame(y, starts[ok], win)
        f = quality_flags(raw, frame(miss, starts[ok], win), spec.ecg_fs, spec,
                          frame(flat, starts[ok], win))
        # Clipping is not a reason to distrust an ECG (QRS peaks often saturate), so only gaps
        # and flat leads count against it.
        f &= FLAG_NAN_GAP | FLAG_FLAT
        out[ok] = preprocess_ecg_windows(raw, spec)
        flags[ok] = f
    return {"x": out, "flags": flags}
