"""bench_wrist with the accelerometer: float students from run folders, the accel input from a
store (zeros where a set has none), and the paired comparison of two models on the same windows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_wrist as bw
from tests.conftest import write_distill_run


def test_paired_models_sees_a_real_difference_overall_and_at_coverage():
    rng = np.random.default_rng(0)
    subject = np.repeat(np.arange(8), 25)
    y = rng.uniform(60, 160, len(subject))
    conf = rng.uniform(0, 1, len(y))
    a = {"hr": y + rng.normal(0, 1, len(y)), "hr_confidence": conf}
    b = {"hr": y + rng.normal(0, 1, len(y)) + 10.0, "hr_confidence": conf}
    r = bw.paired_models({"hr": y, "subject": subject}, a, b)
    assert r["diff"]["ci95"][1] < -8 and r["diff_at_80%"]["ci95"][1] < -8
    same = bw.paired_models({"hr": y, "subject": subject}, a, a)
    assert same["diff"]["mean"] == 0 and same["diff_at_80%"]["ci95"] == [0.0, 0.0]


def test_accel_model_gets_the_store_accel_or_zeros():
    class M:
        inputs = [{"name": "ppg"}, {"name": "accel"}]
    ppg = np.zeros((2, 1250), np.float32)
    assert not bw.model_inputs(M, {"ppg": ppg})["accel"].any()
    acc = np.ones((2, 1250, 3), np.float32)
    assert bw.model_inputs(M, {"ppg": ppg, "accel": acc})["accel"] is acc
    M.inputs = [{"name": "ppg"}]
    assert set(bw.model_inputs(M, {"ppg": ppg, "accel": acc})) == {"ppg"}


@pytest.mark.slow
def test_float_accel_student_against_a_ppg_student_on_a_store(wrist_store, tmp_path, capsys):
    acc_run = write_distill_run(tmp_path / "acc", "student-wrist-accel-s", seed=1)
    ppg_run = write_distill_run(tmp_path / "ppg", "student-wrist-s", seed=2)
    out = tmp_path / "bench.json"
    assert bw.main(["--model", str(acc_run), "--against", str(ppg_run), "--store", str(wrist_store),
                    "--split", "train", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["sets"][0]
    assert r["student"] == "float student" and "float student" in r["rows"]
    assert "paired on the same windows" in capsys.readouterr().out
    assert r["against"]["mae"][0] == pytest.approx(r["rows"]["float student"]["mae"])
    alone = tmp_path / "alone.json"          # the --against column is that model on the same windows
    assert bw.main(["--model", str(ppg_run), "--store", str(wrist_store), "--split", "train",
                    "--json", str(alone)]) == 0
    solo = json.loads(alone.read_text())["sets"][0]["rows"]["float student"]["mae"]
    assert r["against"]["mae"][1] == pytest.approx(solo)
    assert bw.main(["--model", str(tmp_path / "nope"), "--store", str(wrist_store)]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
