"""Synthetic wearable PPG with a matching 3-axis accelerometer: what a watch sees.

The resting-patient generator (`training.data.synthetic`) covers 50-110 bpm at rest. A watch
also sees exercise: HR from 40 to 220 bpm that ramps up with effort and decays in recovery,
motion artefacts whose spectrum overlaps the pulse (arm swing and step cadence at 1-3 Hz, the
very band of a running heart), low perfusion, ambient-light steps, wrist rather than finger
pulse shapes and sensor rates from 25 to 256 Hz. One call, `generate_wrist_subject`, simulates
one subject and returns a `Record` with

  signals  'ppg' and 'accel_x', 'accel_y', 'accel_z' (g) at the subject's sensor rate
  series   hr (bpm, 1 Hz), rr (breaths/min), quality (1 usable / 0 artefact-dominated or
           clipped), af (1 inside atrial fibrillation), activity (0 rest .. 1 full effort)

A subject's recording is a sequence of activity phases (rest, walk, run, arm exercise,
gestures). HR follows each phase's target through first-order kinetics (faster on the way up
than in recovery). Motion is built once, as the acceleration of the wrist (swing harmonics at
the cadence, step impacts, random jolts, slow orientation changes), and the PPG artefact is a
subject-specific filtered mixture of that acceleration plus a part no accelerometer sees, so a
motion-aware model has something real, but not everything, to learn from the accelerometer.

Atrial fibrillation (`af=` in the input spec, the share of wearers with it; 0 by default, which
draws nothing and leaves the version-1 cohorts exactly as they were): an AF wearer is in AF for
the whole recording or for one episode of it. Inside, beats come irregularly irregular (RR drawn
independently, log-normal around the ventricular rate, which follows the same exercise HR
process times a per-wearer factor) and each pulse's amplitude follows its preceding RR
(Frank-Starling: a short RR fills the ventricle less), as in the resting generator. The hr label
stays the rate of the RR interval holding each 1-s bin centre, so a window's label is its mean
ventricular rate, what a watch should show during AF.

Deterministic in (seed, subject_index). Reader interface for `anyppg data prepare --source
synthetic-wrist`: `discover('subjects=200,minutes=8,seed=0')` -> unit strings
'synthetic-wrist:seed=0:subject=7:minutes=8', `read_unit(unit)` -> [Record]. The store resamples
each record from its sensor rate with the project's one preprocessing
(`edge_runtime.preprocess.ppg_windows`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from training.data import synthetic_waveforms as wf
from training.data.records import ReaderError, Record, Series, Signal
from training.data.synthetic import _parse_pairs

GENERATOR_VERSION = "anyppg-synthetic-wrist-1"
SENSOR_RATES_HZ = (25.0, 32.0, 50.0, 64.0, 100.0, 125.0, 128.0, 200.0, 256.0)
ACCEL_AXES = ("accel_x", "accel_y", "accel_z")
_CTRL_FS = 4.0
# Activity kinds: (relative intensity range, step cadence range in Hz or None, swing kind).
ACTIVITIES = {
    "rest": ((0.0, 0.05), None),
    "gesture": ((0.0, 0.15), None),
    "walk": ((0.15, 0.4), (1.5, 2.1)),
    "run": ((0.45, 1.0), (2.3, 3.1)),
    "arms": ((0.3, 0.85), (1.0, 3.0)),
}


@dataclass(frozen=True)
class WristConfig:
    """Ranges of the per-subject traits (defaults: adults from sedentary to athletes)."""

    rest_hr: tuple[float, float] = (42.0, 95.0)
    max_hr: tuple[float, float] = (150.0, 220.0)
    hr_limits: tuple[float, float] = (38.0, 222.0)
    tau_up_s: tuple[float, float] = (15.0, 45.0)
    tau_down_s: tuple[float, float] = (30.0, 90.0)
    phase_len_s: tuple[float, float] = (30.0, 150.0)
    active_fraction: float = 0.7            # share of phases that are walk / run / arms
    wrist_fraction: float = 0.75            # share of subjects measured at the wrist (else finger)
    perfusion: tuple[float, float] = (0.05, 1.5)      # pulse amplitude, log-uniform
    noise: tuple[float, float] = (0.003, 0.03)        # white sensor noise (absolute)
    motion_gain: tuple[float, float] = (0.2, 8.0)     # artefact per g, x pulse amp, log-uniform
    jolts_per_min: tuple[float, float] = (0.0, 3.0)
    light_steps_per_min: tuple[float, float] = (0.0, 1.0)
    rail: float = 12.0                      # ADC range +-rail (pulse amplitude is ~1 at most)
    bad_ratio: float = 1.5                  # artefact rms / pulse rms above this -> quality 0
    af_fraction: float = 0.0                # share of wearers with atrial fibrillation
    af_permanent: float = 0.5               # of those, share in AF the whole recording
    af_episode: tuple[float, float] = (0.3, 0.7)      # else one episode: its share of the recording
    af_rr_cv: tuple[float, float] = (0.15, 0.30)      # RR coefficient of variation in AF
    af_rate_factor: tuple[float, float] = (1.0, 1.35)  # ventricular rate / the sinus HR process


@dataclass(frozen=True)
class WristTraits:
    """One simulated wearer, drawn by `draw_wrist_traits`; stored in Record.meta['traits']."""

    fs: float                 # sensor rate, Hz
    rest_hr: float
    max_hr: float
    tau_up_s: float
    tau_down_s: float
    resp_rest: float          # breaths/min at rest
    wrist: bool               # wrist (smooth, weak notch) or finger pulse shape
    perfusion: float          # pulse amplitude
    noise: float
    motion_gain: float        # artefact amplitude per g of wrist acceleration, x perfusion
    artefact_cutoff_hz: float  # tissue/sensor coupling low-pass of the artefact
    unseen_fraction: float    # share of the artefact the accelerometer does not see
    jolts_per_min: float
    light_steps_per_min: float
    notch_depth: float        # dicrotic wave amplitude relative to the systolic one
    sys_sigma_s: float


def _log_uniform(u: float, lo: float, hi: float) -> float:
    return float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u))


def draw_wrist_traits(rng: np.random.Generator, cfg: WristConfig) -> WristTraits:
    """Draw one wearer with a fixed number of draws (traits depend only on the stream)."""
    u = rng.uniform(size=16)
    wrist = bool(u[5] < cfg.wrist_fraction)
    rest = cfg.rest_hr[0] + (cfg.rest_hr[1] - cfg.rest_hr[0]) * u[1]
    return WristTraits(
        fs=float(SENSOR_RATES_HZ[int(u[0] * len(SENSOR_RATES_HZ))]),
        rest_hr=float(rest),
        max_hr=float(max(rest + 60.0, cfg.max_hr[0] + (cfg.max_hr[1] - cfg.max_hr[0]) * u[2])),
        tau_up_s=float(cfg.tau_up_s[0] + (cfg.tau_up_s[1] - cfg.tau_up_s[0]) * u[3]),
        tau_down_s=float(cfg.tau_down_s[0] + (cfg.tau_down_s[1] - cfg.tau_down_s[0]) * u[4]),
        resp_rest=float(10.0 + 8.0 * u[6]), wrist=wrist,
        perfusion=_log_uniform(u[7], *cfg.perfusion),
        noise=_log_uniform(u[8], *cfg.noise),
        motion_gain=_log_uniform(u[9], *cfg.motion_gain),
        artefact_cutoff_hz=float(1.5 + 5.0 * u[10]),
        unseen_fraction=float(0.1 + 0.4 * u[11]),
        jolts_per_min=float(cfg.jolts_per_min[0] + (cfg.jolts_per_min[1] - cfg.jolts_per_min[0]) * u[12]),
        light_steps_per_min=float(cfg.light_steps_per_min[1] * u[13] ** 2),
        notch_depth=float((0.08 + 0.25 * u[14]) if wrist else (0.3 + 0.35 * u[14])),
        sys_sigma_s=float((0.06 + 0.03 * u[15]) if wrist else (0.04 + 0.02 * u[15])),
    )


# ---------------------------------------------------------------------------------------------
# Activity, heart rate and respiration on the control grid
# ---------------------------------------------------------------------------------------------

@dataclass
class Phase:
    start: float
    end: float
    kind: str
    intensity: float
    cadence_hz: float        # step cadence (0 without a periodic movement)


def draw_phases(rng: np.random.Generator, cfg: WristConfig, duration_s: float) -> list[Phase]:
    """Consecutive activity phases covering [0, duration_s); active and quiet phases alternate
    loosely so that each recording holds ramps up and recoveries."""
    phases, t = [], 0.0
    active_kinds = ("walk", "run", "arms")
    while t < duration_s:
        length = rng.uniform(*cfg.phase_len_s)
        kind = (active_kinds[rng.integers(3)] if rng.uniform() < cfg.active_fraction
                else ("rest", "gesture")[rng.integers(2)])
        (lo, hi), cad = ACTIVITIES[kind]
        phases.append(Phase(t, min(t + length, duration_s), kind, float(rng.uniform(lo, hi)),
                            float(rng.uniform(*cad)) if cad else 0.0))
        t += length
    return phases


def _phase_value(t: np.ndarray, phases: list[Phase], field: str) -> np.ndarray:
    out = np.zeros(t.shape)
    for p in phases:
        out[(t >= p.start) & (t < p.end)] = getattr(p, field)
    return out


def hr_process(rng: np.random.Generator, tr: WristTraits, cfg: WristConfig, t: np.ndarray,
               intensity: np.ndarray) -> np.ndarray:
    """(C,) HR on the control grid: first-order kinetics toward rest + intensity*(max - rest),
    faster rising than recovering, with slow drift and breathing-band variability."""
    target = tr.rest_hr + intensity * (tr.max_hr - tr.rest_hr)
    target = target * (1 + 0.04 * wf.sinusoid_noise(rng, t, 0.003, 0.03, 4))
    hr = np.empty_like(t)
    hr[0] = target[0]
    dt = 1.0 / _CTRL_FS
    for i in range(1, len(t)):             # a recursive filter: the 4 Hz grid keeps this short
        tau = tr.tau_up_s if target[i] > hr[i - 1] else tr.tau_down_s
        hr[i] = hr[i - 1] + (target[i] - hr[i - 1]) * dt / tau
    hr *= 1 + 0.02 * wf.sinusoid_noise(rng, t, 0.05, 0.3, 6) * np.exp(-2.0 * intensity)
    return np.clip(hr, *cfg.hr_limits)


def beat_times(rng: np.random.Generator, t: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """(B,) pulse times by integral pulse frequency modulation of hr (C,) plus a little jitter."""
    phase = np.cumsum(hr / 60.0) / _CTRL_FS + rng.uniform()
    k = np.arange(np.ceil(phase[0]), np.floor(phase[-1]) + 1)
    tb = np.interp(k, phase, t)
    rr = np.diff(tb, prepend=tb[0] - 60.0 / hr[0])
    return np.sort(tb + 0.01 * rr * rng.standard_normal(tb.size))


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AFTraits:
    """One wearer's atrial fibrillation: the episode [start_s, end_s) and its beat statistics."""

    start_s: float
    end_s: float
    rr_cv: float
    rate_factor: float


