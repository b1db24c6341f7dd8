"""The diagnoses probe on a synthetic cohort with planted conditions (training.data.synthetic_cohort).

Planted effects (AUROC of the planted trait for positives against everyone else; the cohort's
HR trait is uniform 50-110 bpm, SD 17.3 bpm):
  strong    I48  permanent atrial fibrillation                    trait AUROC 1.0
            I50  heart rate +2 SD (+34.6 bpm)                     trait AUROC ~0.85-0.96
  moderate  E05  heart rate +1.2 SD (+20.8 bpm)                   trait AUROC ~0.71-0.80 in a draw
            G20  motion-artefact rate x6                          0.93 for the rate, but what 60 s
                 of recording hold (the episode seconds) reaches only ~0.72-0.80 (truth.json
                 `observed_auroc`): the ceiling of any reader of these recordings
  null      K21, M54, F32, statin_use (a plain label): drawn independently of everything.
The probe must find the strong and moderate codes (q < 0.05, AUROC CI above 0.5) and reject
the null ones (q >= 0.05). Encoder: `features` (training.probe.feature_encoder: rate, beat
interval variability, respiration, pulse shape, motion/quality), because it represents the
physiology that the conditions change; a random-init net1d-small reached E05 0.60 and G20
0.64-0.73 and missed them.

Power (why 400 subjects x 60 s): the features encoder reads the moderate codes at AUROC
~0.63-0.73 (seeds 0-4). The permutation null of the pooled cross-validated AUROC has SD ~0.07
at 240 subjects (~29 positives) and ~0.047 at 400 (~48); with 4-6 of these 8 codes found,
Benjamini-Hochberg passes p below ~0.03, i.e. AUROC above 0.5 + 1.9 SD: ~0.63 at 240, ~0.59 at
400. At an expected ~0.68 with an SE of ~0.06 (240) or ~0.045 (400), each moderate code is found
with probability ~0.8 at 240 and ~0.95 at 400 (at 240 subjects, seed 1 missed G20 at 0.61).

Outside the test, the same settings on cohort seeds 0-4 (400 subjects; `python -m
benchmarks.bench_diagnoses --skip-ppgbp --synthetic --seeds 0,1,2,3,4 ...`, command in its
docstring), AUROC (q) of E05, G20 | the largest null AUROC and the smallest null q:
  seed 0: 0.65 (0.001), 0.73 (2e-6) | 0.59, 0.0501 (M54 and statin_use, p 0.038 and 0.033:
          a hair above BH's threshold with six discoveries of eight)
  seed 1: 0.67 (0.002), 0.63 (0.056: G20 missed, p 0.028; its CI [0.54, 0.72] clears 0.5, and
          the recording's own ceiling is 0.72 in this draw) | 0.56, 0.13
  seed 2: 0.73 (2e-7), 0.71 (8e-5) | 0.48, 0.83
  seed 3: 0.69 (0.002), 0.71 (2e-6) | 0.53, 0.40
  seed 4: 0.71 (0.002), 0.66 (0.002) | 0.52, 0.62
Moderate codes: 9 of 10 found; null codes: 20 of 20 rejected, two of them narrowly. FDR control
promises no more than that: a null code passes with probability ~0.03 here, so about one cohort
in eight would hold a false discovery among four nulls. The test runs seed 2, one of the three
draws where every claim holds; seeds 0 and 1 are the near misses above.
"""
from __future__ import annotations

import json

import pytest

STRONG = ("I48", "I50")
MODERATE = ("E05", "G20")
NULL = ("K21", "M54", "F32", "statin_use")
SUBJECTS, SECONDS, SEED = 400, 60.0, 2
SETTINGS = ["inner_folds=3", "bootstrap=50", "null_permutations=40", "permutation_below=10",
            "demographics=false"]


@pytest.mark.slow
def test_planted_codes_found_and_null_codes_rejected(tmp_path):
    from training.data.synthetic_cohort import DEFAULT_CONDITIONS, write_cohort
    from training.probe import diagnoses as D
    conds = tuple(c for c in DEFAULT_CONDITIONS if c.code in STRONG + MODERATE + NULL)
    truth = write_cohort(tmp_path / "c", subjects=SUBJECTS, seconds=SECONDS, seed=SEED, conditions=conds)
    planted = truth["conditions"]
    assert {c: planted[c]["strength"] for c in STRONG + MODERATE} == {
        "I48": "strong", "I50": "strong", "E05": "moderate", "G20": "moderate"}
    assert 0.7 <= planted["E05"]["trait_auroc"] <= 0.85 and 0.7 <= planted["G20"]["observed_auroc"] <= 0.85
    argv = ["--diagnoses", str(tmp_path / "c" / "diagnoses.csv"), "--store", str(tmp_path / "c" / "store"),
            "--encoder", "features", "--out", str(tmp_path / "r"), "--quiet"]
    assert D.main(argv + [t for s in SETTINGS for t in ("--set", s)]) == 0
    rows = {r["code"]: r for r in json.loads((tmp_path / "r" / "diagnoses.json").read_text())["rows"]}
    assert set(rows) == set(STRONG + MODERATE + NULL)
    for code in STRONG + MODERATE:
        assert rows[code]["significant"] and rows[code]["q"] < 0.05, rows[code]
        assert rows[code]["auroc_lo"] > 0.5, rows[code]
    for code in NULL:
        assert not rows[code]["significant"] and rows[code]["q"] >= 0.05, rows[code]
