"""A synthetic cohort with planted conditions: the ground truth for disease-wide probing.

    python -m training.data.synthetic_cohort --out DIR [--subjects 400] [--seconds 60] [--seed 0]

writes DIR/store (a window store: PPG windows, labels 'age' and 'sex'), DIR/diagnoses.csv
(subject, code, description: the table `anyppg probe --diagnoses` reads) and DIR/truth.json
(each condition's mechanism, effect size, prevalence and the AUROC of its planted trait).

Each subject is `training.data.synthetic.generate_subject` (paired PPG physiology) with the
cohort's base config (no atrial fibrillation unless planted), shifted by the conditions the
subject has. A condition plants its effect through the generator's own subject traits:

  hr_shift_sd     mean heart rate raised by this many SDs of the cohort's HR trait
                  (uniform 50-110 bpm: SD 17.3 bpm); conditions add up
  resp_shift_sd   breathing rate raised likewise (uniform 8-25 /min: SD 4.9 /min)
  af              permanent atrial fibrillation (irregular RR, beat-to-beat pulse amplitude)
  motion_factor   motion-artefact episodes per minute multiplied (a tremor-like condition)

'demographic' conditions have no planted effect: their prevalence rises with age (and
`male_only` ones occur in men only), so PPG sees them only through what age does to the
pulse (arterial stiffness), and demographics alone predict them. 'null' conditions are drawn
independently of everything. The strengths the issue asks for: 'strong' and 'moderate'
conditions must be found at q = 0.05, 'null' ones must not; 'weak' ones are reported
(tests/training/test_diagnoses_synthetic.py states the sizes and the power behind that).
An episodic trait is seen only through the episodes that fall into the recording: truth.json
gives their AUROC too (`observed_auroc`; for G20's motion x6 in 60 s about 0.72-0.80 against
0.93 for the planted rate itself).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_dir, atomic_write_json, atomic_write_text
from anyppg.stage import one_line
from edge_runtime import preprocess as pp
from edge_runtime.spec import SPECS, SignalSpec
from training.data.store import PartWriter, part_name, rebuild_index, subject_split
from training.data.synthetic import SyntheticConfig, generate_subject

COHORT_VERSION = "anyppg-cohort-1"
STRENGTHS = ("strong", "moderate", "weak", "demographic", "null")
BASE_CONFIG = SyntheticConfig(af_subject_fraction=0.0)      # AF only where planted


@dataclass(frozen=True)
class Condition:
    """One planted diagnosis. prevalence: share of subjects (of men, if male_only) at age 50."""

    code: str
    name: str
    strength: str
    prevalence: float
    hr_shift_sd: float = 0.0
    resp_shift_sd: float = 0.0
    af: bool = False
    motion_factor: float = 1.0
    age_log_odds_per_decade: float = 0.0
    male_only: bool = False

    def __post_init__(self):
        if self.strength not in STRENGTHS:
            raise ValueError(f"condition {self.code}: strength must be one of {STRENGTHS}")
        if self.demographic and self.planted:
            raise ValueError(f"condition {self.code}: an age/sex-linked condition cannot also plant "
                             "a PPG effect (it is drawn after the subject is simulated)")

    @property
    def planted(self) -> bool:
        return bool(self.hr_shift_sd or self.resp_shift_sd or self.af or self.motion_factor != 1.0)

    @property
    def demographic(self) -> bool:
        return bool(self.age_log_odds_per_decade or self.male_only)

    def mechanism(self) -> str:
        parts = []
        if self.hr_shift_sd:
            parts.append(f"heart rate +{self.hr_shift_sd:g} SD ({self.hr_shift_sd * HR_SD:+.1f} bpm)")
        if self.resp_shift_sd:
            parts.append(f"breathing rate +{self.resp_shift_sd:g} SD ({self.resp_shift_sd * RESP_SD:+.1f} /min)")
        if self.af:
            parts.append("permanent atrial fibrillation")
        if self.motion_factor != 1.0:
            parts.append(f"motion artefacts x{self.motion_factor:g}")
        if self.age_log_odds_per_decade:
            parts.append(f"odds x{np.exp(self.age_log_odds_per_decade):.1f} per decade of age")
        if self.male_only:
            parts.append("men only")
        return ", ".join(parts) or "none (independent of everything)"


def _sd(r: tuple[float, float]) -> float:
    return (r[1] - r[0]) / np.sqrt(12.0)          # SD of a uniform trait


HR_SD = _sd(BASE_CONFIG.hr_range)
RESP_SD = _sd(BASE_CONFIG.resp_range)

DEFAULT_CONDITIONS: tuple[Condition, ...] = (
    Condition("I48", "Atrial fibrillation and flutter", "strong", 0.12, af=True),
    Condition("I50", "Heart failure", "strong", 0.12, hr_shift_sd=2.0),
    Condition("E05", "Thyrotoxicosis", "moderate", 0.12, hr_shift_sd=1.2),
    Condition("G20", "Parkinson disease", "moderate", 0.12, motion_factor=6.0),
    Condition("E11", "Type 2 diabetes mellitus", "weak", 0.15, hr_shift_sd=0.4),
    Condition("J44", "Chronic obstructive pulmonary disease", "weak", 0.12, resp_shift_sd=0.8),
    Condition("I10", "Essential (primary) hypertension", "demographic", 0.20, age_log_odds_per_decade=0.8),
    Condition("N40", "Hyperplasia of prostate", "demographic", 0.30, age_log_odds_per_decade=0.8,
              male_only=True),
    Condition("K21", "Gastro-oesophageal reflux disease", "null", 0.15),
    Condition("M54", "Dorsalgia", "null", 0.15),
    Condition("H52", "Disorders of refraction", "null", 0.20),
    Condition("L40", "Psoriasis", "null", 0.12),
    Condition("F32", "Depressive episode", "null", 0.15),
    Condition("S52", "Fracture of forearm", "null", 0.12),
    Condition("K80", "Cholelithiasis", "null", 0.12),
    Condition("statin_use", "On a statin (a plain label, not ICD-10)", "null", 0.15),
)


def subject_config(conds: list[Condition]) -> SyntheticConfig:
    """The base config shifted by a subject's planted conditions (effects add up)."""
    cfg = BASE_CONFIG
    hr = sum(c.hr_shift_sd for c in conds) * HR_SD
    rr = sum(c.resp_shift_sd for c in conds) * RESP_SD
    mot = float(np.prod([c.motion_factor for c in conds])) if conds else 1.0
    changes = {"hr_range": (cfg.hr_range[0] + hr, cfg.hr_range[1] + hr),
               "resp_range": (cfg.resp_range[0] + rr, cfg.resp_range[1] + rr),
               "motion_per_min": (cfg.motion_per_min[0] * mot, cfg.motion_per_min[1] * mot)}
    if any(c.af for c in conds):
        # af_subject_fraction >= 1/0.3 makes AF certain at every age (the generator scales it
        # by 0.3 + 1.4 x age); permanent AF: burden 1.
        changes.update(af_subject_fraction=10.0, af_permanent_fraction=1.0)
    return dataclasses.replace(cfg, **changes)


