"""Generated int8 inference on the host: bit-exact with TensorFlow Lite Micro's reference
kernels (the tflite-micro wheel) on golden-style windows and random int8 inputs, under
AddressSanitizer/UBSan; clear one-line errors for what it cannot run."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime import tflite_file as tf
from edge_runtime.interpreters import run_tflm
from firmware_bridge.codegen import CodegenError, generate_inference
from firmware_bridge.codegen.host import HostModel, host_compiler

pytestmark = pytest.mark.skipif(host_compiler() is None, reason="no host C compiler (gcc)")


def _load(export_dir):
    return (export_dir / "model_int8.tflite").read_bytes(), json.loads((export_dir / "model_int8.json").read_text())


def _tflm_int8(model_bytes: bytes, sidecar: dict, xq: np.ndarray) -> dict[str, np.ndarray]:
    """TFLM outputs for int8 inputs (N, L): by the sidecar's output names."""
    import tflite_micro
    it = tflite_micro.runtime.Interpreter.from_bytes(model_bytes)
    shape = it.get_input_details(0)["shape"]
    names = [o["name"] for o in sidecar["outputs"]]
    res = {n: [] for n in names}
    for x in xq:
        it.set_input(x.reshape(shape), 0)
        it.invoke()
        for k, n in enumerate(names):
            res[n].append(np.array(it.get_output(k)).reshape(-1))
        it.reset()
    return {n: np.stack(v) for n, v in res.items()}


@pytest.fixture(scope="module")
def host_model(export_dir, tmp_path_factory):
    mb, sc = _load(export_dir)
    return HostModel(mb, sc, tmp_path_factory.mktemp("cg_host"), sanitize=True)


def test_golden_windows_bit_exact(host_model, export_dir, test_windows):
    """Real preprocessed windows, quantised as the edge runtime does, through both engines."""
    mb, sc = _load(export_dir)
    from edge_runtime.contract import sidecar_inputs
    inp = sidecar_inputs(sc)[0]
    ref = run_tflm(mb, test_windows, inp["scale"], inp["zero_point"], len(sc["outputs"]))
    from edge_runtime.interpreters import quantize_input
    xq = quantize_input(test_windows, inp["scale"], inp["zero_point"])
    got = host_model.run({"ppg": xq})
    for k, o in enumerate(sc["outputs"]):
        assert np.array_equal(got[o["name"]], ref[k].reshape(len(xq), -1)), o["name"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["uniform", "extreme", "smooth"]))
def test_random_int8_inputs_bit_exact(host_model, export_dir, seed, kind):
    mb, sc = _load(export_dir)
    rng = np.random.default_rng(seed)
    n = host_model.facts["inputs"]["ppg"]["len"]
    if kind == "uniform":
        x = rng.integers(-128, 128, (3, n))
    elif kind == "extreme":
        x = rng.choice([-128, 127], (3, n))
    else:
        x = np.clip(np.cumsum(rng.integers(-9, 10, (3, n)), axis=1), -128, 127)
    x = x.astype(np.int8)
    ref = _tflm_int8(mb, sc, x)
    got = host_model.run({"ppg": x})
    for name, r in ref.items():
        assert np.array_equal(got[name], r), name


def test_facts_and_arena_planning(host_model):
    f = host_model.facts
    assert f["arena_bytes"] < f["arena_bytes_unshared"]
    assert any("+maxpool" in l or "+avgpool" in l for l in f["layers"])   # stem fused with its pool
    # the student's blocks: depthwise -> 1x1 conv in row chunks, the residual ADD with its pool
    assert any(l.startswith("dwconv+conv") for l in f["layers"])
    assert "add+maxpool" in f["layers"]
    assert set(f["outputs"]) >= {"embedding", "hr"}
    assert f["weight_bytes"] > 0 and f["macs"] > 0


def test_unfused_build_is_identical(export_dir, tmp_path, host_model):
    mb, sc = _load(export_dir)
    plain = HostModel(mb, sc, tmp_path, fuse=False)
    x = np.random.default_rng(1).integers(-128, 128, (2, plain.facts["inputs"]["ppg"]["len"])).astype(np.int8)
    a, b = plain.run({"ppg": x}), host_model.run({"ppg": x})
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert plain.facts["arena_bytes"] > host_model.facts["arena_bytes"]


def _edited(model_bytes: bytes, edit) -> bytes:
    import flatbuffers
    m = tf.load_model(model_bytes)
    edit(m)
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _first_op(m, name):
    sg = m.subgraphs[0]
    return next(op for op in sg.operators if tf.opcode_name(m, op) == name)


def test_per_tensor_conv_weights_rejected(export_dir, tmp_path):
    mb, sc = _load(export_dir)

    def edit(m):
        w = m.subgraphs[0].tensors[_first_op(m, "DEPTHWISE_CONV_2D").inputs[1]]
        w.quantization.scale = [float(w.quantization.scale[0])]
        w.quantization.zeroPoint = [0]
    with pytest.raises(CodegenError, match=r"DEPTHWISE_CONV_2D \(op \d+\).*per-tensor"):
        generate_inference(_edited(mb, edit), sc, tmp_path)
    assert not (tmp_path / "anyppg_model.c").exists()


def test_float_tensor_rejected(export_dir, tmp_path):
    mb, sc = _load(export_dir)

    def edit(m):
        op = _first_op(m, "ADD")
        m.subgraphs[0].tensors[op.outputs[0]].type = tf.schema().TensorType.FLOAT32
    with pytest.raises(CodegenError, match=r"ADD \(op \d+\).*FLOAT32"):
        generate_inference(_edited(mb, edit), sc, tmp_path)


def test_unsupported_op_named(export_dir, tmp_path):
    mb, sc = _load(export_dir)

    def edit(m):
        oc = m.operatorCodes[_first_op(m, "ADD").opcodeIndex]
        oc.builtinCode = oc.deprecatedBuiltinCode = tf.schema().BuiltinOperator.MUL
    with pytest.raises(CodegenError, match=r"^MUL \(op \d+\) is not supported"):
        generate_inference(_edited(mb, edit), sc, tmp_path)


def test_not_a_model(tmp_path):
    with pytest.raises(CodegenError, match="not a readable .tflite"):
        generate_inference(b"not a flatbuffer", {"outputs": []}, tmp_path)
