"""Disease-wide probing (`anyppg probe --diagnoses`): codes, tables, matching, statistics, CLI."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from training.probe import diagnoses as D
from training.probe.diagnoses_codes import chapter_of, match_subjects, normalise_code, read_table
from training.probe.diagnoses_stats import benjamini_hochberg, calibrated_pvalue


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("raw,code,system", [("e11.9", "E11", "icd10"), ("I10", "I10", "icd10"),
                                             ("Z99.89", "Z99", "icd10"), ("S52", "S52", "icd10"),
                                             ("smoker", "smoker", "label"), ("HTN stage 2", "HTN stage 2", "label")])
def test_normalise_code(raw, code, system):
    assert normalise_code(raw) == (code, system)


@pytest.mark.parametrize("code,chapter", [("I10", "IX"), ("E11", "IV"), ("D49", "II"), ("D50", "III"),
                                          ("H59", "VII"), ("H60", "VIII"), ("T14", "XIX"), ("Z72", "XXI"),
                                          ("A00", "I"), ("U07", "XXII")])
def test_icd10_chapters(code, chapter):
    assert chapter_of(code)[0] == chapter


def test_label_chapter():
    assert chapter_of("smoker", "label") == ("", "Other labels")


def test_read_table_collapses_and_keeps_codeless_subjects(tmp_path):
    p = _write(tmp_path / "dx.csv", "Subject ID,ICD10,Description\n"
               "a,E11.9,Type 2 diabetes\na,E11.0,\na,E11.9,\nb,,\nc,I10,Hypertension\nc,smoker,\n")
    t = read_table(p)
    assert t.subjects == ["a", "b", "c"]
    assert t.codes == {"a": {"E11"}, "b": set(), "c": {"I10", "smoker"}}
    assert t.duplicate_rows == 2 and t.raw_rows == 6
    assert t.descriptions["E11"] == "Type 2 diabetes"
    assert t.system["smoker"] == "label"
    assert t.all_codes() == ["E11", "I10", "smoker"]          # chapter IV, IX, then labels


@pytest.mark.parametrize("text,msg", [("", "empty diagnosis table"),
                                      ("who,what\nx,I10\n", "names no subject column"),
                                      ("subject,code\n,I10\n", "line 2 has no subject id")])
def test_read_table_errors_name_the_file(tmp_path, text, msg):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=msg) as e:
        read_table(p)
    assert "bad.csv" in str(e.value)


def test_match_subjects_with_store_prefix():
    mapping, unknown, how = match_subjects(["2", "3", "999"], ["ppgbp_2", "ppgbp_3", "ppgbp_4"])
    assert mapping == {"2": "ppgbp_2", "3": "ppgbp_3"} and unknown == ["999"]
    assert "ppgbp_" in how
    mapping, unknown, how = match_subjects(["s1", "s2"], ["s1", "s3"])
    assert mapping == {"s1": "s1"} and unknown == ["s2"] and how == "exact ids"


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.5, np.nan]
    # sorted 0.01, 0.03, 0.04, 0.5 (m = 4): 0.04, 0.053, 0.053, 0.5
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q[:4], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert np.isnan(q[4])


def test_calibrated_pvalue():
    null = np.array([0.45, 0.5, 0.55, 0.6])
    assert calibrated_pvalue(0.58, null, n_pos=5, permutation_below=30) == (2 / 5, "permutation")
    p, how = calibrated_pvalue(null.mean() + 2 * np.std(null, ddof=1), null, n_pos=50, permutation_below=30)
    assert how == "permutation-normal" and p == pytest.approx(0.02275, abs=1e-4)


def test_pool_embeddings_mean_and_quality_weights():
    z = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    sub = np.array([0, 0, 1])
    np.testing.assert_allclose(D.pool_embeddings(z, sub, 2), [[2.0, 1.0], [5.0, 4.0]])
    flags = np.array([0, 4, 16], np.uint8)          # clipping weighs 0.5; too_short is benign
    w = D.pool_embeddings(z, sub, 2, flags, flagged_weight=0.5)
    np.testing.assert_allclose(w, [[(1 + 1.5) / 1.5, 1.0 / 1.5], [5.0, 4.0]])


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from training.data.synthetic_cohort import DEFAULT_CONDITIONS, write_cohort
    out = tmp_path_factory.mktemp("cohort") / "c"
    conds = tuple(c for c in DEFAULT_CONDITIONS if c.code in ("I48", "I10", "K21", "statin_use", "N40"))
    truth = write_cohort(out, subjects=40, seconds=10.0, seed=3, conditions=conds)
    return out, truth


def _fast_sets(*extra):
    sets = ["min_positives=5", "folds=3", "inner_folds=2", "grid=0.01,1", "bootstrap=20",
            "null_permutations=5"] + list(extra)
    return [tok for s in sets for tok in ("--set", s)]


def test_cohort_files(tiny_cohort):
    out, truth = tiny_cohort
    idx = json.loads((out / "store" / "index.json").read_text())
    assert idx["n_subjects"] == 40 and idx["complete"] and set(idx["label_names"]) == {"age", "sex"}
    rows = list(csv.DictReader((out / "diagnoses.csv").open()))
    assert {r["subject"] for r in rows} == {f"cohort3_{i:04d}" for i in range(40)}
    assert truth["conditions"]["I48"]["trait_auroc"] == 1.0      # AF planted in every positive
    # permanent AF fills every recording: its episode seconds separate as well as the trait
    assert truth["conditions"]["I48"]["observed_trait"] == "af_s"
    assert truth["conditions"]["I48"]["observed_auroc"] == 1.0
    assert "observed_auroc" not in truth["conditions"]["K21"]
    n = sum(1 for r in rows if r["code"] == "N40")
    assert n == truth["conditions"]["N40"]["n_pos"]


def test_cli_end_to_end_two_encoders(tiny_cohort, tmp_path):
    out, _ = tiny_cohort
    table = tmp_path / "dx.csv"
    table.write_text((out / "diagnoses.csv").read_text() + "ghost_1,I10,\n")
    res = tmp_path / "res"
    rc = D.main(["--diagnoses", str(table), "--store", str(out / "store"), "--encoder", "random:net1d-tiny",
                 "--encoder", "random:net1d-tiny:1", "--out", str(res), "--quiet"] + _fast_sets())
    assert rc == 0
    for f in ("diagnoses.csv", "diagnoses.md", "diagnoses.json", "phewas.png", "manifest.json", "scores.npz"):
        assert (res / f).is_file(), f
    result = json.loads((res / "diagnoses.json").read_text())
    assert result["cohort"]["table_ids_not_in_store"] == 1
    assert result["cohort"]["examples_unknown_ids"] == ["ghost_1"]
    assert result["cohort"]["subjects_probed"] == 40
    rows = list(csv.DictReader((res / "diagnoses.csv").open()))
    encs = {r["encoder"] for r in rows}
    assert encs == {"random:net1d-tiny", "random:net1d-tiny:1"}
    tested = {r["code"] for r in rows}
    untested = {u["code"] for u in result["untested"]}
    assert tested | untested == {"I48", "I10", "K21", "statin_use", "N40"} and not tested & untested
    for r in rows:
        assert 0.0 <= float(r["auroc"]) <= 1.0 and 0.0 < float(r["p"]) <= 1.0 and float(r["q"]) >= float(r["p"])
        assert r["auroc_demo"] != ""                  # age and sex are store labels
    md = (res / "diagnoses.md").read_text()
    assert "## Side by side" in md and "AUROC > 0.7" in md


@pytest.mark.parametrize("args,msg", [
    (["--diagnoses", "/nonexistent/dx.csv"], "no such diagnosis table"),
    (["--set", "pool=median"], "pool must be"),
    (["--set", "nope=1"], "unknown config key"),
])
def test_cli_bad_input_is_one_line(tiny_cohort, tmp_path, capsys, args, msg):
    out, _ = tiny_cohort
    base = {"--diagnoses": str(out / "diagnoses.csv")}
    argv = ["--store", str(out / "store"), "--encoder", "random:net1d-tiny", "--out", str(tmp_path / "r")]
    if "--diagnoses" not in args:
        argv += ["--diagnoses", base["--diagnoses"]]
    assert D.main(argv + args) == 1
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_no_matching_subjects(tiny_cohort, tmp_path, capsys):
    out, _ = tiny_cohort
    table = _write(tmp_path / "other.csv", "subject,code\nx1,I10\nx2,\n")
    rc = D.main(["--diagnoses", str(table), "--store", str(out / "store"), "--encoder", "random:net1d-tiny",
                 "--out", str(tmp_path / "r")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "other.csv" in err and "0 subject(s)" in err
