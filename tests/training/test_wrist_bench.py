"""benchmarks.bench_wrist: scoring rules (coverage, imputation, confidence curve, paired CI)
and its refusal of a model that lacks the contract's outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_wrist as bw


def test_coverage_curve_ranks_by_confidence():
    err = np.array([1.0, 2.0, 30.0, 40.0, 3.0])
    conf = np.array([0.9, 0.8, 0.1, 0.2, 0.7])
    curve = bw.coverage_curve(err, conf, coverages=(1.0, 0.6, 0.2))
    assert [c["mae"] for c in curve] == pytest.approx([np.mean(err), 2.0, 1.0])
    assert curve[1]["min_confidence"] == pytest.approx(0.7)


def test_paired_bootstrap_sees_a_real_difference():
    rng = np.random.default_rng(0)
    subject = np.repeat(np.arange(10), 20)
    a = rng.uniform(0, 2, 200)
    mean, lo, hi = bw.paired_bootstrap(a, a + 5.0, subject, n=300)
    assert mean == pytest.approx(-5.0) and lo == pytest.approx(-5.0) and hi == pytest.approx(-5.0)
    mean, lo, hi = bw.paired_bootstrap(a, rng.uniform(0, 2, 200), subject, n=300)
    assert lo < 0 < hi


def test_score_set_imputes_failures_with_the_training_mean():
    fs, n = 125.0, 1250
    t = np.arange(n) / fs
    hr = np.array([60.0, 90.0, 120.0, 150.0])
    x = np.stack([np.sin(2 * np.pi * h / 60 * t) for h in hr]).astype(np.float32)
    x[3] = 0.0                                   # a flat window: every classical method fails
    data = {"ppg": x, "hr": hr, "flags": np.zeros(4, np.uint8), "subject": np.array(["a", "a", "b", "b"])}
    out = {"hr": hr + np.array([1.0, -2.0, 40.0, 0.0]), "hr_confidence": np.array([0.9, 0.8, 0.1, 0.7])}
    r = bw.score_set("toy", data, out, train_mean=100.0, decision_min=0.5)
    s = r["rows"]["int8 student"]
    assert s["mae"] == pytest.approx(43 / 4)
    assert s["at_decision"]["coverage"] == pytest.approx(0.75) and s["at_decision"]["mae"] == pytest.approx(1.0)
    # the floor for any confidence: errors 0, 1, 2, 40 -> keeping 3 of 4 at best gives 1.0
    ideal = {c["coverage"]: c["mae"] for c in s["ideal_curve"]}
    assert ideal[1.0] == pytest.approx(43 / 4) and ideal[0.7] == pytest.approx(1.0)
    assert all(i["mae"] <= c["mae"] + 1e-12 for i, c in zip(s["ideal_curve"], s["curve"]))
    assert s["share_off_by_20_bpm"] == pytest.approx(0.25)
    # spectral support: a clean sinusoid puts its power at its own rate, not 40 bpm away
    sup = bw.spectral_support(x[:3], out["hr"][:3], fs)
    assert sup[0] > 0.9 and sup[1] > 0.5 and sup[2] < 0.05
    spec = r["rows"]["spectral peak"]
    assert spec["coverage"] == pytest.approx(0.75)
    assert spec["mae"] < 1.0                     # clean sinusoids: the peak is right
    assert spec["mae_imputed"] == pytest.approx((3 * spec["mae"] + 50.0) / 4, abs=1e-6)
    assert r["rows"]["training mean"]["mae"] == pytest.approx(np.abs(hr - 100).mean())


def test_refuses_a_model_without_hr_confidence(tmp_path, capsys):
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(b"\0")
    model.with_suffix(".json").write_text(json.dumps({
        "schema_version": 1, "input": {"name": "ppg"},
        "outputs": [{"name": "embedding"}, {"name": "hr"}]}))
    assert bw.main(["--model", str(model), "--troika", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model_int8.json" in err and "hr_confidence" in err


def test_where_selects_store_windows_by_a_label_and_names_bad_input(qstore):
    from benchmarks.bench_wrist import BenchError, _where, store_set
    from training.data.store import WindowStore
    assert _where("af=1") == ("af", 1.0)
    with pytest.raises(BenchError, match="expected LABEL=NUMBER"):
        _where("af=yes")
    spec = WindowStore(qstore, "train").spec
    every = store_set(str(qstore), "train", spec)
    af = store_set(str(qstore), "train", spec, ("af", 1.0))
    no_af = store_set(str(qstore), "train", spec, ("af", 0.0))
    assert len(af["hr"]) + len(no_af["hr"]) == len(every["hr"]) and len(af["hr"]) < len(every["hr"])
    with pytest.raises(BenchError, match="no label 'mood'"):
        store_set(str(qstore), "train", spec, ("mood", 1.0))
