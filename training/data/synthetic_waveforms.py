"""Waveform building blocks of the synthetic generator (`training.data.synthetic`).

Everything here is vectorised over beats: a beat's waveform is a sum of a few Gaussians whose
amplitudes, centres and widths are per-beat arrays. Each component is evaluated on a (B, L) grid
of sample times around its centre in every beat and all are scattered into the output with one
`np.bincount`. There is no Python loop over samples or beats; the only loops are over the
handful of Gaussian components and of artefact episodes.

Shapes: B = beats, L = samples in one beat's support, T = samples of the output signal.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from training.data.synthetic import SubjectTraits

# ---------------------------------------------------------------------------------------------
# Slow random processes
# ---------------------------------------------------------------------------------------------


def sinusoid_noise(rng: np.random.Generator, t: np.ndarray, f_lo: float, f_hi: float,
                   k: int = 8, tilt: float = 0.0) -> np.ndarray:
    """Band-limited random process as a sum of `k` random sinusoids (spectral representation).

    t: (T,) seconds. Returns (T,) with unit standard deviation in expectation.
    Frequencies are log-uniform in [f_lo, f_hi]; amplitudes ~ |N(0,1)| * f**-tilt.

    Why sinusoids rather than filtered white noise: the number of random draws does not depend
    on len(t), so a subject's slow processes (HR drift, Mayer waves, breathing-rate drift) are
    the same function of time whatever the record duration or sampling rate, and evaluation
    on a coarse grid is cheap and exact (no filter transients, no FFT wrap-around).
    """
    f = np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), k))
    ph = rng.uniform(0.0, 2 * np.pi, k)
    a = np.abs(rng.standard_normal(k)) * f ** (-tilt) + 1e-3
    a = a / np.sqrt(0.5 * np.sum(a * a))
    return np.sin(2 * np.pi * f[:, None] * np.asarray(t)[None, :] + ph[:, None]).T @ a


def raised_cosine_envelope(t: np.ndarray, t0: float, t1: float, ramp_s: float) -> np.ndarray:
    """(T,) envelope: 0 outside [t0, t1], 1 inside, with raised-cosine ramps of `ramp_s`."""
    ramp = max(min(ramp_s, 0.5 * (t1 - t0)), 1e-6)
    up = np.clip((t - t0) / ramp, 0.0, 1.0)
    down = np.clip((t1 - t) / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


# ---------------------------------------------------------------------------------------------
# Per-beat rendering
# ---------------------------------------------------------------------------------------------


def render_gaussian_beats(times: np.ndarray, amps: np.ndarray, mus: np.ndarray, sigmas: np.ndarray,
                          n: int, fs: float, n_sigma: float = 4.5) -> np.ndarray:
    """Sum over beats of sum-of-Gaussian waveforms, sampled on a grid of n samples at fs.

    times: (B,) beat reference times (s). amps, mus, sigmas: (B, J) per-beat components, mus
    relative to the beat time. Each component is evaluated on its own (B, L_j) grid covering
    +-n_sigma of its widest sigma around its centre, so a narrow QRS costs a few samples per
    beat rather than the whole beat. Returns (n,).
    """
    centres = np.asarray(times, dtype=np.float64)[:, None] + mus            # (B, J)
    t_end = (n - 1) / fs
    pad = 0                                 # samples before 0 that some component reaches
    parts = []
    for j in range(amps.shape[1]):          # a handful of components, not a loop over beats
        half = n_sigma * float(sigmas[:, j].max(initial=0.0))
        keep = (centres[:, j] + half >= 0) & (centres[:, j] - half <= t_end) & (amps[:, j] != 0)
        if not keep.any():
            continue
        c, a, sg = centres[keep, j:j + 1], amps[keep, j:j + 1], sigmas[keep, j:j + 1]
        L = int(np.ceil(2 * half * fs)) + 1
        k0 = np.ceil((c - half) * fs)                                       # (B_j, 1)
        # Offsets from each centre in float32: exp is the cost, and 1e-7 relative is plenty.
        inv = (1.0 / sg).astype(np.float32)
        z = ((k0 / fs - c) / sg).astype(np.float32) + np.arange(L, dtype=np.float32) * (inv / np.float32(fs))
        w = a.astype(np.float32) * np.exp(np.float32(-0.5) * z * z)        # (B_j, L)
        k0 = k0.astype(np.int64)
        pad = max(pad, -int(k0.min()))
        parts.append((k0, L, w))
    if not parts:
        return np.zeros(n)
    # One scatter-add for everything; samples before 0 land in [0, pad) and those after the end
    # beyond pad + n, and both are cut off.
    idx = np.concatenate([(k0 + pad + np.arange(L)).ravel() for k0, L, _ in parts])
    wts = np.concatenate([w.ravel() for _, _, w in parts])
    return np.bincount(idx, weights=wts, minlength=pad + n)[pad:pad + n]


def smooth_noise(rng: np.random.Generator, t: np.ndarray, f_lo: float, f_hi: float, k: int = 8,
                 tilt: float = 0.0) -> np.ndarray:
    """`sinusoid_noise` on a dense uniform grid t (T,): evaluated at >= 16 points per cycle of
    f_hi and linearly interpolated (error < 1 %), which is several times cheaper at 125-500 Hz."""
    if t.size < 2:
        return sinusoid_noise(rng, t, f_lo, f_hi, k, tilt)
    m = int(np.ceil((t[-1] - t[0]) * f_hi * 16)) + 2
    if m >= t.size:
        return sinusoid_noise(rng, t, f_lo, f_hi, k, tilt)
    tc = np.linspace(t[0], t[-1], m)
    return np.interp(t, tc, sinusoid_noise(rng, tc, f_lo, f_hi, k, tilt))


# ---------------------------------------------------------------------------------------------
# ECG morphology
# ---------------------------------------------------------------------------------------------

def ecg_beat_components(rr_prev: np.ndarray, is_af: np.ndarray, is_ect: np.ndarray,
                        resp: np.ndarray, r_amp: float, t_amp: float, pr_s: float, qtc_s: float,
                        pvc_sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian components (P, Q, R, S, T-up, T-down) of each beat relative to its R peak.

    rr_prev: (B,) preceding RR (s); is_af, is_ect: (B,) bool; resp: (B,) respiration at the beat.
    Returns amps, mus, sigmas, each (B, 6), in mV and seconds.
    """
    B = rr_prev.shape[0]
    rr = np.clip(rr_prev, 0.3, 1.6)
    qt = qtc_s * np.sqrt(rr)                       # Bazett: QT shortens with RR
    # Respiration rotates the cardiac axis -> QRS amplitude modulation (ECG-derived respiration).
    r = r_amp * (1.0 + 0.08 * resp)
    amps = np.empty((B, 6)); mus = np.empty((B, 6)); sig = np.empty((B, 6))
    amps[:] = np.stack([0.12 * np.ones(B), -0.10 * r, r, -0.25 * r,
                        0.75 * t_amp * np.ones(B), 0.45 * t_amp * np.ones(B)], axis=1)
    mus[:] = np.stack([np.full(B, 0.05 - pr_s), np.full(B, -0.024), np.zeros(B),
                       np.full(B, 0.026), qt - 0.11, qt - 0.055], axis=1)
    sig[:] = np.array([0.022, 0.008, 0.0095, 0.010, 0.048, 0.028])
    # AF: no organised atrial depolarisation -> no P wave (f-waves are added to the baseline).
    amps[is_af, 0] = 0.0
    # Premature ventricular beat: no P, a wide bizarre QRS, a discordant (opposite) T wave.
    if is_ect.any():
        e = is_ect
        amps[e, 0] = 0.0
        amps[e, 1] = 0.0
        amps[e, 2] = 1.4 * pvc_sign * r_amp
        amps[e, 3] = -0.35 * pvc_sign * r_amp
        amps[e, 4] = -0.9 * pvc_sign * abs(t_amp) - 0.2 * pvc_sign * r_amp
        amps[e, 5] = 0.0
        sig[e, 2] = 0.030
        sig[e, 3] = 0.030
        mus[e, 3] = 0.07
        sig[e, 4] = 0.060
        mus[e, 4] = qt[e] - 0.09
    return amps, mus, sig


