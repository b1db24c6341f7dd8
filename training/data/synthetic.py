"""Synthetic paired ECG + PPG: the embedded default dataset.

Lets the whole pipeline (pretraining, probes, distillation, export) run on a fresh machine with
no download. One call, `generate_subject`, simulates one subject for a duration and returns a
`Record` with 'ppg' and 'ecg' signals and physiologically *coupled* labels, so downstream
probes have something real to learn from the PPG alone:

  hr       pulse rate              <- beat times (IPFM model with drift, LF waves, RSA)
  rr       respiration rate        <- baseline (RIIV), amplitude (RIAV) and rate (RIFV) modulation
  sbp/dbp  blood pressure          <- pulse arrival time (shorter at high SBP) and pulse shape
  af       atrial fibrillation     <- irregular RR, RR-dependent pulse amplitude
  ectopic  premature beats         <- early, small pulse followed by a compensatory pause
  quality  1 good / 0 artefact     <- motion bursts and sensor saturation (clipping to a rail)
  age      (record label)          <- arterial stiffness: earlier reflected wave, flatter notch

Everything is deterministic in (seed, subject_index); subject traits depend on nothing else,
so subjects are reproducible independently of each other, of the record duration and of the
sampling rates. Waveforms are vectorised over beats (see `training.data.synthetic_waveforms`).

Reader interface (used by the window store): `discover(spec)` -> unit strings such as
"synthetic:seed=0:subject=7:minutes=4:ecg_fs=125", and `read_unit(unit)` -> [Record].
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from training.data.records import ReaderError, Record, Series, Signal
from training.data import synthetic_waveforms as wf

GENERATOR_VERSION = "anyppg-synthetic-1"
_CTRL_FS = 4.0          # Hz: grid of the slow control processes (HR, BP, respiration)
_PAD_S = 3.0            # simulate beats this long before 0 / after the end so edges are complete


@dataclass(frozen=True)
class SyntheticConfig:
    """Ranges of the per-subject traits and the event propensities (defaults: a mixed cohort)."""

    hr_range: tuple[float, float] = (50.0, 110.0)          # mean sinus heart rate, bpm
    resp_range: tuple[float, float] = (8.0, 25.0)          # mean breathing rate, breaths/min
    age_range: tuple[float, float] = (20.0, 85.0)          # years
    sbp_limits: tuple[float, float] = (85.0, 195.0)        # mmHg, clip of the SBP process
    dbp_limits: tuple[float, float] = (45.0, 115.0)
    # Pulse arrival time: PAT = intercept - slope*SBP - age term (+ PEP and noise), clipped.
    pat_intercept_s: tuple[float, float] = (0.475, 0.515)  # per subject (arm length, PEP)
    pat_slope_s_per_mmhg: float = 0.0016
    pat_limits_s: tuple[float, float] = (0.15, 0.35)
    # Atrial fibrillation.
    af_subject_fraction: float = 0.3        # cohort share with any AF (rises with age)
    af_permanent_fraction: float = 0.25     # of those, share in AF the whole time
    af_burden_range: tuple[float, float] = (0.2, 0.7)
    af_rr_cv_range: tuple[float, float] = (0.18, 0.32)     # RR coefficient of variation in AF
    af_rate_factor_range: tuple[float, float] = (1.05, 1.45)
    # Ectopy: per-beat probability, heavy-tailed across subjects.
    ectopic_max_prob: float = 0.08
    # Artefacts (episodes per minute are per-subject, log-uniform).
    motion_per_min: tuple[float, float] = (0.05, 0.8)
    motion_len_s: tuple[float, float] = (3.0, 20.0)
    saturation_subject_fraction: float = 0.5
    saturation_per_min: tuple[float, float] = (0.1, 0.5)
    saturation_len_s: tuple[float, float] = (3.0, 12.0)
    ppg_rail: float = 6.0                   # ADC rails at +-ppg_rail (pulse amplitude is ~1)


@dataclass(frozen=True)
class SubjectTraits:
    """One simulated subject. Drawn by `draw_traits`; stored in Record.meta['traits']."""

    age: float
    stiffness: float          # 0 (compliant) .. 1 (stiff arteries)
    hr_mean: float            # bpm
    resp_rate: float          # breaths/min
    sbp_base: float           # mmHg
    dbp_base: float
    pat_intercept: float      # s
    rsa_depth: float          # fractional HR swing with breathing
    lf_depth: float           # fractional HR Mayer-wave (0.04-0.15 Hz) amplitude
    drift_depth: float        # fractional slow HR drift
    rr_jitter_s: float        # beat-to-beat white jitter
    af_burden: float          # fraction of time in AF (0: never)
    af_rate_factor: float     # ventricular rate in AF relative to the sinus rate
    af_rr_cv: float
    ectopic_prob: float       # per sinus beat
    motion_per_min: float
    saturation_per_min: float
    ppg_amp: float            # perfusion: pulse amplitude
    riiv: float               # respiratory baseline modulation (fraction of pulse amplitude)
    riav: float               # respiratory pulse-amplitude modulation depth
    sys_sigma_s: float        # systolic upstroke width
    ppg_noise: float
    ecg_polarity: float       # +1, or -1 for an inverted lead
    r_amp: float              # mV
    t_amp: float
    pr_s: float
    qtc_s: float
    pvc_sign: float
    ecg_noise_mv: float
    mains_mv: float


def draw_traits(rng: np.random.Generator, cfg: SyntheticConfig) -> SubjectTraits:
    """Draw one subject. Uses a fixed number of draws, so traits depend only on the stream."""
    u = rng.uniform(size=32)
    z = rng.standard_normal(size=8)
    lo, hi = cfg.age_range
    age = lo + (hi - lo) * u[0]
    age01 = (age - lo) / (hi - lo)
    stiffness = float(np.clip(age01 + 0.12 * z[0], 0.0, 1.0))
    # BP rises with age (and stiffness widens the pulse pressure), with large individual scatter.
    sbp = float(np.clip(108 + 40 * age01 + 13 * z[1], 92, 178))
    pp = float(np.clip(38 + 22 * stiffness + 6 * z[2], 25, 80))
    dbp = float(np.clip(sbp - pp, 55, 98))
    # AF prevalence rises steeply with age.
    af_p = np.clip(cfg.af_subject_fraction * (0.3 + 1.4 * age01), 0, 1)
    if u[1] < af_p:
        a, b = cfg.af_burden_range
        burden = 1.0 if u[2] < cfg.af_permanent_fraction else a + (b - a) * u[3]
    else:
        burden = 0.0
    ect = cfg.ectopic_max_prob * u[4] ** 3          # most subjects rare, a few frequent
    mot = np.exp(np.log(cfg.motion_per_min[0]) + np.log(cfg.motion_per_min[1] / cfg.motion_per_min[0]) * u[5])
    sat = 0.0
    if u[6] < cfg.saturation_subject_fraction:
        sat = cfg.saturation_per_min[0] + (cfg.saturation_per_min[1] - cfg.saturation_per_min[0]) * u[7]

    def rng_in(r, x):
        return r[0] + (r[1] - r[0]) * x

    return SubjectTraits(
        age=float(age), stiffness=stiffness,
        hr_mean=float(rng_in(cfg.hr_range, u[8])), resp_rate=float(rng_in(cfg.resp_range, u[9])),
        sbp_base=sbp, dbp_base=dbp, pat_intercept=float(rng_in(cfg.pat_intercept_s, u[10])),
        rsa_depth=float((0.02 + 0.07 * u[11]) * (1.0 - 0.6 * age01)),   # RSA fades with age
        lf_depth=float(0.015 + 0.03 * u[12]), drift_depth=float(0.03 + 0.05 * u[13]),
        rr_jitter_s=float(0.004 + 0.008 * u[14]), af_burden=float(burden),
        af_rate_factor=float(rng_in(cfg.af_rate_factor_range, u[15])),
        af_rr_cv=float(rng_in(cfg.af_rr_cv_range, u[16])), ectopic_prob=float(ect),
        motion_per_min=float(mot), saturation_per_min=float(sat),
        ppg_amp=float(0.5 + 1.0 * u[17]), riiv=float(0.08 + 0.2 * u[18]),
        riav=float(0.05 + 0.15 * u[19]), sys_sigma_s=float(0.042 + 0.012 * u[20] + 0.01 * stiffness),
        ppg_noise=float(0.005 + 0.025 * u[21]),
        ecg_polarity=-1.0 if u[22] < 0.12 else 1.0, r_amp=float(0.6 + 1.2 * u[23]),
        t_amp=float(0.12 + 0.3 * u[24]) * (-1.0 if u[25] < 0.05 else 1.0),
        pr_s=float(0.12 + 0.08 * u[26]), qtc_s=float(0.38 + 0.06 * u[27]),
        pvc_sign=-1.0 if u[28] < 0.5 else 1.0, ecg_noise_mv=float(0.005 + 0.025 * u[29]),
        mains_mv=float(0.05 * u[30] ** 2),
    )


@dataclass
class BeatTruth:
    """Ground truth per beat, shape (B,) each; beats span [-_PAD_S, duration + _PAD_S)."""

    r_times_s: np.ndarray      # R peaks
    foot_times_s: np.ndarray   # PPG pulse feet (R + PAT)
    pat_s: np.ndarray
    sbp: np.ndarray
    amplitude: np.ndarray      # PPG pulse amplitude
    is_af: np.ndarray          # bool
    is_ectopic: np.ndarray     # bool


# ---------------------------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------------------------


def _episodes(rng, per_min, len_range, duration_s):
    """(K, 2) sorted, disjoint [start, end): Poisson-many episodes, uniform lengths and placement."""
    k = rng.poisson(per_min * duration_s / 60.0) if per_min > 0 else 0
    lens = np.minimum(rng.uniform(*len_range, size=k), duration_s)
    starts = rng.uniform(0, 1, size=k) * (duration_s - lens)
    ep = np.stack([starts, starts + lens], axis=1) if k else np.zeros((0, 2))
    merged: list[list[float]] = []
    for a, b in ep[np.argsort(ep[:, 0])]:   # overlapping episodes become one
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.array(merged).reshape(-1, 2)


def _af_episodes(rng, burden, duration_s):
    """(K, 2) non-overlapping AF episodes covering `burden` of the record (Dirichlet split)."""
    if burden <= 0:
        return np.zeros((0, 2))
    if burden >= 1:
        return np.array([[-_PAD_S, duration_s + _PAD_S]])
    k = 1 + rng.poisson(duration_s / 400.0)
    lens = burden * duration_s * rng.dirichlet(np.ones(k))
    gaps = (1 - burden) * duration_s * rng.dirichlet(np.ones(k + 1))
    starts = gaps[0] + np.concatenate([[0.0], np.cumsum(lens[:-1] + gaps[1:-1])])
    return np.stack([starts, starts + lens], axis=1)


def _in_any(t, episodes):
    """(T,) bool: t inside any [start, end) of episodes (K, 2)."""
    m = np.zeros(np.shape(t), dtype=bool)
    for a, b in episodes:                   # a handful of episodes
        m |= (t >= a) & (t < b)
    return m


def _beat_times(rng, tr: SubjectTraits, t_c, hr_c, af_eps):
    """Sinus beats by integral pulse frequency modulation, AF stretches replaced by iid RR.

    Returns times (B,), is_af (B,), is_ectopic (B,) and rr_expect (B,): the RR the beat "should"
    have had (the local sinus RR, or the mean AF RR), the reference of the Frank-Starling
    pulse amplitude.
    """
    # IPFM: a beat each time the integral of the instantaneous rate crosses an integer. RSA, LF
    # waves and drift in hr_c thus show up in the RR series exactly as an HRV spectrum would.
    phase = np.cumsum(hr_c / 60.0) / _CTRL_FS + rng.uniform()
    k = np.arange(np.ceil(phase[0]), np.floor(phase[-1]) + 1)
    t = np.interp(k, phase, t_c) + tr.rr_jitter_s * rng.standard_normal(k.size)
    t = np.sort(t)
    is_af = np.zeros(t.size, dtype=bool)
    rr_exp = 60.0 / np.interp(t, t_c, hr_c)
    for a, b in af_eps:                     # loop over AF episodes, not beats
        rr_mean = 60.0 / (tr.hr_mean * tr.af_rate_factor)
        before = t[t < a]
        start = before[-1] if before.size else a - rng.uniform(0, rr_mean)
        m = int((b - start) / 0.25) + 4
        # AF: the AV node is bombarded irregularly -> RR close to iid, wide (log-normal) spread.
        s = np.sqrt(np.log1p(tr.af_rr_cv ** 2))
        rr = np.maximum(rr_mean * np.exp(s * rng.standard_normal(m) - 0.5 * s * s), 0.28)
        taf = start + np.cumsum(rr)
        taf = taf[taf < b]
        last = taf[-1] if taf.size else start
        resume = max(b, last + 0.6 * 60.0 / tr.hr_mean)
        keep = (t < a) | (t >= resume)
        t = np.concatenate([t[keep], taf])
        is_af = np.concatenate([is_af[keep], np.ones(taf.size, dtype=bool)])
        rr_exp = np.concatenate([rr_exp[keep], np.full(taf.size, rr_mean)])
        o = np.argsort(t, kind="stable")
        t, is_af, rr_exp = t[o], is_af[o], rr_exp[o]
    # Ectopy: a sinus beat fires early (coupling 55-75 % of RR); the next beat keeps its time,
    # giving the fully compensatory pause of a PVC. No two ectopics in a row.
    B = t.size
    ect = rng.uniform(size=B) < tr.ectopic_prob
    ect[:1] = False
    ect[-1:] = False
    ect[1:-1] &= ~is_af[:-2] & ~is_af[1:-1] & ~is_af[2:]
    ect[1:] &= ~ect[:-1]
    coupling = rng.uniform(0.55, 0.75, size=B)
    idx = np.flatnonzero(ect)
    t[idx] = t[idx - 1] + coupling[idx] * (t[idx] - t[idx - 1])
    return t, is_af, ect, rr_exp


@dataclass
class _Control:
    """Slow processes on the control grid, each (C,): time, respiration, HR, BP."""

    t: np.ndarray
    resp: np.ndarray          # respiratory signal, + = inspiration, about +-1
    resp_rate: np.ndarray     # breaths/min
    hr: np.ndarray            # sinus rate, bpm
    sbp: np.ndarray
    dbp: np.ndarray


def _control_processes(rng: np.random.Generator, tr: SubjectTraits, cfg: SyntheticConfig,
                       duration_s: float) -> _Control:
    """Respiration, sinus HR and BP on a 4 Hz grid covering the record plus padding.

    Sum-of-sinusoid noise keeps these functions of time independent of the duration.
    """
    t = np.arange(-_PAD_S - 1.0, duration_s + _PAD_S + 1.0, 1.0 / _CTRL_FS)
    resp_rate = np.clip(tr.resp_rate * (1 + 0.12 * wf.sinusoid_noise(rng, t, 0.003, 0.03, 4)), 6, 32)
    resp_phase = 2 * np.pi * np.cumsum(resp_rate / 60.0) / _CTRL_FS + rng.uniform(0, 2 * np.pi)
    resp_depth = np.clip(1 + 0.2 * wf.sinusoid_noise(rng, t, 0.01, 0.1, 4), 0.4, None)
    resp = resp_depth * np.sin(resp_phase)
    lf = wf.sinusoid_noise(rng, t, 0.04, 0.15, 8)     # Mayer waves, shared by HR and BP
    drift = wf.sinusoid_noise(rng, t, 0.002, 0.02, 4)
    # RSA: HR rises on inspiration (RIFV); vagal gating makes it weaker at fast breathing.
    rsa = tr.rsa_depth * np.clip(12.0 / resp_rate, 0.5, 1.5)
    hr = tr.hr_mean * (1 + tr.drift_depth * drift) * (1 + tr.lf_depth * lf) * (1 + rsa * resp)
    hr = np.clip(hr, 38.0, 160.0)
    # SBP: slow drift, Mayer waves, a little HR coupling, and the respiratory (intrathoracic
    # pressure) swing that makes PAT breathe too.
    sbp = (tr.sbp_base + 7.0 * wf.sinusoid_noise(rng, t, 0.002, 0.02, 4) + 3.0 * lf
           + 0.25 * (hr - tr.hr_mean) - 2.0 * resp)
    sbp = np.clip(sbp, *cfg.sbp_limits)
    dbp = tr.dbp_base + 0.55 * (sbp - tr.sbp_base) + 2.0 * wf.sinusoid_noise(rng, t, 0.002, 0.02, 4)
    dbp = np.clip(np.minimum(dbp, sbp - 20.0), *cfg.dbp_limits)
    return _Control(t, resp, resp_rate, hr, sbp, dbp)


def _labels(duration_s: float, c: _Control, t_b: np.ndarray, is_ect: np.ndarray,
            af_eps: np.ndarray, bad_eps: np.ndarray) -> dict[str, Series]:
    """1 Hz series at bin centres 0.5, 1.5, ... (a window [t0, t1) averages its own bins) and
    the per-beat 'ectopic' flags (its window mean is the ectopic share of beats)."""
    tc = np.arange(int(np.floor(duration_s))) + 0.5
    i = np.clip(np.searchsorted(t_b, tc), 1, t_b.size - 1)
    bad = np.zeros(tc.size, dtype=bool)
    for a, b in bad_eps:                    # a 1-s bin touching an artefact episode is bad
        bad |= (tc - 0.5 < b) & (tc + 0.5 > a)
    inside = (t_b >= 0) & (t_b < duration_s)
    return {
        "hr": Series(tc, 60.0 / (t_b[i] - t_b[i - 1])),      # RR interval holding the bin centre
        "rr": Series(tc, np.interp(tc, c.t, c.resp_rate)),
        "sbp": Series(tc, np.interp(tc, c.t, c.sbp)),
        "dbp": Series(tc, np.interp(tc, c.t, c.dbp)),
        "af": Series(tc, _in_any(tc, af_eps).astype(float)),
        "quality": Series(tc, (~bad).astype(float)),
        "ectopic": Series(t_b[inside], is_ect[inside].astype(float)),
    }


def simulate_subject(subject_index: int, seed: int = 0, duration_s: float = 300.0,
                     ppg_fs: float = 125.0, ecg_fs: float = 125.0, mains_hz: float = 50.0,
                     config: SyntheticConfig | None = None) -> tuple[Record, BeatTruth]:
    """`generate_subject` plus the per-beat ground truth (R times, PPG feet, PAT, ...)."""
    cfg = config or SyntheticConfig()
    if int(subject_index) != subject_index or subject_index < 0 or int(seed) != seed or seed < 0:
        raise ValueError(f"subject_index and seed must be non-negative integers, got {subject_index}, {seed}")
    if not (duration_s > 0 and ppg_fs > 0 and ecg_fs > 0 and mains_hz >= 0):
        raise ValueError("duration_s, ppg_fs and ecg_fs must be positive and mains_hz >= 0")
    # Independent streams: traits first (so they depend on nothing but seed and subject), and
    # separate PPG / ECG noise streams (so changing ecg_fs leaves the PPG and labels unchanged).
    streams = np.random.SeedSequence([int(seed), int(subject_index)]).spawn(6)
    r_tr, r_ep, r_slow, r_beat, r_ppg, r_ecg = (np.random.default_rng(s) for s in streams)
    tr = draw_traits(r_tr, cfg)
    D = float(duration_s)

    # Episodes (seconds). Motion and saturation may overlap each other; both make quality 0.
    af_eps = _af_episodes(r_ep, tr.af_burden, D)
    mot_eps = _episodes(r_ep, tr.motion_per_min, cfg.motion_len_s, D)
    sat_eps = _episodes(r_ep, tr.saturation_per_min, cfg.saturation_len_s, D)
    c = _control_processes(r_slow, tr, cfg, D)

    # Beats and their per-beat physiology, all (B,).
    t_b, is_af, is_ect, rr_exp = _beat_times(r_beat, tr, c.t, c.hr, af_eps)
    rr_prev = np.diff(t_b, prepend=t_b[0] - rr_exp[0])
    sbp_b = np.interp(t_b, c.t, c.sbp)
    resp_b = np.interp(t_b, c.t, c.resp)
    # PAT = PEP + PTT. PTT falls as BP stiffens the arterial wall (PWV up) and with age; PEP
    # shortens with HR and lengthens for a PVC (weak, dyssynchronous contraction).
    hr_b = np.clip(60.0 / np.clip(rr_prev, 0.25, 2.5), 40, 150)
    pat = (tr.pat_intercept - cfg.pat_slope_s_per_mmhg * sbp_b - 0.0006 * (tr.age - 50)
           - 0.0003 * (hr_b - 70) + 0.03 * is_ect + 0.004 * r_beat.standard_normal(t_b.size))
    pat = np.clip(pat, *cfg.pat_limits_s)
    feet = t_b + pat
    # Frank-Starling: a short preceding RR fills the ventricle less -> smaller pulse. This is what
    # makes AF pulses vary in amplitude and an ectopic pulse small (and the next one large).
    fsf = np.clip((rr_prev / rr_exp) ** 0.9, 0.12, 1.6) * np.where(is_ect, 0.55, 1.0)
    amp_b = tr.ppg_amp * fsf * (1 + tr.riav * resp_b)          # RIAV

    ppg = wf.ppg_signal(r_ppg, int(round(D * ppg_fs)), ppg_fs, tr, feet, amp_b, rr_exp, sbp_b, c.t,
                        c.resp, mot_eps, sat_eps, cfg.ppg_rail)
    ecg = wf.ecg_signal(r_ecg, int(round(D * ecg_fs)), ecg_fs, tr, t_b, rr_prev, is_af, is_ect,
                        resp_b, c.t, c.resp, mains_hz, af_eps, mot_eps)

    # The seed is part of the identity: subject 7 of seed 0 and of seed 1 are different people,
    # and a probe must not mistake one for the other when it excludes subjects a model saw.
    sid = f"syn{int(seed)}_{int(subject_index):04d}"
    record = Record(
        subject_id=sid, record_id=sid, source="synthetic",
        signals={"ppg": Signal(ppg, ppg_fs), "ecg": Signal(ecg, ecg_fs)},
        labels={"age": round(tr.age, 1)},
        series=_labels(D, c, t_b, is_ect, af_eps, np.concatenate([mot_eps, sat_eps])),
        meta={"generator": GENERATOR_VERSION, "seed": int(seed), "subject_index": int(subject_index),
              "traits": dataclasses.asdict(tr), "ppg_rail": [-cfg.ppg_rail, cfg.ppg_rail],
              "episodes": {k: [[float(a), float(b)] for a, b in v]
                           for k, v in (("af", af_eps), ("motion", mot_eps), ("saturation", sat_eps))}},
        path=f"synthetic:seed={int(seed)}:subject={int(subject_index)}",
    )
    return record, BeatTruth(t_b, feet, pat, sbp_b, amp_b, is_af, is_ect)


def generate_subject(subject_index: int, seed: int = 0, duration_s: float = 300.0,
                     ppg_fs: float = 125.0, ecg_fs: float = 125.0, mains_hz: float = 50.0,
                     config: SyntheticConfig | None = None) -> Record:
    """Simulate one subject: a Record with 'ppg' (n = round(duration_s*ppg_fs)) and 'ecg'
    (round(duration_s*ecg_fs)) signals, label 'age', 1 Hz series hr, rr, sbp, dbp, af, quality
    and per-beat series 'ectopic' (0/1; its window mean is the ectopic share of beats)."""
    return simulate_subject(subject_index, seed, duration_s, ppg_fs, ecg_fs, mains_hz, config)[0]


# ---------------------------------------------------------------------------------------------
# Reader interface and summary
# ---------------------------------------------------------------------------------------------

_SPEC_DEFAULTS = {"subjects": 24, "minutes": 4.0, "seed": 0, "ecg_fs": 125.0, "ppg_fs": 125.0,
                  "mains_hz": 50.0}
_INT_KEYS = {"subjects", "seed", "subject"}
_UNIT_KEYS = {"seed", "subject", "minutes", "ecg_fs", "ppg_fs", "mains_hz"}


def _fmt(x) -> str:
    """Number as it appears in a unit string: integral values without a decimal point."""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def _coerce(where: str, key: str, val) -> float | int:
    """A spec / unit / option value (maybe a string, as from `--opt k=v`) as a number."""
    try:
        num = float(str(val).strip())
    except ValueError:
        raise ReaderError(f"{where}: {key}={str(val).strip()!r} is not a number") from None
    if key in _INT_KEYS:
        if not num.is_integer():
            raise ReaderError(f"{where}: {key} must be an integer, got {val}")
        return int(num)
    return num


def _parse_pairs(where: str, text: str, sep: str, allowed: set[str]) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(sep))):
        key, eq, val = part.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            raise ReaderError(f"{where}: expected key=value with keys {', '.join(sorted(allowed))}, "
                              f"got {part!r}")
        out[key] = _coerce(where, key, val)
    return out


def _from_opts(where: str, opts: dict, keys) -> dict:
    """The opts this reader knows (others are ignored: every source gets the same opts)."""
    return {k: _coerce(where, k, v) for k, v in opts.items() if k in keys and v is not None}


def _check(where: str, p: dict) -> dict:
    if p.get("subjects", 1) < 1 or p.get("minutes", 1) <= 0 or p.get("seed", 0) < 0 \
            or p.get("subject", 0) < 0 or p.get("ecg_fs", 1) <= 0 or p.get("ppg_fs", 1) <= 0:
        raise ReaderError(f"{where}: needs subjects >= 1, minutes > 0, seed >= 0, subject >= 0 and "
                          f"rates > 0, got {', '.join(f'{k}={_fmt(v)}' for k, v in p.items())}")
    if p.get("mains_hz", 0) not in (0.0, 50.0, 60.0):
        raise ReaderError(f"{where}: mains_hz must be 0, 50 or 60, got {_fmt(p['mains_hz'])}")
    return p


def parse_spec(input_path: str, **opts) -> dict:
    """'subjects=40,minutes=5,seed=0,ecg_fs=500' -> dict with all keys. '' or 'default' = defaults.

    Keys: subjects, minutes, seed, ecg_fs, ppg_fs, mains_hz. A leading 'synthetic' /
    'synthetic:' is accepted. Keys in `opts` (e.g. ecg_fs from the signal spec; strings are
    coerced) fill in what the string leaves out. Bad input raises ReaderError (a ValueError)
    with the one-line message '<spec>: <problem>'.
    """
    where = f"synthetic spec {input_path!r}"
    text = (input_path or "").strip()
    if text.startswith("synthetic"):
        text = text[len("synthetic"):].lstrip(":")
    if text == "default":
        text = ""
    p = dict(_SPEC_DEFAULTS)
    p.update(_from_opts(where, opts, _SPEC_DEFAULTS))
    p.update(_parse_pairs(where, text, ",", set(_SPEC_DEFAULTS)))
    return _check(where, p)


def discover(input_path: str, **opts) -> list[str]:
    """Unit strings, one per subject in subject order: 'synthetic:seed=0:subject=7:minutes=4:ecg_fs=125'
    (plus ':ppg_fs=..' / ':mains_hz=..' when not the defaults)."""
    p = parse_spec(input_path, **opts)
    extra = "".join(f":{k}={_fmt(p[k])}" for k in ("ppg_fs", "mains_hz") if p[k] != _SPEC_DEFAULTS[k])
    return [f"synthetic:seed={p['seed']}:subject={i}:minutes={_fmt(p['minutes'])}:ecg_fs={_fmt(p['ecg_fs'])}{extra}"
            for i in range(p["subjects"])]


def read_unit(unit: str, **opts) -> list[Record]:
    """Parse one unit string from `discover` and simulate that subject: [Record].

    Keys missing from the unit (only subject= is required) come from `opts`, then the defaults.
    """
    where = f"synthetic unit {unit!r}"
    if not isinstance(unit, str) or not unit.startswith("synthetic:"):
        raise ReaderError(f"{where}: expected 'synthetic:seed=..:subject=..:minutes=..:ecg_fs=..'")
    p = _parse_pairs(where, unit[len("synthetic:"):], ":", _UNIT_KEYS)
    if "subject" not in p:
        raise ReaderError(f"{where}: no subject=")
    full = {k: v for k, v in _SPEC_DEFAULTS.items() if k != "subjects"}
    full.update(_from_opts(where, opts, full.keys() - p.keys()))
    full.update(p)
    _check(where, full)
    rec = generate_subject(full["subject"], seed=full["seed"], duration_s=60.0 * full["minutes"],
                           ppg_fs=full["ppg_fs"], ecg_fs=full["ecg_fs"], mains_hz=full["mains_hz"])
    rec.path = unit
    return [rec]


def _stats(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def summary(records) -> dict:
    """Counts and label distributions of a list of Records (synthetic or any with these series).

    Keys: records, subjects, hours; hr, rr, sbp, dbp, age -> {mean, std, min, max} over the 1 Hz
    samples (age: over records); af_fraction (share of 1 Hz samples in AF), af_subjects;
    bad_quality_fraction (share of 1 Hz samples with quality 0); ectopic_fraction (of beats).
    """
    records = list(records)

    def cat(name):
        parts = [r.series[name].values for r in records if name in r.series]
        return np.concatenate(parts) if parts else np.zeros(0)

    af, q, ect = cat("af"), cat("quality"), cat("ectopic")
    out = {
        "records": len(records),
        "subjects": len({r.subject_id for r in records}),
        "hours": float(sum(r.ppg.duration_s for r in records) / 3600.0),
    }
    for name in ("hr", "rr", "sbp", "dbp"):
        out[name] = _stats(cat(name))
    out["age"] = _stats([r.labels.get("age", np.nan) for r in records])
    out["af_fraction"] = float(af.mean()) if af.size else 0.0
    out["af_subjects"] = int(sum(1 for r in records if "af" in r.series and r.series["af"].values.any()))
    out["bad_quality_fraction"] = float(1.0 - q.mean()) if q.size else 0.0
    out["ectopic_fraction"] = float(ect.mean()) if ect.size else 0.0
    return out


def format_summary(s: dict) -> str:
    """A few human-readable lines of `summary(records)` (for `make demo`)."""
    lines = [f"synthetic data: {s['records']} records, {s['subjects']} subjects, {s['hours']:.2f} h"]
    for name, unit in (("hr", "bpm"), ("rr", "breaths/min"), ("sbp", "mmHg"), ("dbp", "mmHg"), ("age", "y")):
        d = s[name]
        lines.append(f"  {name:4s} {d['mean']:6.1f} +- {d['std']:5.1f}  [{d['min']:.1f}, {d['max']:.1f}] {unit}")
    lines.append(f"  AF {100 * s['af_fraction']:.1f}% of time ({s['af_subjects']} subjects), "
                 f"bad quality {100 * s['bad_quality_fraction']:.1f}%, ectopic {100 * s['ectopic_fraction']:.2f}% of beats")
    return "\n".join(lines)