def draw_af(rng: np.random.Generator, cfg: WristConfig, duration_s: float) -> AFTraits | None:
    """AF or not (a fixed number of draws from its own stream); None for a sinus wearer."""
    u = rng.uniform(size=6)
    if not u[0] < cfg.af_fraction:
        return None
    if u[1] < cfg.af_permanent:
        start, end = -5.0, duration_s + 5.0          # the control grid's whole span
    else:
        share = cfg.af_episode[0] + (cfg.af_episode[1] - cfg.af_episode[0]) * u[2]
        start = (1.0 - share) * duration_s * u[3]
        end = start + share * duration_s
    return AFTraits(start_s=float(start), end_s=float(end),
                    rr_cv=float(cfg.af_rr_cv[0] + (cfg.af_rr_cv[1] - cfg.af_rr_cv[0]) * u[4]),
                    rate_factor=float(cfg.af_rate_factor[0]
                                      + (cfg.af_rate_factor[1] - cfg.af_rate_factor[0]) * u[5]))


def af_beats(rng: np.random.Generator, tb: np.ndarray, t: np.ndarray, hr: np.ndarray,
             af: AFTraits, max_bpm: float) -> tuple[np.ndarray, np.ndarray]:
    """Sinus beats tb (B,) with the episode's beats replaced by AF beats: times (B',) and each
    beat's Frank-Starling amplitude factor (B',) (1 for sinus beats). hr (C,) on grid t (C,);
    the mean ventricular rate is capped at max_bpm (the generator's HR limit)."""
    s = np.sqrt(np.log1p(af.rr_cv ** 2))
    before = tb[tb < af.start_s]
    cur = before[-1] if before.size else af.start_s
    times, fsf = [], []
    while True:                             # sequential: the mean RR follows the HR process
        mean = 60.0 / min(np.interp(cur, t, hr) * af.rate_factor, max_bpm)
        rr = max(mean * np.exp(s * rng.standard_normal() - 0.5 * s * s), 0.25)
        cur += rr
        if cur >= af.end_s:
            break
        times.append(cur)
        fsf.append(float(np.clip((rr / mean) ** 0.9, 0.12, 1.6)))
    resume = cur if times else af.end_s    # sinus resumes no earlier than one AF RR later
    keep = (tb < af.start_s) | (tb >= resume)
    out = np.concatenate([tb[keep], times])
    amp = np.concatenate([np.ones(int(keep.sum())), fsf])
    o = np.argsort(out, kind="stable")
    return out[o], amp[o]