def _demographic_draw(rng, c: Condition, age: float, male: bool) -> bool:
    if c.male_only and not male:
        rng.uniform()                      # keep the stream aligned across subjects
        return False
    logit = np.log(c.prevalence / (1 - c.prevalence)) + c.age_log_odds_per_decade * (age - 50.0) / 10.0
    return bool(rng.uniform() < 1.0 / (1.0 + np.exp(-logit)))


@dataclass
class CohortSubject:
    subject_id: str
    age: float
    male: bool
    codes: list[str]
    traits: dict
    observed: dict            # seconds of motion / AF episodes inside the recording


def simulate_cohort_subject(index: int, seed: int, seconds: float,
                            conditions: tuple[Condition, ...]) -> tuple[CohortSubject, np.ndarray, float]:
    """One subject: (its codes and traits, raw PPG (T,), PPG rate). Deterministic in (seed,
    index): planted conditions and sex first, then the simulation, then age-linked codes."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 7]))
    male = bool(rng.uniform() < 0.5)
    has = {c.code: bool(rng.uniform() < c.prevalence) for c in conditions if not c.demographic}
    planted = [c for c in conditions if c.planted and has.get(c.code)]
    rec = generate_subject(index, seed=seed, duration_s=seconds, config=subject_config(planted))
    age = float(rec.meta["traits"]["age"])
    for c in conditions:
        if c.demographic:
            has[c.code] = _demographic_draw(rng, c, age, male)
    sid = f"cohort{int(seed)}_{int(index):04d}"
    codes = [c.code for c in conditions if has[c.code]]
    observed = {f"{k}_s": _seconds_inside(rec.meta["episodes"][k], seconds) for k in ("motion", "af")}
    return CohortSubject(sid, age, male, codes, rec.meta["traits"], observed), rec.ppg.data, rec.ppg.fs


def _seconds_inside(episodes, seconds: float) -> float:
    """Total length of (start, end) episodes within [0, seconds]."""
    ep = np.clip(np.asarray(episodes, float).reshape(-1, 2), 0.0, seconds)
    return float((ep[:, 1] - ep[:, 0]).clip(0).sum())


def _trait_auroc(values: np.ndarray, y: np.ndarray) -> float | None:
    """AUROC of a planted trait for positives against negatives (the ceiling a perfect reader
    of that trait would reach)."""
    from scipy.stats import mannwhitneyu
    if y.all() or not y.any():
        return None
    u = mannwhitneyu(values[y], values[~y], method="asymptotic").statistic
    return float(u / (y.sum() * (~y).sum()))


def truth(subjects: list[CohortSubject], conditions: tuple[Condition, ...]) -> dict:
    """Per condition: strength, mechanism, prevalence in the cohort, planted-trait AUROC and,
    for episodic traits (motion, AF), `observed_auroc`: the AUROC of the episode seconds that
    the recording actually holds, the ceiling for any reader of these recordings (a motion
    rate x6 is seen through the few episodes that fall into 60 s)."""
    tr = {k: np.array([s.traits[k] for s in subjects]) for k in
          ("hr_mean", "resp_rate", "af_burden", "motion_per_min")}
    obs = {k: np.array([s.observed[k] for s in subjects]) for k in ("motion_s", "af_s")}
    age = np.array([s.age for s in subjects])
    out = {}
    for c in conditions:
        y = np.array([c.code in s.codes for s in subjects])
        key = ("af_burden" if c.af else "motion_per_min" if c.motion_factor != 1.0 else "hr_mean"
               if c.hr_shift_sd else "resp_rate" if c.resp_shift_sd else None)
        trait = tr[key] if key else (age if c.demographic else None)
        out[c.code] = {"name": c.name, "strength": c.strength, "mechanism": c.mechanism(),
                       "n_pos": int(y.sum()), "prevalence": float(y.mean()),
                       "trait": key or ("age" if c.demographic else None),
                       "trait_auroc": _trait_auroc(trait, y) if trait is not None else None}
        okey = "af_s" if c.af else "motion_s" if c.motion_factor != 1.0 else None
        if okey:
            out[c.code].update(observed_trait=okey, observed_auroc=_trait_auroc(obs[okey], y))
    return out


def write_cohort(out: str | Path, subjects: int = 400, seconds: float = 60.0, seed: int = 0,
                 spec: SignalSpec | None = None, conditions: tuple[Condition, ...] = DEFAULT_CONDITIONS,
                 overwrite: bool = False) -> dict:
    """Write DIR/store, DIR/diagnoses.csv and DIR/truth.json (atomically, as one folder).
    Returns the truth dict."""
    spec = spec or SPECS["small"]
    if subjects < 2 or seconds < spec.window_s:
        raise ValueError(f"a cohort needs >= 2 subjects and >= {spec.window_s:g} s each "
                         f"(got {subjects}, {seconds:g} s)")
    people: list[CohortSubject] = []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        store = tmp / "store"
        with atomic_dir(store / "parts" / part_name(0, 1)) as part:
            writer = PartWriter(part, spec)
            for i in range(subjects):
                s, ppg, fs = simulate_cohort_subject(i, seed, seconds, conditions)
                w = pp.ppg_windows(ppg, fs, spec)
                n = len(w["x"])
                writer.add({"record_id": s.subject_id, "unit": f"cohort:seed={seed}:subject={i}", "n": n},
                           s.subject_id, subject_split(s.subject_id), w["x"], None,
                           {"age": np.full(n, round(s.age, 1), np.float32),
                            "sex": np.full(n, float(s.male), np.float32)},
                           w["start_s"], w["flags"])
                people.append(s)
            writer.close({"rejected": {}, "errors": [], "units": subjects, "short_records": 0})
        rebuild_index(store, {"source": "synthetic-cohort", "num_shards": 1, "spec": spec.to_dict(),
                              "input": f"subjects={subjects},seconds={seconds:g},seed={seed}",
                              "generator": COHORT_VERSION, "split_fractions": [0.8, 0.1, 0.1],
                              "split_seed": 0, "reject": [], "reader_opts": {}})
        names = {c.code: c.name for c in conditions}
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["subject", "code", "description"])
        for s in people:
            for code in s.codes or [""]:           # an empty code: in the cohort, no diagnosis
                w.writerow([s.subject_id, code, names.get(code, "")])
        atomic_write_text(tmp / "diagnoses.csv", buf.getvalue())
        t = {"generator": COHORT_VERSION, "subjects": subjects, "seconds": seconds, "seed": seed,
             "conditions": truth(people, conditions)}
        atomic_write_json(tmp / "truth.json", t)
    return t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.data.synthetic_cohort",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--subjects", type=int, default=400)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spec", default="small", choices=sorted(SPECS))
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        t = write_cohort(args.out, args.subjects, args.seconds, args.seed, SPECS[args.spec],
                         overwrite=args.overwrite)
    except (ValueError, FileExistsError) as e:
        print(f"synthetic_cohort: error: {one_line(e)}", file=sys.stderr)
        return 1
    for code, c in t["conditions"].items():
        ta, oa = c["trait_auroc"], c.get("observed_auroc")
        print(f"{code:11s} {c['strength']:11s} n+={c['n_pos']:4d}  trait AUROC "
              f"{'-' if ta is None else f'{ta:.2f}'}"
              f"{'' if oa is None else f' (in the recording {oa:.2f})'}  {c['mechanism']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
