"""Classical signal-processing baselines, computed on the very windows the encoders see.

The store holds the model input: each window band-passed 0.5-8 Hz (3rd-order Butterworth,
zero-phase) and z-scored, at 125 Hz. That is a clean PPG as far as pulse timing and shape go,
so every classical method here runs on the preprocessed window itself (no access to the raw
recording): simple, and fair to both sides. Two consequences to keep in mind:

* the 0.5 Hz high-pass removes most of the respiratory baseline wander, so the intensity
  modulation (RIIV) is weak here; the z-score removes absolute amplitude (perfusion).
* PPG-BP windows are 2.1 s segments tiled to 10 s (flag too_short). A tiled window is periodic
  with the tile period, which quantises a spectral peak to multiples of 1/2.1 Hz and puts a
  false beat interval at every seam; for windows flagged too_short the methods here therefore
  run on one tile (`untile`, found by autocorrelation), not on the seams.

Direct estimators (no training): HR by the spectral peak (Welch, 0.5-3.5 Hz), NeuroKit2
(`ppg_peaks`, rate from the mean peak interval) and HeartPy (`heartpy.process`); respiratory
rate from RIIV / RIAV / RIFV (spectral peak in 0.1-0.5 Hz of each beat series resampled at
4 Hz) and their median. A method that fails on a window returns NaN there; the probe reports
its coverage and scores it on the windows it covered.

Hand-made features (`features`, FEATURE_NAMES): HRV (mean, SD of intervals, RMSSD, pNN50,
irregularity) and pulse morphology (rise time, width, decay, amplitude variation, template
skew/kurtosis, reflection ratio, harmonic ratio), fed to the same linear-probe protocol as the
embeddings (with median imputation of NaNs fitted on the training fold).
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from scipy import signal as sps

from edge_runtime.spec import FLAG_TOO_SHORT, SignalSpec

# Default rate of a window: the signal spec's. The probe passes its store's own rate.
FS = SignalSpec().ppg_fs
HR_BAND_HZ = (0.5, 3.5)
RR_BAND_HZ = (0.1, 0.5)
RESP_RESAMPLE_HZ = 4.0
MIN_BEAT_INTERVAL_S = 0.27        # up to ~220 bpm

# The direct estimators, by the label family they estimate.
DIRECT = {
    "hr": ("hr-spectral", "hr-neurokit2", "hr-heartpy"),
    "rr": ("rr-riiv", "rr-riav", "rr-rifv", "rr-fusion"),
}
# suffix of a direct estimator scored with its failures imputed by the training mean
IMPUTED = "+imp"
DISPLAY = {
    "subject-mean": "subject mean",
    "features": "HRV+morph. features",
    "hr-spectral": "spectral peak",
    "hr-neurokit2": "NeuroKit2",
    "hr-heartpy": "HeartPy",
    "rr-riiv": "RIIV",
    "rr-riav": "RIAV",
    "rr-rifv": "RIFV",
    "rr-fusion": "RR fusion (median)",
}


# --------------------------------------------------------------------------- tiles
def tile_period(x: np.ndarray, min_lag: int = 60, min_corr: float = 0.98) -> int | None:
    """Period (samples) of a tiled window, or None if the window is not periodic.

    A window made by tiling a short segment and then filtering is periodic in its interior up
    to the filter's edge transients; its normalised autocorrelation at the tile period is ~1,
    far above that at a beat period (beats differ from each other).
    """
    x = np.asarray(x, float)
    L = len(x)
    edge = min(100, L // 10)
    best, best_c = None, min_corr
    for P in range(min_lag, (L - 2 * edge) // 2):
        a = x[edge:L - P - edge]
        b = x[edge + P:L - edge]
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        if den <= 0:
            continue
        c = np.dot(a, b) / den
        if c > best_c + 1e-4:
            best, best_c = P, c
    return best


def untile(x: np.ndarray, flags: int) -> np.ndarray:
    """The part of a window a classical method should analyse: one tile for too_short windows
    (the second tile, clear of the filter's edge transient), else the whole window."""
    if not int(flags) & FLAG_TOO_SHORT:
        return x
    P = tile_period(x)
    if P is None:
        return x
    return x[P:2 * P] if 2 * P <= len(x) else x[:P]


def segments(X: np.ndarray, flags: np.ndarray | None = None) -> list[np.ndarray]:
    if flags is None:
        return [np.asarray(x, float) for x in X]
    return [np.asarray(untile(x, f), float) for x, f in zip(X, flags)]


# --------------------------------------------------------------------------- beats
def find_beats(x: np.ndarray, fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Systolic peaks and the preceding feet (sample indices) of a band-passed PPG segment.

    Peaks: local maxima at least MIN_BEAT_INTERVAL_S apart with a prominence of a quarter of
    the robust (3rd-97th percentile) range. Foot: the minimum between a peak and the previous
    one (or the segment start, up to one second back).
    """
    x = np.asarray(x, float)
    if len(x) < fs * 0.6 or np.ptp(x) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    rng = np.percentile(x, 97) - np.percentile(x, 3)
    peaks, _ = sps.find_peaks(x, distance=max(1, int(MIN_BEAT_INTERVAL_S * fs)), prominence=0.25 * rng)
    feet = np.empty(len(peaks), int)
    prev = np.concatenate([[max(0, peaks[0] - int(fs)) if len(peaks) else 0], peaks[:-1]])
    for i, (a, b) in enumerate(zip(prev, peaks)):
        feet[i] = a + int(np.argmin(x[a:b + 1]))
    # A peak whose foot is the segment start has no complete upstroke: drop it.
    ok = ~((feet == 0) & (peaks < fs * 0.15))
    return peaks[ok], feet[ok]


# --------------------------------------------------------------------------- HR
def hr_spectral_one(x: np.ndarray, fs: float = FS, band=HR_BAND_HZ) -> float:
    """Pulse rate (bpm) at the maximum of the Welch spectrum within `band`."""
    n = len(x)
    if n < fs:
        return float("nan")
    nper = min(n, int(8 * fs))
    f, p = sps.welch(x, fs=fs, nperseg=nper, noverlap=nper * 3 // 4, nfft=max(16384, nper),
                     detrend="constant")
    m = (f >= band[0]) & (f <= band[1])
    if not m.any() or not np.isfinite(p[m]).all() or p[m].max() <= 0:
        return float("nan")
    return float(60.0 * f[m][np.argmax(p[m])])


def hr_neurokit_one(x: np.ndarray, fs: float = FS) -> float:
    import neurokit2 as nk
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = nk.ppg_peaks(np.asarray(x, float), sampling_rate=int(round(fs)), method="elgendi")
        pk = np.asarray(info["PPG_Peaks"])
    except Exception:
        return float("nan")
    if len(pk) < 2:
        return float("nan")
    return float(60.0 / (np.mean(np.diff(pk)) / fs))


def hr_heartpy_one(x: np.ndarray, fs: float = FS) -> float:
    import heartpy as hp
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            _, m = hp.process(np.asarray(x, float), sample_rate=float(fs))
        bpm = float(m["bpm"])
    except Exception:
        return float("nan")
    return bpm if np.isfinite(bpm) and 20 <= bpm <= 250 else float("nan")


def hr_estimates(X: np.ndarray, flags: np.ndarray | None = None, fs: float = FS) -> dict[str, np.ndarray]:
    """All direct HR estimates (bpm) of windows X (N, L); NaN where a method failed."""
    segs = segments(X, flags)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import heartpy  # noqa: F401  (its import warns about pkg_resources)
    return {
        "hr-spectral": np.array([hr_spectral_one(s, fs) for s in segs]),
        "hr-neurokit2": np.array([hr_neurokit_one(s, fs) for s in segs]),
        "hr-heartpy": np.array([hr_heartpy_one(s, fs) for s in segs]),
    }


# --------------------------------------------------------------------------- RR
def _resp_rate_from_series(t: np.ndarray, v: np.ndarray, band=RR_BAND_HZ, fs_r=RESP_RESAMPLE_HZ) -> float:
    """Breaths/min at the spectral peak of a beat-wise series v(t) resampled at fs_r Hz."""
    if len(t) < 4 or t[-1] - t[0] < 4.0 or not np.all(np.isfinite(v)) or np.ptp(v) == 0:
        return float("nan")
    tt = np.arange(t[0], t[-1], 1.0 / fs_r)
    s = np.interp(tt, t, v)
    s = sps.detrend(s, type="linear") * np.hanning(len(s))
    nfft = 4096
    f = np.fft.rfftfreq(nfft, 1.0 / fs_r)
    p = np.abs(np.fft.rfft(s, nfft)) ** 2
    # The highest local maximum strictly inside the band; a spectrum that only rises toward a
    # band edge (trend, or a rate outside 6-30 /min) has no respiratory peak: NaN, not the edge.
    pk, _ = sps.find_peaks(p)
    pk = pk[(f[pk] > band[0]) & (f[pk] < band[1])]
    if len(pk) == 0 or p[pk].max() <= 0:
        return float("nan")
    return float(60.0 * f[pk[np.argmax(p[pk])]])


def rr_one(x: np.ndarray, fs: float = FS) -> dict[str, float]:
    pk, ft = find_beats(x, fs)
    nan = float("nan")
    if len(pk) < 4:
        return {"rr-riiv": nan, "rr-riav": nan, "rr-rifv": nan, "rr-fusion": nan}
    t = pk / fs
    riiv = (x[pk] + x[ft]) / 2.0                    # baseline (intensity) at each beat
    riav = x[pk] - x[ft]                            # pulse amplitude
    out = {"rr-riiv": _resp_rate_from_series(t, riiv), "rr-riav": _resp_rate_from_series(t, riav),
           "rr-rifv": _resp_rate_from_series(t[1:], np.diff(t))}   # interval ending at each beat
    vals = [v for v in out.values() if np.isfinite(v)]
    out["rr-fusion"] = float(np.median(vals)) if vals else nan
    return out


def rr_estimates(X: np.ndarray, flags: np.ndarray | None = None, fs: float = FS) -> dict[str, np.ndarray]:
    rows = [rr_one(s, fs) for s in segments(X, flags)]
    return {k: np.array([r[k] for r in rows]) for k in DIRECT["rr"]}


# --------------------------------------------------------------------------- features
FEATURE_NAMES = (
    "rate_bpm", "ibi_mean_s", "ibi_sd_s", "rmssd_s", "pnn50", "ibi_cv", "rmssd_norm",
    "ibi_range_ratio", "amp_cv", "rise_time_s", "rise_frac", "width50_s", "width50_frac",
    "decay_time_s", "template_skew", "template_kurt", "window_skew", "window_kurt",
    "reflection_ratio", "sys_area_frac", "harmonic_ratio", "n_beats_per_10s",
)


def _template(x, feet, length):
    beats = [x[a:a + length] for a in feet if a + length <= len(x)]
    if not beats:
        return None
    t = np.mean(beats, axis=0)
    return t - t[0]


def _skew_kurt(v: np.ndarray) -> tuple[float, float]:
    """scipy.stats.skew and .kurtosis (defaults: biased, excess) of v (L,) with plain numpy:
    scipy's per-call argument handling took about half of this module's feature time."""
    d = v - v.mean()
    m2 = np.mean(d ** 2)
    return float(np.mean(d ** 3) / m2 ** 1.5), float(np.mean(d ** 4) / m2 ** 2 - 3.0)


def features_one(x: np.ndarray, fs: float = FS) -> np.ndarray:
    """FEATURE_NAMES of one segment; NaN where undefined (too few beats)."""
    f = dict.fromkeys(FEATURE_NAMES, np.nan)
    x = np.asarray(x, float)
    if np.ptp(x) > 0:
        f["window_skew"], f["window_kurt"] = _skew_kurt(x)
    pk, ft = find_beats(x, fs)
    f["n_beats_per_10s"] = len(pk) * 10.0 * fs / len(x)
    if len(pk) >= 2:
        ibi = np.diff(pk) / fs
        d = np.diff(ibi)
        f["ibi_mean_s"] = ibi.mean()
        f["rate_bpm"] = 60.0 / ibi.mean()
        f["ibi_sd_s"] = ibi.std()
        f["ibi_cv"] = ibi.std() / ibi.mean()
        f["ibi_range_ratio"] = ibi.max() / ibi.min()
        if len(d):
            f["rmssd_s"] = np.sqrt(np.mean(d ** 2))
            f["rmssd_norm"] = f["rmssd_s"] / ibi.mean()
            f["pnn50"] = float(np.mean(np.abs(d) > 0.05))
    if len(pk) >= 1:
        amp = x[pk] - x[ft]
        f["amp_cv"] = amp.std() / amp.mean() if amp.mean() > 0 else np.nan
        rise = (pk - ft) / fs
        f["rise_time_s"] = rise.mean()
        widths = sps.peak_widths(x, pk, rel_height=0.5)[0] / fs
        f["width50_s"] = widths.mean()
        nxt = [ft[i + 1] for i in range(len(pk) - 1)]
        if nxt:
            f["decay_time_s"] = np.mean((np.array(nxt) - pk[:-1]) / fs)
        if len(pk) >= 2:
            ibi_m = np.mean(np.diff(pk)) / fs
            f["rise_frac"] = f["rise_time_s"] / ibi_m
            f["width50_frac"] = f["width50_s"] / ibi_m
            tpl = _template(x, ft, int(round(np.median(np.diff(ft)) if len(ft) > 1 else ibi_m * fs)))
            if tpl is not None and len(tpl) > 8 and np.ptp(tpl) > 0:
                f["template_skew"], f["template_kurt"] = _skew_kurt(tpl)
                ip = int(np.argmax(tpl))
                amp_t = tpl[ip] - tpl.min()
                later, _ = sps.find_peaks(tpl[ip + 1:])
                f["reflection_ratio"] = float((tpl[ip + 1 + later].max() - tpl.min()) / amp_t) if len(later) else 0.0
                pos = tpl - tpl.min()
                f["sys_area_frac"] = float(pos[:ip + 1].sum() / pos.sum()) if pos.sum() > 0 else np.nan
            hr_hz = 1.0 / ibi_m
            nfft = 16384
            spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft)) ** 2
            fr = np.fft.rfftfreq(nfft, 1.0 / fs)

            def band_power(c):
                m = np.abs(fr - c) <= 0.15
                return spec[m].max() if m.any() else np.nan
            p1, p2 = band_power(hr_hz), band_power(2 * hr_hz)
            f["harmonic_ratio"] = float(p2 / p1) if p1 and p1 > 0 else np.nan
    return np.array([f[k] for k in FEATURE_NAMES], float)


def features(X: np.ndarray, flags: np.ndarray | None = None, fs: float = FS) -> np.ndarray:
    """(N, len(FEATURE_NAMES)) hand-made features; NaN where undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([features_one(s, fs) for s in segments(X, flags)]) if len(X) else \
            np.zeros((0, len(FEATURE_NAMES)))
