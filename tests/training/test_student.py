"""Student models: budgets, int8-MCU op set, named outputs, ONNX export, 2-D twin, augmentations."""
import pytest
import torch
from torch import nn

from training.data.augment import AugmentConfig, augment
from training.models import build_model, count_macs, count_params, list_models
from training.models import student as S

TEACHER_MACS = 108_631_232          # anyppg-net1d per 1250-sample window (registry docstring)


def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model


def test_students_are_registered():
    assert {"student-xs", "student-s", "student-m", "student-tiny"} <= set(list_models())


def test_student_s_budget():
    e = build_model("student-s")
    params = count_params(e.model)
    macs = count_macs(e.model, (1, 1, 1250))
    assert params <= 50_000
    # ~1/100 of the teacher: within 1/150 .. 1/70
    assert TEACHER_MACS / 150 <= macs <= TEACHER_MACS / 70, macs


@pytest.mark.parametrize("name,lo,hi", [("student-xs", 5_000, 15_000), ("student-m", 100_000, 200_000),
                                        ("student-tiny", 100, 3_000)])
def test_other_budgets(name, lo, hi):
    assert lo <= count_params(build_model(name).model) <= hi


@pytest.mark.parametrize("name", S.STUDENT_MODELS)
def test_named_outputs_and_op_check(name):
    e = build_model(name)
    assert S.unsupported_op_check(e.model) == []
    assert e.input_kind == "ppg" and e.input_shape == (1, 1250)
    out = e.model.eval()(torch.randn(3, 1, 1250))
    # the contract's required outputs in its order, then only the configured optional heads
    # (student-wrist-s: none; the others: sbp, dbp; rr never by default)
    required = ("embedding", "hr", "hr_confidence", "af_logit", "quality_logit")
    assert out._fields == required + tuple(h for h in ("rr", "sbp", "dbp") if h in e.model.config.extra_heads)
    assert "rr" not in out._fields
    assert out._fields == e.model.output_fields
    assert out.embedding.shape == (3, e.embed_dim)
    for f in out._fields[1:]:
        assert getattr(out, f).shape == (3,)
    assert ((out.hr >= 30) & (out.hr <= 230)).all()               # expectation over the bins
    assert ((out.hr_confidence > 0) & (out.hr_confidence < 1)).all()


def test_optional_heads_follow_the_contract_order():
    m = build_model("student-tiny", extra_heads=("dbp", "rr")).model.eval()
    assert m.output_fields == ("embedding", "hr", "hr_confidence", "af_logit", "quality_logit", "rr", "dbp")
    assert build_model("student-tiny", extra_heads=()).model.output_fields[-1] == "quality_logit"
    with pytest.raises(ValueError, match="extra_heads"):
        S.StudentConfig(extra_heads=("spo2",))


def test_hr_readout_is_the_expectation_over_the_contract_bins():
    from edge_runtime.contract import hr_bin_centres
    m = build_model("student-tiny").model.eval()
    logits = torch.full((2, len(S.HR_BINS)), -30.0)
    logits[0, 0] = 30.0                          # all mass on the first bin
    logits[1, 10:12] = 30.0                      # half on two neighbours
    hr = m.hr_expectation(logits)
    bins = hr_bin_centres()
    torch.testing.assert_close(hr, torch.tensor([bins[0], (bins[10] + bins[11]) / 2]))


def test_op_check_names_the_offending_layer():
    m = build_model("student-tiny").model
    m.stages[1].block0.act = nn.GELU()
    problems = S.unsupported_op_check(m)
    assert len(problems) == 1 and problems[0].startswith("stages.1.block0.act: GELU")

    seq = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Conv1d(4, 4, 3, stride=2, padding=1),
                        nn.Conv1d(4, 8, 3, padding=1, groups=2), nn.LayerNorm(8))
    names = [p.split(":")[0] for p in S.unsupported_op_check(seq, trace=False)]
    assert names == ["1", "2", "3"]     # strided+padded (PAD op), grouped, LayerNorm


def test_op_check_catches_functional_ops():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 3, padding=1)

        def forward(self, x):
            return torch.nn.functional.gelu(self.conv(x)).mean(-1)

    problems = S.unsupported_op_check(Bad())
    assert any("gelu" in p for p in problems) and any("mean" in p and "AvgPool" in p for p in problems)


def test_head_denormalisation_is_in_the_graph():
    m = build_model("student-tiny").model.eval()
    x = torch.randn(2, 1, 1250)
    before = m(x)
    m.set_label_norm({"hr": (100.0, 20.0), "sbp": (130.0, 10.0), "af": (5.0, 5.0)})      # binary heads ignore it
    after = m(x)
    hz = m.head_z(after.embedding)
    torch.testing.assert_close(after.hr, hz.z[:, 0] * 20.0 + 100.0)
    torch.testing.assert_close(after.hr, before.hr)            # hr is not de-normalised
    torch.testing.assert_close(after.sbp, hz.z[:, S.HEAD_NAMES.index("sbp")] * 10.0 + 130.0)
    torch.testing.assert_close(after.af_logit, before.af_logit)
    assert "label_mean" in m.state_dict() and m.label_norm()["hr"] == (100.0, 20.0)


