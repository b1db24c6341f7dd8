"""The classical-features encoder: `--encoder features` (alias `features:classical`).

A baseline that sits in the encoder column of every probe table (`anyppg probe` tasks and
`anyppg probe --diagnoses`): per window, a fixed vector of named PPG features computed with
numpy/scipy on the very windows the encoders see (band-passed, z-scored; see
`training.probe.baselines` for what that preprocessing removes), pooled and probed exactly like
an embedding.

  rate         spectral-peak rate (Welch, 0.5-3.5 Hz) and the beat rate
  variability  SD, CV, RMSSD, pNN50 and max/min of the beat intervals
  amplitude    pulse-amplitude CV
  respiration  respiratory rate, median of RIIV / RIAV / RIFV (baselines.rr_one)
  morphology   rise, width, decay, template skew/kurtosis, reflection, systolic area, harmonics
  quality      what motion bursts (large, slow, irregular) do to a window: envelope CV and log
               max/median of 0.5 s RMS blocks, the 0.3-0.8 Hz share of power, the share at the
               pulse rate's first three harmonics, the autocorrelation peak at beat lags, and
               the store's PPG quality flags (nan_gap, flat, clipping, amplitude) as 0/1

Variability, amplitude and morphology are `baselines.features` (the 'features' baseline of
the task probe), so the encoder is that baseline plus rate, respiration and quality. Windows
flagged too_short (tiled segments) are analysed on one tile (`baselines.segments`).

A feature undefined in a window (too few beats) is filled with that feature's median over the
windows embedded in the same call (label-free; 0 if undefined everywhere): probes of
embeddings take finite vectors. The beat count stays a feature, so "undefined" is visible.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

from edge_runtime.spec import FLAG_AMPLITUDE, FLAG_CLIPPING, FLAG_FLAT, FLAG_NAN_GAP

from . import baselines as B

NAME = "features:classical"
ALIASES = ("features", NAME)
QUALITY_NAMES = ("envelope_cv", "envelope_log_max_med", "low_band_frac", "harmonic_power_frac",
                 "acf_peak")
FLAG_BITS = {"flag_nan_gap": FLAG_NAN_GAP, "flag_flat": FLAG_FLAT, "flag_clipping": FLAG_CLIPPING,
             "flag_amplitude": FLAG_AMPLITUDE}
FEATURE_NAMES = ("hr_spectral_bpm", "resp_rate_bpm", *B.FEATURE_NAMES, *QUALITY_NAMES, *FLAG_BITS)
ENVELOPE_BLOCK_S = 0.5
LOW_BAND_HZ = (0.3, 0.8)          # below most pulse rates: where motion bursts put their power
HARMONIC_HALF_WIDTH_HZ = 0.1
BEAT_LAG_S = (B.MIN_BEAT_INTERVAL_S, 2.0)


def spectral_quality(S: np.ndarray, fs: float) -> np.ndarray:
    """(K, 1 + len(QUALITY_NAMES)): spectral-peak rate (bpm, as `baselines.hr_spectral_one`:
    same Welch settings and band) and QUALITY_NAMES of equal-length segments S (K, n), computed
    for all K at once; NaN where a segment is too short or flat."""
    S = np.asarray(S, float)
    K, n = S.shape
    out = np.full((K, 1 + len(QUALITY_NAMES)), np.nan)
    blk = int(round(ENVELOPE_BLOCK_S * fs))
    ok = np.ptp(S, axis=1) > 0
    if n < max(2 * blk, int(fs)) or not ok.any():
        return out
    S = S[ok]
    nper = min(n, int(8 * fs))
    f, p = sps.welch(S, fs=fs, nperseg=nper, noverlap=nper * 3 // 4, nfft=max(16384, nper),
                     detrend="constant", axis=-1)
    hr = (f >= B.HR_BAND_HZ[0]) & (f <= B.HR_BAND_HZ[1])
    f0 = f[hr][np.argmax(p[:, hr], axis=1)]
    full = (f >= LOW_BAND_HZ[0]) & (f <= 8.0)
    tot = np.maximum(p[:, full].sum(1), 1e-30)
    low = p[:, (f >= LOW_BAND_HZ[0]) & (f < LOW_BAND_HZ[1])].sum(1) / tot
    near = np.zeros(p.shape, bool)
    for h in (1, 2, 3):
        near |= np.abs(f[None, :] - h * f0[:, None]) <= HARMONIC_HALF_WIDTH_HZ
    harm = (p * (near & full[None, :])).sum(1) / tot
    k = n // blk
    rms = np.sqrt((S[:, :k * blk].reshape(len(S), k, blk) ** 2).mean(2))
    env_cv = rms.std(1) / rms.mean(1)
    env_ratio = np.log(rms.max(1) / np.maximum(np.median(rms, 1), 1e-12))
    xc = S - S.mean(1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(xc, 2 * n, axis=1)) ** 2, axis=1)[:, :n]
    lo, hi = int(BEAT_LAG_S[0] * fs), min(int(BEAT_LAG_S[1] * fs), n - 1)
    acf = ac[:, lo:hi].max(1) / ac[:, 0] if hi > lo else np.full(len(S), np.nan)
    out[ok] = np.stack([60.0 * f0, env_cv, env_ratio, low, harm, acf], 1)
    return out


def window_features(X: np.ndarray, flags: np.ndarray | None = None, fs: float = B.FS) -> np.ndarray:
    """(N, len(FEATURE_NAMES)) features of windows X (N, L); NaN where undefined."""
    X = np.asarray(X, np.float32)
    if len(X) == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    segs = B.segments(X, flags)
    spec = np.full((len(X), 1 + len(QUALITY_NAMES)), np.nan)
    lengths = np.array([len(s) for s in segs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for n in np.unique(lengths):              # one tile length per tiled record, else L
            idx = np.flatnonzero(lengths == n)
            spec[idx] = spectral_quality(np.stack([segs[i] for i in idx]), fs)
        resp = np.array([B.rr_one(s, fs)["rr-fusion"] for s in segs])
        hrv = B.features(X, flags, fs)
    fl = np.zeros(len(X), int) if flags is None else np.asarray(flags).astype(int)
    bits = np.stack([(fl & b) != 0 for b in FLAG_BITS.values()], 1).astype(float)
    return np.concatenate([spec[:, :1], resp[:, None], hrv, spec[:, 1:], bits], 1)


def fill_undefined(F: np.ndarray) -> np.ndarray:
    """F (N, D) with NaN/inf replaced by the column's median over the finite rows (0 if none)."""
    F = np.array(F, np.float64)
    bad = ~np.isfinite(F)
    if bad.any():
        F[bad] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nan_to_num(np.nanmedian(F, axis=0), nan=0.0)
        F = np.where(bad, med[None, :], F)
    return F


@dataclass
class FeatureEmbedder:
    """The embedder interface (training.probe.embedders) over `window_features`.

    uses_store_context: the callers pass the store's quality flags and PPG rate
    (`embedders.embed_windows`); without them, no flags and the default spec's rate.
    """

    name: str = NAME
    spec: None = None                   # any spec: the rate comes with the windows
    seen: list = field(default_factory=list)
    seen_known: bool = True             # nothing trained, nothing seen
    info: dict = field(default_factory=lambda: {"kind": "features", "features": list(FEATURE_NAMES)})
    uses_store_context: bool = True

    def embed(self, x: np.ndarray, flags: np.ndarray | None = None, fs: float | None = None) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 2:
            raise ValueError(f"{self.name}: expected windows (N, L), got {x.shape}")
        return fill_undefined(window_features(x, flags, fs or B.FS)).astype(np.float32)


def load_feature_embedder(spec: str, **_opts) -> FeatureEmbedder:
    if spec not in ALIASES:
        raise ValueError(f"encoder {spec!r}: the classical-features encoder is "
                         f"{' or '.join(repr(a) for a in ALIASES)}")
    return FeatureEmbedder()