def fibrillatory_waves(rng: np.random.Generator, t: np.ndarray, amp_mv: float) -> np.ndarray:
    """(T,) atrial f-waves: 4.5-8 Hz oscillation with wandering rate and amplitude."""
    f0 = rng.uniform(4.5, 7.5)
    f = f0 + 0.6 * smooth_noise(rng, t, 0.05, 0.5, k=4)
    dt = t[1] - t[0] if t.size > 1 else 0.0
    phase = 2 * np.pi * np.cumsum(f) * dt + rng.uniform(0, 2 * np.pi)
    env = 1.0 + 0.4 * smooth_noise(rng, t, 0.1, 1.0, k=4)
    return amp_mv * np.clip(env, 0.2, None) * (np.sin(phase) + 0.3 * np.sin(2 * phase + 1.0))


# ---------------------------------------------------------------------------------------------
# PPG morphology
# ---------------------------------------------------------------------------------------------

def ppg_beat_components(amp: np.ndarray, rr_expect: np.ndarray, sbp: np.ndarray, stiffness: float,
                        sys_sigma_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian components of each pulse relative to its foot (the tangent-intersection onset).

    amp: (B,) pulse amplitude; rr_expect: (B,) local mean RR (s); sbp: (B,) SBP at the beat.
    Returns amps, mus, sigmas, each (B, 4).

    Model choice: the forward (systolic) wave is followed by a wave reflected at the periphery.
    Its delay is the return time of the reflection, 2*L/PWV: stiff arteries (age) and high
    pressure raise PWV, so the reflected wave arrives earlier, merges into systole (late systolic
    augmentation) and the dicrotic notch that separated the two in a young subject flattens out.
    Pulse timing also scales mildly with RR (ejection shortens at high heart rate).
    """
    B = amp.shape[0]
    ts = np.clip((rr_expect / 0.85) ** 0.5, 0.75, 1.25)           # (B,) time scale
    s1 = sys_sigma_s * np.clip(ts, 0.9, 1.1)
    mu1 = 2.0 * s1          # the tangent at the steepest upstroke (mu - sigma) crosses 0 at mu - 2 sigma
    st = float(np.clip(stiffness, 0.0, 1.0))
    delay = np.clip((0.27 - 0.15 * st - 0.0008 * (sbp - 120.0)) * ts, 0.08, 0.36)
    a_ref = 0.32 + 0.30 * st                  # augmentation grows with stiffness ...
    s_ref = (0.05 + 0.05 * st) * ts           # ... and the reflected wave smears out
    one = np.ones(B)
    # Systolic peak, its slower decline (ejection continues after the peak), reflected wave,
    # diastolic run-off (Windkessel discharge).
    amps = np.stack([one, 0.45 * one, a_ref * one, 0.2 * one], axis=1)
    mus = np.stack([mu1, mu1 + 0.09 * ts, mu1 + delay, mu1 + delay + 0.12 * ts], axis=1)
    sig = np.stack([s1, 0.07 * ts, s_ref, 0.18 * ts], axis=1)
    return amps * amp[:, None], mus, sig


# ---------------------------------------------------------------------------------------------
# Whole signals
# ---------------------------------------------------------------------------------------------


def _span(a: float, b: float, fs: float, n: int) -> slice:
    return slice(min(max(int(a * fs), 0), n), min(max(int(np.ceil(b * fs)), 0), n))


def ppg_signal(rng: np.random.Generator, n: int, fs: float, tr: "SubjectTraits", feet: np.ndarray,
               amp_b: np.ndarray, rr_expect: np.ndarray, sbp_b: np.ndarray, t_c: np.ndarray,
               resp_c: np.ndarray, motion_eps: np.ndarray, saturation_eps: np.ndarray,
               rail: float) -> np.ndarray:
    """(n,) PPG at fs: pulses at `feet` (B,) plus respiration, wander, noise and artefacts.

    amp_b, rr_expect, sbp_b: (B,) per pulse; t_c, resp_c: (C,) control grid and respiration;
    *_eps: (K, 2) episodes in seconds. The result is clipped to +-rail (the ADC range).
    """
    tp = np.arange(n) / fs
    amps, mus, sig = ppg_beat_components(amp_b, rr_expect, sbp_b, tr.stiffness, tr.sys_sigma_s)
    ppg = render_gaussian_beats(feet, amps, mus, sig, n, fs)
    # RIIV: venous return / intrathoracic pressure shifts the baseline with each breath.
    ppg += tr.riiv * tr.ppg_amp * np.interp(tp, t_c, resp_c)
    ppg += 0.15 * tr.ppg_amp * np.interp(tp, t_c, sinusoid_noise(rng, t_c, 0.01, 0.12, 6))
    ppg += tr.ppg_noise * tr.ppg_amp * rng.standard_normal(n)
    for a, b in motion_eps:                 # motion bursts: large, low-frequency, irregular
        sl = _span(a, b, fs, n)
        burst = smooth_noise(rng, tp[sl], 0.2, 4.0, 12, tilt=0.7) + 0.5 * rng.standard_normal()
        ppg[sl] += rng.uniform(1.5, 5.0) * tr.ppg_amp * burst * raised_cosine_envelope(tp[sl], a, b, 0.5)
    for a, b in saturation_eps:             # ambient light / lost contact drives the ADC onto a rail
        sl = _span(a, b, fs, n)
        side = 1.0 if rng.uniform() < 0.6 else -1.0
        ppg[sl] += side * 2.5 * rail * raised_cosine_envelope(tp[sl], a, b, 0.3)
    return np.clip(ppg, -rail, rail)


def ecg_signal(rng: np.random.Generator, n: int, fs: float, tr: "SubjectTraits", r_times: np.ndarray,
               rr_prev: np.ndarray, is_af: np.ndarray, is_ect: np.ndarray, resp_b: np.ndarray,
               t_c: np.ndarray, resp_c: np.ndarray, mains_hz: float, af_eps: np.ndarray,
               motion_eps: np.ndarray) -> np.ndarray:
    """(n,) ECG (mV) at fs: beats at `r_times` (B,) plus wander, noise, mains, f-waves, motion.

    rr_prev, is_af, is_ect, resp_b: (B,) per beat; t_c, resp_c: (C,) control grid and
    respiration; *_eps: (K, 2) episodes in seconds.
    """
    te = np.arange(n) / fs
    amps, mus, sig = ecg_beat_components(rr_prev, is_af, is_ect, resp_b, tr.r_amp, tr.t_amp,
                                         tr.pr_s, tr.qtc_s, tr.pvc_sign)
    ecg = render_gaussian_beats(r_times, amps, mus, sig, n, fs)
    ecg += 0.05 * np.interp(te, t_c, resp_c)            # respiratory baseline wander
    ecg += 0.1 * np.interp(te, t_c, sinusoid_noise(rng, t_c, 0.02, 0.4, 6))
    ecg += tr.ecg_noise_mv * rng.standard_normal(n)
    mains_phase = rng.uniform(0, 2 * np.pi)   # drawn always: mains_hz must not shift the stream
    if 0 < mains_hz < fs / 2:               # mains interference only where the rate can hold it
        ecg += tr.mains_mv * np.sin(2 * np.pi * mains_hz * te + mains_phase)
    for a, b in af_eps:
        sl = _span(a, b, fs, n)
        if sl.stop > sl.start:
            ecg[sl] += fibrillatory_waves(rng, te[sl], rng.uniform(0.03, 0.1)) \
                * raised_cosine_envelope(te[sl], a, b, 0.2)
    for a, b in motion_eps:                 # electrode motion + muscle (EMG) noise
        sl = _span(a, b, fs, n)
        emg = np.diff(rng.standard_normal(sl.stop - sl.start + 1))
        ecg[sl] += raised_cosine_envelope(te[sl], a, b, 0.5) \
            * (0.3 * smooth_noise(rng, te[sl], 0.3, 3.0, 8) + 0.05 * emg)
    return ecg * tr.ecg_polarity
