"""The diagnoses probe on a synthetic cohort with planted conditions (training.data.synthetic_cohort).

240 subjects x 60 s, encoder random:net1d-small (no training needed), age/sex off to keep it
short. Planted: I48 permanent atrial fibrillation and I50 heart rate +2 SD (strong), G20 motion
artefacts x6 (moderate); null: K21, M54, F32 and the plain label statin_use, drawn independently
of everything. The probe must find the strong codes and reject the null ones at q = 0.05.

Not asserted, because the random-init encoder does not find them reliably: G20 (AUROC 0.73,
q 0.002 in one 240-subject draw, not significant in this one) and E05 (heart rate +1.2 SD,
AUROC 0.60, left out). A moderate effect needs a better encoder than random weights here.
"""
from __future__ import annotations

import json

import pytest

STRONG = ("I48", "I50")
MODERATE = ("G20",)
NULL = ("K21", "M54", "F32", "statin_use")


@pytest.mark.slow
def test_planted_codes_found_and_null_codes_rejected(tmp_path):
    from training.data.synthetic_cohort import DEFAULT_CONDITIONS, write_cohort
    from training.probe import diagnoses as D
    conds = tuple(c for c in DEFAULT_CONDITIONS if c.code in STRONG + MODERATE + NULL)
    truth = write_cohort(tmp_path / "c", subjects=240, seconds=60.0, seed=0, conditions=conds)
    sets = ["inner_folds=3", "bootstrap=50", "null_permutations=40", "permutation_below=10",
            "demographics=false"]
    argv = ["--diagnoses", str(tmp_path / "c" / "diagnoses.csv"), "--store", str(tmp_path / "c" / "store"),
            "--encoder", "random:net1d-small", "--out", str(tmp_path / "r"), "--quiet"]
    assert D.main(argv + [t for s in sets for t in ("--set", s)]) == 0
    rows = {r["code"]: r for r in json.loads((tmp_path / "r" / "diagnoses.json").read_text())["rows"]}
    assert set(rows) == set(STRONG + MODERATE + NULL)
    for code in STRONG:
        assert truth["conditions"][code]["strength"] == "strong"
        assert rows[code]["significant"] and rows[code]["q"] < 0.05, rows[code]
        assert rows[code]["auroc_lo"] > 0.5
    for code in NULL:
        assert not rows[code]["significant"] and rows[code]["q"] >= 0.05, rows[code]