def test_config_validation():
    with pytest.raises(ValueError, match="does not divide"):
        S.StudentConfig(pools=(3, 5, 5, 5))
    with pytest.raises(ValueError, match="odd"):
        S.StudentConfig(kernels=(7, 6, 5, 5))
    with pytest.raises(ValueError, match="unknown override"):
        build_model("student-s", width=3)
    e = build_model("student-s", widths=[24, 32, 64, 96])      # probes pass lists back
    assert e.embed_dim == 96 and e.config["widths"] == [24, 32, 64, 96]


def test_onnx_export_student_s(tmp_path):
    onnx = pytest.importorskip("onnx")
    m = _randomise_bn(build_model("student-s").model).eval()
    x = torch.randn(1, 1, 1250)
    path = tmp_path / "s.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=False, opset_version=13, input_names=["ppg"],
                      output_names=list(m.output_fields))
    g = onnx.load(str(path))
    ops = {n.op_type for n in g.graph.node}
    assert ops <= {"Conv", "Relu", "Add", "MaxPool", "AveragePool", "Flatten", "Gemm", "Squeeze",
                   "Mul", "Constant", "Identity", "Softmax", "Sigmoid"}, ops
    assert {"Softmax", "Sigmoid"} <= ops
    assert [o.name for o in g.graph.output] == list(m.output_fields)
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(str(path)).run(None, {"ppg": x.numpy()})
    with torch.no_grad():
        want = m(x)
    for a, b in zip(got, want):
        assert abs(a - b.numpy()).max() < 1e-4


def test_augment_reproducible_and_in_contract():
    x = torch.randn(6, 1, 1250)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True, unbiased=False)
    keep = x.clone()
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(x, keep)                       # input untouched
    assert a.shape == x.shape and torch.isfinite(a).all()
    torch.testing.assert_close(a.mean(-1), torch.zeros(6, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.std(-1, unbiased=False), torch.ones(6, 1), atol=1e-4, rtol=0)
    # everything off: identity (up to the re-z-score of an already z-scored window)
    off = AugmentConfig(p_amplitude=0, p_baseline=0, p_shift=0, p_noise=0, p_dropout=0)
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(0), off), x, atol=1e-5, rtol=0)


def test_augment_shift_pads_with_edges():
    x = torch.arange(1250.0).repeat(2, 1, 1)
    only_shift = AugmentConfig(p_amplitude=0, p_baseline=0, p_shift=1.0, p_noise=0, p_dropout=0)
    y = augment(x, torch.Generator().manual_seed(1), only_shift)
    z = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True, unbiased=False)
    d = y - z
    assert d.abs().max() > 0
    # a shifted ramp stays monotone (edge padding, no wrap-around)
    assert (y[..., 1:] - y[..., :-1] >= -1e-6).all()


def test_augment_inverts_polarity_only_when_asked_and_leaves_other_draws_alone():
    x = torch.randn(64, 1, 1250)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True, unbiased=False)
    base = augment(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(5), AugmentConfig(p_invert=0.0)), base)
    y = augment(x, torch.Generator().manual_seed(5), AugmentConfig(p_invert=0.5))
    flipped = (y + base).abs().amax(-1).squeeze(1) < 1e-5          # exactly -base
    kept = (y - base).abs().amax(-1).squeeze(1) < 1e-5
    assert (flipped | kept).all() and 16 < int(flipped.sum()) < 48


def test_hr_bin_loss_prefers_the_labelled_bin_and_trains_confidence():
    from training.losses import hr_bin_losses
    bins = torch.tensor(S.HR_BINS)
    y = torch.tensor([150.0, float("nan")])
    right = -0.5 * ((bins - 150) / 3) ** 2 + torch.zeros(2, 1)       # the soft label itself
    wrong = -0.5 * ((bins - 62) / 3) ** 2 + torch.zeros(2, 1)
    sure, unsure = torch.full((2,), 5.0), torch.full((2,), -5.0)
    assert hr_bin_losses(right, sure, bins, y) < hr_bin_losses(wrong, sure, bins, y)
    # confidence: right answer -> high confidence is cheaper; wrong answer -> low confidence is
    assert hr_bin_losses(right, sure, bins, y) < hr_bin_losses(right, unsure, bins, y)
    assert hr_bin_losses(wrong, unsure, bins, y) < hr_bin_losses(wrong, sure, bins, y)
    assert hr_bin_losses(right, sure, bins, torch.full((2,), float("nan"))) == 0