def pulse_wave(tr: WristTraits, feet: np.ndarray, amp: np.ndarray, n: int) -> np.ndarray:
    """(n,) pulses at `feet` (B,): a systolic and a diastolic/reflected Gaussian whose timing
    compresses at high HR (systole shortens less than diastole)."""
    rr = np.clip(np.diff(feet, append=feet[-1] + (feet[-1] - feet[-2] if feet.size > 1 else 0.8)),
                 0.25, 2.0)
    squeeze = np.clip(rr / 0.8, 0.35, 1.3) ** 0.6                            # (B,)
    mus = np.stack([0.13 * squeeze, (0.33 if tr.wrist else 0.3) * squeeze], axis=1)
    sig = np.stack([tr.sys_sigma_s * squeeze, 1.6 * tr.sys_sigma_s * squeeze], axis=1)
    amps = amp[:, None] * np.array([[1.0, tr.notch_depth]])
    return wf.render_gaussian_beats(feet, amps, mus, sig, n, tr.fs)


def wrist_motion(rng: np.random.Generator, tr: WristTraits, phases: list[Phase],
                 tp: np.ndarray) -> np.ndarray:
    """(3, n) wrist acceleration without gravity (g): per phase, swing harmonics at the cadence
    (arm swing at half the step rate for walk/run), step impacts, and gestures; plus jolts."""
    n = tp.size
    acc = np.zeros((3, n))
    for p in phases:
        sl = slice(int(np.searchsorted(tp, p.start)), int(np.searchsorted(tp, p.end)))
        t = tp[sl]
        if t.size < 2:
            continue
        env = wf.raised_cosine_envelope(t, p.start, p.end, 3.0)
        if p.cadence_hz > 0:
            f = p.cadence_hz * (1 + 0.03 * wf.smooth_noise(rng, t, 0.01, 0.1, 4))
            swing = 0.5 if p.kind in ("walk", "run") else 1.0
            phase = 2 * np.pi * np.cumsum(f * swing) / tr.fs + rng.uniform(0, 2 * np.pi)
            amp = 0.2 + 1.6 * p.intensity                                  # g
            for h in range(1, 5):
                a = amp * rng.uniform(0.2, 1.0, 3) / h ** rng.uniform(0.5, 1.5)
                ph = rng.uniform(0, 2 * np.pi, 3)
                acc[:, sl] += env * a[:, None] * np.sin(h * phase[None, :] + ph[:, None])
            if p.kind in ("walk", "run"):          # heel strikes: sharp, mostly one axis
                strikes = np.sin(0.5 * phase / swing) ** 16       # once per step
                acc[:, sl] += env * amp * rng.uniform(0.2, 1.0, 3)[:, None] * strikes
        else:                                   # rest / gestures: slow irregular movements
            acc[:, sl] += env * (0.02 + 0.5 * p.intensity) * np.stack(
                [wf.smooth_noise(rng, t, 0.1, 2.0, 8, tilt=0.5) for _ in range(3)])
    k = rng.poisson(tr.jolts_per_min * tp[-1] / 60.0)
    for t0 in rng.uniform(0, tp[-1], k):        # jolts: knocks, claps, adjusting the strap
        sl = slice(int(t0 * tr.fs), min(n, int((t0 + 1.0) * tr.fs)))
        dt = tp[sl] - t0
        f0 = rng.uniform(2.0, 8.0)
        acc[:, sl] += rng.uniform(0.5, 3.0) * rng.normal(size=(3, 1)) * \
            np.exp(-dt / rng.uniform(0.05, 0.3)) * np.sin(2 * np.pi * f0 * dt)
    return acc


