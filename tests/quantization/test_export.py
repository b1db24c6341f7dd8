"""The conversion path end to end: ONNX -> onnx2tf -> depthwise / QAT-range rewrites -> audit ->
parity, on student-tiny. One export (onnx2tf twice: determinism) is shared by these tests."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from edge_runtime import tflite_file as tff
from edge_runtime.contract import (DEFAULT_DECISION, OUTPUTS, REQUIRED_OUTPUTS, SIDECAR_SCHEMA_VERSION,
                                    check_ports)
from edge_runtime.hr_refine import HRRefine
from edge_runtime.polarity import VOTE_WINDOWS, from_sidecar
from quantization import op_audit, qat, qat_model, qat_ranges, qmodel as qm, tflite_edit as tedit
from quantization.onnx_export import QDQ_OPS, export_onnx, onnx_op_counts

from .conftest import error_lines as _error_lines

pytestmark = pytest.mark.toolchain
FIELDS = ["embedding", "hr", "hr_confidence", "af_logit", "quality_logit", "sbp", "dbp"]


def test_onnx_is_plain_float_not_qcdq(tmp_path, qat_run):
    """We do NOT take brevitas' QCDQ route: onnx2tf drops QuantizeLinear/DequantizeLinear pairs
    and the float graph it rebuilds from a QCDQ model does not compute what onnxruntime does (see
    ../shared/DESIGN.md). The exported graph is the BN-folded float student whose
    weights are the dequantised QAT integers; the integers come back out of TFLite's converter
    and the QAT activation ranges are written into the .tflite afterwards (qat_ranges)."""
    m = qat_model.load_qat_run(qat_run)
    x = torch.randn(2, 1, 1250)
    dep = qm.deployable_float(m.folded, m.qg, x[:1])
    names = export_onnx(dep, tmp_path / "m.onnx", 1250)
    assert names == FIELDS
    ops = onnx_op_counts(tmp_path / "m.onnx")
    assert not set(ops) & set(QDQ_OPS), ops
    assert "BatchNormalization" not in ops and "Conv" in ops and "Gemm" in ops
    import onnx
    g = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [o.name for o in g.output] == FIELDS and [i.name for i in g.input] == ["ppg"]


def test_export_files_and_sidecar(export_dir):
    for f in ("model.onnx", "model_int8.tflite", "model_int8_calib.tflite", "model_int8.json",
              "model_int8_calib.json", "audit.json", "parity.json", "parity.md", "qat_ranges.json",
              "manifest.json"):
        assert (export_dir / f).is_file(), f
    assert not any(p.name.startswith(".") for p in export_dir.parent.iterdir())   # no temp leftovers
    side = json.loads((export_dir / "model_int8.json").read_text())
    assert side["schema_version"] == SIDECAR_SCHEMA_VERSION == 2
    (inp,) = side["inputs"]
    assert inp["name"] == "ppg" and inp["dtype"] == "int8" and inp["shape"] == [1, 1250, 1]
    assert [o["name"] for o in side["outputs"]] == FIELDS
    assert [o["kind"] for o in side["outputs"]] == [OUTPUTS[n].kind for n in FIELDS]
    assert set(side["decision"]) == set(DEFAULT_DECISION)
    assert 0 <= side["decision"]["hr_confidence_min"] < 1
    check_ports(side, require=REQUIRED_OUTPUTS)
    assert [o["position"] for o in side["outputs"]] == list(range(7))
    assert side["outputs"][1]["unit"] == "bpm" and side["spec"]["ppg_fs"] == 125.0
    assert "hr" in side["label_norm"]
    # the sidecar is the truth about the file: indices, names and quantisation agree with it
    model = tff.load_model((export_dir / "model_int8.tflite").read_bytes())
    io = tff.io_binding(model)
    for o, e in zip(side["outputs"], io["outputs"]):
        assert (o["index"], o["scale"], o["zero_point"]) == (e["index"], e["scale"], e["zero_point"])
        assert e["tensor_name"] == o["name"] and e["signature_name"] == o["name"]
    assert io["inputs"][0]["tensor_name"] == "ppg"
    man = json.loads((export_dir / "manifest.json").read_text())
    assert man["metrics"]["determinism"]["byte_identical"] is True
    assert man["metrics"]["output_binding"]["signature_agrees"] is True
    # the HR refinement: chosen on the validation split's windows, written only where it helped
    ref = man["metrics"]["decision"]["hr_refine"]
    assert len(ref["grid"]) >= 4 and ("hr_refine" in side) == (ref["status"] == "used")
    if "hr_refine" in side:
        assert HRRefine.from_sidecar(side).to_dict() == ref["chosen"]
        assert ref["hr_mae"] < ref["network_hr_mae"]
    # the stream's default polarity: auto only where the vote was right on nearly every
    # validation recording, each recording's verdict being the stream's own vote
    pol = man["metrics"]["decision"]["polarity"]
    per = pol["per_recording"]
    assert pol["recordings"] == len(per) >= 1 and pol["wrong"] == sum(not r["right"] for r in per)
    assert all(r["right"] == (r["confidence_up"] > r["confidence_down"]) for r in per)
    reliable = len(per) >= pol["min_recordings"] and pol["wrong"] <= pol["max_wrong"] * len(per)
    assert from_sidecar(side) == ("auto" if reliable else "up", VOTE_WINDOWS)


def test_op_audit_passes_on_exported_files(export_dir):
    for f in ("model_int8.tflite", "model_int8_calib.tflite"):
        rep = op_audit.audit(export_dir / f)
        assert rep["ok"], rep["errors"]
        assert not rep["warnings"], rep["warnings"]                     # no grouped conv left
        assert "DEPTHWISE_CONV_2D" in rep["ops"] and "AVERAGE_POOL_2D" in rep["ops"]
        assert not {"QUANTIZE", "DEQUANTIZE", "TRANSPOSE", "MEAN"} & set(rep["ops"])
        assert rep["edgetpu"]["full_int8_io"] and rep["edgetpu"]["batch_1"]


def test_op_audit_fails_properly(export_dir):
    src = (export_dir / "model_int8.tflite").read_bytes()
    s = tff.schema()
    # a float activation on the path
    m = tff.load_model(src)
    sg = m.subgraphs[0]
    act = int(sg.operators[1].outputs[0])
    sg.tensors[act].type = s.TensorType.FLOAT32
    rep = op_audit.audit(tedit.save_model(m))
    assert not rep["ok"] and any("FLOAT32" in e for e in rep["errors"])
    # a stray DEQUANTIZE and a custom (Flex) op
    m = tff.load_model(src)
    m.subgraphs[0].operators[0].opcodeIndex = tedit.opcode_index(m, "DEQUANTIZE")
    oc = s.OperatorCodeT()
    oc.builtinCode = s.BuiltinOperator.CUSTOM
    oc.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    oc.customCode = b"FlexErf"
    m.operatorCodes.append(oc)
    m.subgraphs[0].operators[1].opcodeIndex = len(m.operatorCodes) - 1
    rep = op_audit.audit(tedit.save_model(m))
    errs = " ".join(rep["errors"])
    assert not rep["ok"] and "stray DEQUANTIZE" in errs and "custom/Flex" in errs
    assert rep["edgetpu"]["first_unsupported_op"] == 0


def test_grouped_conv_rewritten_to_depthwise_bit_exact(export_dir, test_windows):
    raw = (export_dir / "onnx2tf_full_integer_quant.tflite").read_bytes()
    rep = op_audit.audit(raw)
    assert rep["grouped_conv_ops"], "onnx2tf emitted true depthwise ops; the rewrite is moot"
    new, info = op_audit.grouped_to_depthwise(raw)
    assert info["rewritten"] == rep["grouped_conv_ops"] and not info["skipped"]
    assert op_audit.audit(new)["grouped_conv_ops"] == []
    v = op_audit.verify_same_outputs(raw, new, test_windows)
    # the rewrite changes nothing on either engine. (Across engines, a head value on a rounding
    # tie may differ by 1 LSB: LiteRT's reference FULLY_CONNECTED rounds once, TFLM's twice; see
    # quantization.parity. The QAT file's cross-engine exactness is test_parity's.)
    assert v["litert_ref_identical"] and v["tflm_identical"]


def test_tflite_weights_are_brevitas_integers(export_dir, qat_run, test_windows):
    m = qat_model.load_qat_run(qat_run)
    spec = qm.quant_spec(m.qg, torch.from_numpy(test_windows[:1]).unsqueeze(1))
    for f, exact in (("model_int8.tflite", True), ("model_int8_calib.tflite", False)):
        model = tff.load_model((export_dir / f).read_bytes())
        sg = model.subgraphs[0]
        point_of, layer_of_op, stats = qat_ranges.map_tensors(model, spec)
        assert sorted(set(layer_of_op.values())) == sorted(spec["layers"])
        n_equal = 0
        for i, ln in layer_of_op.items():
            op = sg.operators[i]
            name = tff.opcode_name(model, op)
            w = qat_ranges.tflite_weight_to_torch(name, tff.buffer_array(model, op.inputs[1]))
            same = np.array_equal(w, spec["layers"][ln]["weight_int"])
            n_equal += same
            if exact:
                assert same, ln
                b = tff.buffer_array(model, op.inputs[2])
                assert np.array_equal(b, spec["layers"][ln]["bias_int"]), ln
                qb = tff.quant_of(sg.tensors[op.inputs[2]])[0]
                s_in = tff.quant_of(sg.tensors[op.inputs[0]])[0][0]
                qw = tff.quant_of(sg.tensors[op.inputs[1]])[0]
                np.testing.assert_allclose(qb, s_in * qw, rtol=1e-6)      # bias scale rule
        # TFLite's converter recovers the integers itself, except where it widens a weight
        # scale so an int32 bias fits (heads carrying a label mean): reported, not hidden.
        if not exact:
            mism = stats["weight_mismatch"]
            assert n_equal + len(mism) == len(layer_of_op)
            assert all(ln.startswith("heads.") for ln in mism), mism


def test_qat_file_carries_the_trained_ranges(export_dir, qat_run, test_windows):
    m = qat_model.load_qat_run(qat_run)
    spec = qm.quant_spec(m.qg, torch.from_numpy(test_windows[:1]).unsqueeze(1))
    model = tff.load_model((export_dir / "model_int8.tflite").read_bytes())
    point_of, _, _ = qat_ranges.map_tensors(model, spec)
    sg = model.subgraphs[0]
    for ti, p in point_of.items():
        s, z, _ = tff.quant_of(sg.tensors[ti])
        assert np.isclose(s[0], spec["points"][p]["tflite_scale"], rtol=1e-7)
        assert z[0] == spec["points"][p]["tflite_zero_point"]
    side = json.loads((export_dir / "model_int8.json").read_text())
    assert np.isclose(side["inputs"][0]["scale"], spec["points"]["aq_input"]["tflite_scale"])
    # probabilities on TFLite's fixed grid; logits on a grid that holds negative values
    by_name = {o["name"]: o for o in side["outputs"]}
    assert (by_name["hr_confidence"]["scale"], by_name["hr_confidence"]["zero_point"]) == (1 / 256, -128)
    for name in ("af_logit", "quality_logit"):
        o = by_name[name]
        assert o["scale"] * (-128 - o["zero_point"]) <= -4.0, o       # covers logits down to -4
    ops = {tff.opcode_name(model, op) for op in sg.operators}
    assert {"SOFTMAX", "LOGISTIC"} <= ops
    for op in sg.operators:
        if tff.opcode_name(model, op) in ("SOFTMAX", "LOGISTIC"):
            s, z, _ = tff.quant_of(sg.tensors[op.outputs[0]])
            assert (float(s[0]), int(z[0])) == (1 / 256, -128)


def test_parity_targets_on_the_tiny_model(export_dir):
    par = json.loads((export_dir / "parity.json").read_text())
    e = par["engines"]
    # the QAT-faithful file tracks the fake-quant model at least as closely as the plain
    # calibration file tracks the float student
    q = 1 - e["qat/litert_ref"]["vs_fakequant"]["embedding_cosine_mean"]
    c = 1 - e["calib/litert_ref"]["vs_float"]["embedding_cosine_mean"]
    assert q <= c, (q, c)
    assert par["summary"]["qat_file_tracks_fakequant_at_least_as_well_as_calib_tracks_float"]
    # LiteRT's reference kernels are bit-exact with TFLite Micro on both files. (Caveat, see
    # quantization.parity: LiteRT's reference FULLY_CONNECTED rounds once, TFLM's twice, so a
    # head value sitting on a rounding tie can differ by 1 LSB; the encoder never does. On
    # these windows it is exact.)
    for label in ("qat", "calib"):
        be = par["bit_exactness"][label]
        assert be["ref_vs_tflm_mismatches"]["embedding"] == 0, label
        assert be["ref_vs_tflm_max_abs_diff"] <= 1, label
    # the shipped (QAT) file is exact on these windows; the plain calibration file's head values
    # may sit on an FC rounding tie (1 LSB, above)
    be = par["bit_exactness"]["qat"]
    assert be["ref_vs_tflm_bit_exact"] is True, be["ref_vs_tflm_mismatches"]
    # onnxruntime runs the ONNX = QAT weights in float: close to the fake-quant model
    assert e["onnxruntime"]["vs_fakequant"]["embedding_cosine_mean"] > 0.99
    assert "| qat/tflm |" in (export_dir / "parity.md").read_text()


def test_postprocessing_is_deterministic(export_dir, qat_run, test_windows):
    """onnx2tf itself is checked byte-for-byte by the export (check_determinism); the rewrites
    after it are pure functions of their inputs."""
    raw = (export_dir / "onnx2tf_full_integer_quant.tflite").read_bytes()
    a, _ = op_audit.grouped_to_depthwise(raw)
    b, _ = op_audit.grouped_to_depthwise(raw)
    assert a == b
    m = qat_model.load_qat_run(qat_run)
    spec = qm.quant_spec(m.qg, torch.from_numpy(test_windows[:1]).unsqueeze(1))
    calib = (export_dir / "model_int8_calib.tflite").read_bytes()
    x1, _ = qat_ranges.apply_qat_ranges(calib, spec)
    x2, _ = qat_ranges.apply_qat_ranges(calib, spec)
    assert x1 == x2
    # the shipped file is that one with its sidecar embedded, and embedding is a pure function too
    shipped, _ = tedit.embed_sidecar(x1, json.loads((export_dir / "model_int8.json").read_text()))
    assert shipped == (export_dir / "model_int8.tflite").read_bytes()


def test_failed_onnx2tf_leaves_no_output(tmp_path, qat_run, qstore, capsys, monkeypatch):
    import importlib.util
    from quantization import export, tflite_convert
    if importlib.util.find_spec("onnx2tf") is None:
        pytest.skip("onnx2tf is not installed: a conversion failure could not come from onnx2tf itself")
    # a real onnx2tf failure: not an ONNX file
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    import tempfile
    # a private temp root: other processes converting at the same time leave their own folders
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    before = set(os.listdir(tmpdir))
    with pytest.raises(tflite_convert.ConversionError) as ei:
        tflite_convert.convert(bad, np.zeros((2, 1250), np.float32), timeout_s=300)
    assert "\n" not in str(ei.value)
    # onnx2tf ran and failed on the file (not "could not be started" / "No module named")
    assert str(ei.value).startswith("onnx2tf failed (exit") and "No module named" not in str(ei.value)
    leftovers = {p for p in set(os.listdir(tmpdir)) - before
                 if p.startswith("anyppg-onnx2tf-")}
    assert not leftovers
    # the export stage: conversion fails -> no export folder, no temp folder, one-line error
    def boom(*a, **k):
        raise tflite_convert.ConversionError("onnx2tf failed (exit 1): simulated")
    monkeypatch.setattr(export, "convert", boom)
    out = tmp_path / "exp"
    rc = export.main(["--from", str(qat_run), "--data", str(qstore), "--out", str(out), "--quiet"])
    err = _error_lines(capsys.readouterr().err)
    assert rc == 1 and len(err) == 1 and "simulated" in err[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]


def test_export_refuses_bad_inputs_before_conversion(tmp_path, distill_run, qstore, capsys, monkeypatch):
    from quantization import export
    monkeypatch.setattr(export, "convert", lambda *a, **k: pytest.fail("conversion must not start"))
    # a distill (not QAT) run
    rc = export.main(["--from", str(distill_run), "--data", str(qstore), "--out", str(tmp_path / "a"), "--quiet"])
    assert rc == 1 and "not a QAT checkpoint" in capsys.readouterr().err
    # a QAT-looking checkpoint of a model that is not a registered student
    from training.models import build_model

    from .conftest import write_distill_run
    bad = write_distill_run(tmp_path / "b", state=build_model("net1d-tiny").model.state_dict(),
                            extra={"model_name": "net1d-tiny", "stage": "qat", "float_model": {}})
    rc = export.main(["--from", str(bad), "--data", str(qstore), "--out", str(tmp_path / "c"), "--quiet"])
    assert rc == 1 and "not a student of the registry" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_export_refuses_gelu_before_conversion_naming_the_layer(tmp_path, qat_run, qstore, capsys,
                                                                 monkeypatch):
    from torch import nn

    from quantization import export, qat_model
    real = qat_model.build_student

    def with_gelu(*a, **k):
        s = real(*a, **k)
        s.model.stages[0].block0.act = nn.GELU()
        return s
    monkeypatch.setattr("quantization.qat_model.build_student", with_gelu)
    monkeypatch.setattr(export, "convert", lambda *a, **k: pytest.fail("conversion must not start"))
    rc = export.main(["--from", str(qat_run), "--data", str(qstore), "--out", str(tmp_path / "o"), "--quiet"])
    err = _error_lines(capsys.readouterr().err)
    assert rc == 1 and len(err) == 1 and "stages.0.block0.act" in err[0] and "GELU" in err[0]
    assert not (tmp_path / "o").exists()


def test_variant_relu6_avgpool_neck_hidden_head(tmp_path, qstore):
    """The other student options map too: ReLU6 fused into convs, average-pool downsampling
    (AVERAGE_POOL_2D keeps its input's quantisation), a neck conv, a hidden head layer."""
    from quantization import export

    from .conftest import write_distill_run
    run = write_distill_run(tmp_path / "d", act="relu6", pool_type="avg", head_hidden=8, embed_dim=12)
    assert qat.main(["--from", str(run), "--data", str(qstore), "--out", str(tmp_path / "q"),
                     "--config", "tiny", "--quiet"]) == 0
    out = tmp_path / "e"
    assert export.main(["--from", str(tmp_path / "q"), "--data", str(qstore), "--out", str(out),
                        "--config", "fast", "--set", "check_determinism=false", "--set", "tflm=false",
                        "--quiet"]) == 0
    rep = op_audit.audit(out / "model_int8.tflite")
    assert rep["ok"] and rep["ops"]["AVERAGE_POOL_2D"] >= 4 and "MAX_POOL_2D" not in rep["ops"]
    par = json.loads((out / "parity.json").read_text())
    assert par["summary"]["qat_file_tracks_fakequant_at_least_as_well_as_calib_tracks_float"]
    rng = json.loads((out / "qat_ranges.json").read_text())
    assert any(t["point"].endswith("_relu6") for t in rng["tensors"])
