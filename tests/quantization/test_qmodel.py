"""Folding, op checks, the brevitas graph and the QAT stage (no TensorFlow needed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from quantization import qat, qmodel as qm
from quantization.qat_model import StudentLoadError, load_qat_run, require_int8_path

from .conftest import error_lines as _error_lines, randomise_bn, write_distill_run


def _student(name="student-tiny", seed=0, **kw):
    from training.models import build_model
    from training.models import student as student_lib  # noqa: F401
    torch.manual_seed(seed)
    m = build_model(name, **kw).model
    randomise_bn(m, seed)
    m.set_label_norm({"hr": (70.0, 11.0), "sbp": (120.0, 15.0)})
    return m.eval()


@pytest.mark.parametrize("name,kw", [("student-tiny", {}), ("student-xs", {}),
                                     ("student-tiny", {"act": "relu6", "pool_type": "avg",
                                                       "head_hidden": 8, "embed_dim": 12})])
def test_bn_folding_equals_unfolded_model(name, kw):
    m = _student(name, **kw)
    x = torch.randn(5, 1, 1250)
    folded = qm.fold_for_int8(m)
    assert not any(isinstance(mod, nn.BatchNorm1d) for mod in folded.modules())
    # the heads' de-normalisation (z * std + mean) is folded into the head layers too
    assert not any(n.op == "get_attr" for n in folded.graph.nodes)
    with torch.no_grad():
        a, b = m(x), folded(x)
    for u, v in zip(a, b):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-4), float((u - v).abs().max())
    # the original is untouched
    assert any(isinstance(mod, nn.BatchNorm1d) for mod in m.modules())


def test_quant_graph_places_tflite_quantisers():
    m = _student()
    qg = qm.build_quant_model(qm.fold_for_int8(m))
    pts = qg.info.points
    roles = [p.role for p in pts.values()]
    assert roles.count("input") == 1
    # every conv / linear is a brevitas layer fed from a recorded quantiser
    n_layers = sum(isinstance(mod, (nn.Conv1d, nn.Linear)) for mod in m.modules())
    assert len(qg.info.layers) == n_layers
    for li in qg.info.layers.values():
        assert li.input_point in pts
    # ReLU fused into its producer -> unsigned quantiser; hr_confidence -> the LOGISTIC's fixed
    # grid; other heads -> a plain ('none') TFLite tensor (fixed grids for hr and the logits)
    outs = qg.info.outputs
    assert all(pts[p].kind == "none" for n, p in outs.items() if n not in ("embedding", "hr_confidence"))
    assert pts[outs["hr_confidence"]].kind == "logistic"
    grids = {n: qg.get_submodule(outs[n]) for n in ("hr", "af_logit", "quality_logit")}
    assert all(isinstance(q, qm.FixedQuant) for q in grids.values())
    assert float(grids["hr"].scale) * 255 >= 230 and grids["af_logit"].kind == "logit"
    assert sum(isinstance(q, qm.FixedQuant) and q.kind == "softmax" for q in qg.modules()) == 1
    assert pts[qg.info.outputs["embedding"]].kind == "relu"
    assert set(qg.info.outputs) == {"embedding", "hr", "hr_confidence", "af_logit", "quality_logit", "sbp", "dbp"}


def test_fake_quant_close_to_float_and_integers_are_tflite_shaped():
    m = _student()
    folded = qm.fold_for_int8(m)
    qg = qm.build_quant_model(folded)
    x = torch.randn(32, 1, 1250)
    qm.calibrate(qg, [x[:16], x[16:]])
    with torch.no_grad():
        f, q = folded(x), qg(x)
    cos = torch.nn.functional.cosine_similarity(f[0], q[0], dim=1).mean()
    assert cos > 0.99
    spec = qm.quant_spec(qg, x[:1])
    for name, L in spec["layers"].items():
        assert L["weight_int"].dtype == np.int8 and np.abs(L["weight_int"]).max() <= 127    # narrow range
        assert np.abs(L["weight_int"]).reshape(len(L["weight_scale"]), -1).max(1).min() == 127  # per-channel max
        assert L["bias_int"].dtype == np.int32
        np.testing.assert_allclose(L["bias_scale"], L["input_scale"] * L["weight_scale"], rtol=1e-6)
    for p in spec["points"].values():
        assert -128 <= p["tflite_zero_point"] <= 127 and p["tflite_scale"] > 0
        if p["kind"] != "none":
            assert p["tflite_zero_point"] == -128           # uint8 after ReLU == int8 zp -128
    # the deployable float graph (what ONNX carries) is the fake-quant weights in float
    dep = qm.deployable_float(folded, qg, x[:1])
    L = spec["layers"]["stem.conv"]
    w = dep.get_submodule("stem.conv").weight.detach().numpy()
    np.testing.assert_allclose(w, L["weight_int"] * L["weight_scale"][:, None, None], rtol=1e-6)


def test_quant_state_round_trips():
    m = _student()
    folded = qm.fold_for_int8(m)
    qg = qm.build_quant_model(folded)
    x = torch.randn(16, 1, 1250)
    qm.calibrate(qg, [x])
    sd = qg.state_dict()
    qg2 = qm.build_quant_model(qm.fold_for_int8(m))
    qg2.load_state_dict(sd)
    qg2.eval()
    with torch.no_grad():
        for a, b in zip(qg(x), qg2(x)):
            assert torch.equal(a, b)


def test_gelu_refused_naming_the_layer():
    m = _student()
    m.stages[0].block0.act = nn.GELU()
    probs = qm.check_int8_path(m)
    assert any("stages.0.block0.act" in p and "GELU" in p for p in probs), probs
    with pytest.raises(qm.Int8PathError, match="stages.0.block0.act"):
        qm.build_quant_model(qm.fold_for_int8(m))
    with pytest.raises(StudentLoadError, match="stages.0.block0.act"):
        require_int8_path(m, "student-tiny")


def test_unfoldable_batchnorm_and_mean_refused():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(1)
            self.conv = nn.Conv1d(1, 4, 3, padding=1)

        def forward(self, x):
            return (self.conv(self.bn(x)).mean(-1),)
    probs = qm.check_int8_path(Bad().eval())
    assert probs and "bn" in probs[0]


def test_qat_stage_writes_checkpoint_and_manifest(qat_run):
    man = json.loads((qat_run / "manifest.json").read_text())
    assert man["stage"] == "qat"
    assert man["metrics"]["test"]["embedding_cosine_mean"] > 0.9
    m = load_qat_run(qat_run)
    x = torch.randn(3, 1, 1250)
    with torch.no_grad():
        out = m.qg(x)
    assert out[0].shape == (3, m.student.model.embed_dim) and out[1].shape == (3,)


def test_qat_refuses_non_students(tmp_path, qstore, capsys):
    from training.models import build_model
    bad = write_distill_run(tmp_path / "net1d", model_name="student-tiny",
                            state=build_model("net1d-tiny").model.state_dict(),
                            extra={"model_name": "net1d-tiny"})
    rc = qat.main(["--from", str(bad), "--data", str(qstore), "--out", str(tmp_path / "o"), "--quiet"])
    err = _error_lines(capsys.readouterr().err)
    assert rc == 1 and len(err) == 1 and "not a student of the registry" in err[0]
    assert not (tmp_path / "o").exists()


def test_qat_cli_dispatch_and_one_line_errors(tmp_path, capsys):
    from anyppg.cli import main
    rc = main(["qat", "--from", str(tmp_path / "nope"), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = _error_lines(capsys.readouterr().err)
    assert rc == 1 and len(err) == 1 and err[0].startswith("anyppg qat: error:")


def _store_with_band(src: Path, dst: Path, band) -> Path:
    """A copy of a store whose index says it was prepared with another PPG band."""
    import shutil
    shutil.copytree(src, dst)
    idx = json.loads((dst / "index.json").read_text())
    idx["spec"]["ppg_band_hz"] = list(band)
    (dst / "index.json").write_text(json.dumps(idx))
    return dst


@pytest.mark.parametrize("stage", ["qat", "export"])
def test_store_of_another_filter_band_is_refused(stage, tmp_path, distill_run, qat_run, qstore, capsys):
    """qat and export read the store through SignalSpec.check_compatible: a store prepared with
    another band is one line naming the field, and nothing is written."""
    from quantization import export
    other = _store_with_band(qstore, tmp_path / "store", (0.5, 5.0))
    mod, src = (qat, distill_run) if stage == "qat" else (export, qat_run)
    rc = mod.main(["--from", str(src), "--data", str(other), "--out", str(tmp_path / "o"), "--quiet"])
    err = _error_lines(capsys.readouterr().err)
    assert rc == 1 and len(err) == 1 and "ppg_band_hz" in err[0] and "another signal spec" in err[0], err
    assert not (tmp_path / "o").exists()


class _OptionalInput(nn.Module):
    """forward(x, accel=None) like a student with an optional second input."""

    def __init__(self, takes_accel: bool):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.takes_accel = takes_accel

    def forward(self, x, accel=None):
        y = self.conv(x)
        if accel is not None:
            y = y + accel
        return torch.relu(y)


def test_trace_drops_an_optional_input_the_model_does_not_take():
    x = torch.randn(2, 1, 8)
    gm = qm.trace(_OptionalInput(takes_accel=False))
    assert [n.name for n in gm.graph.nodes if n.op == "placeholder"] == ["x"]
    assert torch.equal(gm(x), torch.relu(gm.conv(x)))
    both = qm.trace(_OptionalInput(takes_accel=True))
    assert len([n for n in both.graph.nodes if n.op == "placeholder"]) == 2
    a = torch.randn(2, 2, 8)
    assert torch.allclose(both(x, a), torch.relu(both.conv(x) + a))
