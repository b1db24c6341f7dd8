"""benchmarks.bench_int8_cosine on the session's tiny QAT run: its headline is the same 1 - cos
QAT's own comparison computes, each ablation restores the model, and bad input is one line."""
import json

import numpy as np
import pytest
import torch

from benchmarks import bench_int8_cosine as bic
from quantization.qat import compare
from quantization.qat_model import load_qat_run
from training.data.store import WindowStore


def test_budget_matches_qat_compare_and_restores_the_model(qat_run, qstore, tmp_path, capsys):
    out = tmp_path / "cos.json"
    assert bic.main(["--qat", str(qat_run), "--store", str(qstore), "--split", "test", "--windows", "16",
                     "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    m = load_qat_run(qat_run)
    _, x = WindowStore(qstore, split="test").sample_ppg(16, bic.PARITY_SEED)
    ref = compare(m.folded, m.qg, x)
    assert r["windows"] == ref["n_windows"] == len(x)
    assert r["one_minus_cos"] == pytest.approx(1 - ref["embedding_cosine_mean"], abs=1e-6)
    n_points = sum(isinstance(mod, bic.qm.ActQuant) for mod in m.qg.modules())
    assert len(r["per_point"]) == n_points >= 5
    assert all(np.isfinite(v) and v >= -1e-6 for v in r["per_point"].values())
    assert set(r["ranges_scaled"]) == {"0.9", "0.8"} and r["input_widened"]["low"] == -8.0
    # a second run gives the same figures: every ablation put the model back
    r2 = bic.budget(qat_run, qstore, "test", 16)
    assert r2["one_minus_cos"] == r["one_minus_cos"] and r2["per_point"] == r["per_point"]
    assert "one activation quantiser exact" in capsys.readouterr().out


def test_everything_exact_is_the_float_student(distill_run, qstore):
    """Before any QAT step the quantised graph's weights are the float student's: with every
    activation quantiser exact and every weight in float it must compute the float student's
    embedding, so the bench's 'exact' removes all of the quantisation and nothing else."""
    from quantization.qat_model import load_distilled, prepare
    student, _ = load_distilled(distill_run)
    m = prepare(student)
    _, x = WindowStore(qstore, split="train").sample_ppg(32, 0)
    xt = torch.from_numpy(x).unsqueeze(1)
    bic.qm.calibrate(m.qg, [xt])
    acts = [mod for mod in m.qg.modules() if isinstance(mod, bic.qm.ActQuant)]
    layers = [mod for mod in m.qg.modules() if isinstance(mod, bic.qm.QLayer)]
    sg = [mod for mod in m.qg.modules() if isinstance(mod, bic.qm.SameGrid)]
    with torch.no_grad():
        fe = m.folded(xt).embedding.numpy()
        quant = m.qg(xt).embedding.numpy()
        with bic.patched(layers, bic._float_layer), bic.patched(acts, bic._exact_act), \
                bic.patched(sg, lambda mod: (lambda v, ref: v)):
            exact = m.qg(xt).embedding.numpy()
    np.testing.assert_allclose(exact, fe, rtol=1e-4, atol=1e-5)
    assert np.abs(quant - fe).max() > 100 * np.abs(exact - fe).max()     # the int8 graph differs


def test_bad_input_is_one_line(tmp_path, qstore, capsys):
    assert bic.main(["--qat", str(tmp_path / "none"), "--store", str(qstore)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_int8_cosine: error:")
