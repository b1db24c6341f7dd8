"""The comparison arms: SimCLR loss, masked label loss, retrieval with its patient oracle, the
arm trainer (checkpoints the probe reads, resume) and the paired bootstrap of the benchmark."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks.bench_teacher_compare import paired_bootstrap
from tests.conftest import set_args
from training.retrieval import retrieval_scores
from training.ssl import main as ssl_main
from training.ssl_losses import masked_mse, nt_xent


def test_nt_xent_matches_the_simclr_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    loss, _ = nt_xent(z1, z2, temperature=0.5)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    terms = []
    for i in range(10):
        j = (i + 5) % 10
        num = math.exp(float(z[i] @ z[j]) / 0.5)
        den = sum(math.exp(float(z[i] @ z[k]) / 0.5) for k in range(10) if k != i)
        terms.append(-math.log(num / den))
    assert float(loss) == pytest.approx(sum(terms) / 10, rel=1e-5)
    # two identical views of well-separated windows: every view finds its partner
    e = torch.eye(6)
    loss_same, top1 = nt_xent(e, e, temperature=0.1)
    assert float(top1) == 1.0 and float(loss_same) < 1e-3


def test_masked_mse_ignores_missing_labels():
    pred = torch.tensor([[1.0, 5.0], [2.0, 0.0]], requires_grad=True)
    y = torch.tensor([[0.0, float("nan")], [4.0, float("nan")]])
    assert float(masked_mse(pred, y).detach()) == pytest.approx((1 + 4) / 2)
    none = masked_mse(pred, torch.full((2, 2), float("nan")))
    none.backward()
    assert float(none) == 0.0 and pred.grad is not None


def test_patient_oracle_is_what_recognising_the_patient_scores():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(6), 30)
    ident = np.eye(6)[subjects]                 # an embedding that knows only the patient
    r = retrieval_scores(ident, ident, subjects.astype(str), batch=32, shuffles=5, rounds=50)
    assert r["uniform"]["top1"] == pytest.approx(r["uniform"]["patient_oracle"], abs=1e-12)
    assert r["within_patient"]["top1"] == pytest.approx(r["within_patient"]["chance"])
    z = rng.standard_normal((180, 64))          # a perfect pairing beats both
    r2 = retrieval_scores(z, z, subjects.astype(str), batch=32, shuffles=2, rounds=50)
    assert r2["uniform"]["top1"] == 1.0 and r2["within_patient"]["top1"] == 1.0
    assert retrieval_scores(z[:10], z[:10], subjects[:10], batch=32)["status"].startswith("not measured")


def test_paired_bootstrap_difference():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 5)
    y = rng.normal(70, 10, 100)
    ref = y + rng.normal(0, 5, 100)
    same = paired_bootstrap("regression", y, groups, {"m": [ref]}, {"m": [ref]}, rounds=100)["m"]
    assert same["diff"] == 0 and same["diff_ci"] == [0.0, 0.0]
    better = y + 0.5 * (ref - y)                # halves every error: MAE lower on every resample
    res = paired_bootstrap("regression", y, groups, {"m": [better, better]}, {"m": [ref, ref]}, rounds=100)["m"]
    assert res["diff"] < 0 and res["diff_ci"][1] < 0 and res["p_better"] == 1.0 and res["seeds"] == 2


TINY = set_args("ppg_model=net1d-tiny", "ecg_model=net1d-ecg-tiny", "batch_size=8", "windows_per_subject=4",
                "max_steps=4", "warmup_steps=1", "log_every=1", "ckpt_every=2", "proj_dim=16")


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["clip", "simclr", "supervised"])
def test_each_arm_trains_and_the_probe_reads_it(objective, paired_store, tmp_path):
    from training.probe.embedders import load_embedder
    out = tmp_path / objective
    assert ssl_main(["--objective", objective, "--data", str(paired_store), "--out", str(out), "--quiet",
                     *TINY, "--set", "corpus.synthetic_fraction=0.5"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["metrics"]["steps"] == 4 and m["metrics"]["complete"]
    assert m["trained_on_subjects"] and all(s.startswith("syn11_") for s in m["trained_on_subjects"])
    if objective == "clip":
        assert m["metrics"]["test_retrieval"]["status"] in ("ok",) or \
            m["metrics"]["test_retrieval"]["status"].startswith("not measured")
    emb = load_embedder(str(out))
    z = emb.embed(np.random.default_rng(0).standard_normal((3, 1250)).astype(np.float32))
    assert z.shape == (3, 32) and np.isfinite(z).all()
    assert emb.seen and set(emb.seen[0].subjects) == set(m["trained_on_subjects"])


@pytest.mark.slow
def test_resume_after_max_minutes_reaches_the_same_weights(paired_store, tmp_path):
    args = ["--objective", "simclr", "--data", str(paired_store), "--quiet", *TINY,
            "--set", "corpus.synthetic_fraction=0.5", "--set", "ppg_encoder_dropout=0.2"]
    assert ssl_main([*args, "--out", str(tmp_path / "a")]) == 0
    # stops at the first checkpoint after the wall-clock budget, then continues
    assert ssl_main([*args, "--out", str(tmp_path / "b"), "--set", "max_minutes=1e-9"]) == 0
    part = json.loads((tmp_path / "b" / "manifest.json").read_text())["metrics"]
    assert not part["complete"] and part["steps"] < 4
    assert ssl_main([*args, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = torch.load(tmp_path / "a" / "checkpoints" / "latest.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    log = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_bad_objective_and_existing_run_are_one_line_errors(tmp_path, capsys):
    assert ssl_main(["--out", str(tmp_path / "x"), "--set", "objective=byol",
                     "--set", "corpus.synthetic_fraction=1"]) == 1
    assert "objective" in capsys.readouterr().err
    assert ssl_main(["--out", str(tmp_path / "y"), "--data", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("training.ssl: error:") and "\n" not in err