def gravity(rng: np.random.Generator, tp: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """(3, n) slowly turning unit gravity vector (g): orientation changes more when active."""
    ang = [np.pi * (rng.uniform() + (0.3 + intensity) * wf.smooth_noise(rng, tp, 0.005, 0.2, 6))
           for _ in range(2)]
    return np.stack([np.sin(ang[0]) * np.cos(ang[1]), np.sin(ang[0]) * np.sin(ang[1]), np.cos(ang[0])])


def motion_artefact(rng: np.random.Generator, tr: WristTraits, acc: np.ndarray,
                    tp: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """(n,) PPG artefact: a low-passed mixture of the acceleration axes (sensor pressure and
    venous blood moving with the arm), a quadratic term, and a part no accelerometer sees."""
    from scipy import signal as sps

    w = rng.normal(size=3)
    seen = w @ acc + 0.3 * rng.normal() * (w @ acc) ** 2
    b, a = sps.butter(1, min(tr.artefact_cutoff_hz, 0.45 * tr.fs), fs=tr.fs)
    seen = sps.lfilter(b, a, seen)
    unseen = wf.smooth_noise(rng, tp, 0.3, 3.0, 10, tilt=0.5) * (0.05 + intensity)
    scale = np.std(seen) + 1e-9
    mix = (1 - tr.unseen_fraction) * seen / scale + tr.unseen_fraction * unseen
    return tr.motion_gain * tr.perfusion * scale * mix


def ambient_light(rng: np.random.Generator, tr: WristTraits, tp: np.ndarray) -> np.ndarray:
    """(n,) ambient-light offset: slow drift plus steps (walking into sunlight, shade)."""
    out = 0.3 * tr.perfusion * wf.smooth_noise(rng, tp, 0.005, 0.05, 4)
    for t0 in np.sort(rng.uniform(0, tp[-1], rng.poisson(tr.light_steps_per_min * tp[-1] / 60.0))):
        out += rng.normal(0, 3.0) * tr.perfusion * expit((tp - t0) / 0.05)
    return out


# ---------------------------------------------------------------------------------------------
# One subject
# ---------------------------------------------------------------------------------------------

def _bin_labels(duration_s: float, t_c: np.ndarray, hr_c: np.ndarray, resp_c: np.ndarray,
                act_c: np.ndarray, tb: np.ndarray, bad: np.ndarray, fs: float,
                af: AFTraits | None = None) -> dict[str, Series]:
    """1 Hz series at bin centres 0.5, 1.5, ...; `bad` (n,) marks samples that are not usable."""
    tc = np.arange(int(np.floor(duration_s))) + 0.5
    i = np.clip(np.searchsorted(tb, tc), 1, tb.size - 1)
    per = int(round(fs))
    nb = min(tc.size, bad.size // per)
    q = np.ones(tc.size)
    q[:nb] = 1.0 - bad[:nb * per].reshape(nb, per).any(axis=1)
    return {"hr": Series(tc, 60.0 / (tb[i] - tb[i - 1])),
            "rr": Series(tc, np.interp(tc, t_c, resp_c)),
            "quality": Series(tc, q),
            "af": Series(tc, np.zeros(tc.size) if af is None
                         else ((tc >= af.start_s) & (tc < af.end_s)).astype(float)),
            "activity": Series(tc, np.interp(tc, t_c, act_c))}


def _rolling_rms(x: np.ndarray, n: int) -> np.ndarray:
    k = max(1, n)
    c = np.cumsum(np.concatenate([[0.0], x * x]))
    r = (c[k:] - c[:-k]) / k
    r = np.concatenate([np.full(k // 2, r[0]), r, np.full(x.size - r.size - k // 2, r[-1])])
    return np.sqrt(np.maximum(r, 0))


def generate_wrist_subject(subject_index: int, seed: int = 0, duration_s: float = 480.0,
                           config: WristConfig | None = None) -> Record:
    """Simulate one wearer: a Record with 'ppg' and 'accel_x/y/z' at the subject's sensor rate
    (n = round(duration_s * fs)), 1 Hz series hr, rr, quality, af, activity."""
    cfg = config or WristConfig()
    if int(subject_index) != subject_index or subject_index < 0 or int(seed) != seed or seed < 0:
        raise ValueError(f"subject_index and seed must be non-negative integers, got {subject_index}, {seed}")
    if not duration_s > 20:
        raise ValueError(f"duration_s must be > 20 s, got {duration_s}")
    # A seed space of its own: wearer 7 of seed 0 is not resting subject 7 of seed 0.
    # (spawned children depend on their index only: the AF stream, sixth, leaves the others as
    # they were before it existed)
    streams = np.random.SeedSequence([int(seed), int(subject_index), 0x3157]).spawn(6)
    r_tr, r_act, r_beat, r_mot, r_ppg, r_af = (np.random.default_rng(s) for s in streams)
    tr = draw_wrist_traits(r_tr, cfg)
    D = float(duration_s)
    af = draw_af(r_af, cfg, D) if cfg.af_fraction > 0 else None
    phases = draw_phases(r_act, cfg, D)
    t_c = np.arange(-5.0, D + 5.0, 1.0 / _CTRL_FS)
    act_c = np.convolve(_phase_value(t_c, phases, "intensity"), np.ones(9) / 9, mode="same")
    hr_c = hr_process(r_act, tr, cfg, t_c, act_c)
    resp_c = np.clip(tr.resp_rest * (1 + 1.2 * act_c) * (1 + 0.1 * wf.sinusoid_noise(r_act, t_c, 0.005, 0.05, 4)), 6, 45)
    tb = beat_times(r_beat, t_c, hr_c)
    fsf = None
    if af is not None:
        tb, fsf = af_beats(r_af, tb, t_c, hr_c, af, cfg.hr_limits[1])

    n = int(round(D * tr.fs))
    tp = np.arange(n) / tr.fs
    intensity = np.interp(tp, t_c, act_c)
    resp_phase = 2 * np.pi * np.cumsum(np.interp(tp, t_c, resp_c) / 60.0) / tr.fs
    amp = tr.perfusion * (1 + 0.1 * np.sin(np.interp(tb, tp, resp_phase)))
    if fsf is not None:
        amp = amp * fsf
    pulse = pulse_wave(tr, tb, amp, n)
    acc = wrist_motion(r_mot, tr, phases, tp)
    art = motion_artefact(r_mot, tr, acc, tp, intensity)
    ppg = (pulse + 0.15 * tr.perfusion * np.sin(resp_phase) + art + ambient_light(r_ppg, tr, tp)
           + tr.noise * r_ppg.standard_normal(n))
    clipped = np.abs(ppg) >= cfg.rail
    ppg = np.clip(ppg, -cfg.rail, cfg.rail)
    accel = acc + gravity(r_mot, tp, intensity) + 0.01 * r_mot.standard_normal((3, n))
    # Usable: the artefact within the band of the pulse is not much larger than the pulse itself.
    win = int(2 * tr.fs)
    bad = clipped | (_rolling_rms(art - np.convolve(art, np.ones(win) / win, "same"), win)
                     > cfg.bad_ratio * _rolling_rms(pulse - pulse.mean(), win))
    sid = f"wrist{int(seed)}_{int(subject_index):04d}"
    signals = {"ppg": Signal(ppg, tr.fs)}
    signals.update({ax: Signal(accel[i], tr.fs) for i, ax in enumerate(ACCEL_AXES)})
    return Record(
        subject_id=sid, record_id=sid, source="synthetic-wrist", signals=signals,
        series=_bin_labels(D, t_c, hr_c, resp_c, act_c, tb, bad, tr.fs, af),
        meta={"generator": GENERATOR_VERSION, "seed": int(seed), "subject_index": int(subject_index),
              "traits": dataclasses.asdict(tr),
              **({"af": dataclasses.asdict(af)} if af is not None else {}),
              "phases": [dataclasses.asdict(p) for p in phases]},
        path=f"synthetic-wrist:seed={int(seed)}:subject={int(subject_index)}")


# ---------------------------------------------------------------------------------------------
# Reader interface
# ---------------------------------------------------------------------------------------------

_DEFAULTS = {"subjects": 100, "minutes": 8.0, "seed": 0, "af": 0.0}
_PREFIX = "synthetic-wrist"


def _parse(where: str, text: str, sep: str, allowed) -> dict:
    """key=value pairs, numbers coerced as the resting generator does; ranges checked."""
    out = _parse_pairs(where, text, sep, set(allowed))
    if out.get("subjects", 1) < 1 or out.get("minutes", 1) * 60 <= 20 or out.get("seed", 0) < 0 \
            or out.get("subject", 0) < 0 or not 0 <= out.get("af", 0) <= 1:
        raise ReaderError(f"{where}: needs subjects >= 1, minutes > 1/3, seed >= 0, subject >= 0, "
                          "0 <= af <= 1")
    return out


def discover(input_path: str, **opts) -> list[str]:
    """'subjects=200,minutes=8,seed=0[,af=0.15]' ('' = defaults: 100 subjects x 8 min, seed 0,
    no AF) -> one unit string per subject, 'synthetic-wrist:seed=0:subject=7:minutes=8' (with
    ':af=0.15' where af > 0)."""
    text = (input_path or "").strip()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX):].lstrip(":")
    p = dict(_DEFAULTS)
    p.update(_parse(f"synthetic-wrist spec {input_path!r}", "" if text == "default" else text,
                    ",", set(_DEFAULTS)))
    m = p["minutes"]
    mins = str(int(m)) if float(m).is_integer() else repr(float(m))
    af = f":af={float(p['af'])!r}" if p["af"] > 0 else ""
    return [f"{_PREFIX}:seed={p['seed']}:subject={i}:minutes={mins}{af}" for i in range(p["subjects"])]


def read_unit(unit: str, **opts) -> list[Record]:
    """Simulate the subject of one unit string from `discover`: [Record]."""
    where = f"synthetic-wrist unit {unit!r}"
    if not isinstance(unit, str) or not unit.startswith(_PREFIX + ":"):
        raise ReaderError(f"{where}: expected 'synthetic-wrist:seed=..:subject=..:minutes=..'")
    p = {"seed": 0, "minutes": _DEFAULTS["minutes"], "af": 0.0}
    p.update(_parse(where, unit[len(_PREFIX) + 1:], ":", {"seed", "subject", "minutes", "af"}))
    if "subject" not in p:
        raise ReaderError(f"{where}: no subject=")
    cfg = WristConfig(af_fraction=float(p["af"]))
    rec = generate_wrist_subject(p["subject"], seed=p["seed"], duration_s=60.0 * p["minutes"], config=cfg)
    rec.path = unit
    return [rec]
