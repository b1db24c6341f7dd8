"""The generated LOGISTIC and SOFTMAX kernels against TensorFlow Lite Micro (the tflite-micro
wheel), byte for byte, on a tiny full-int8 model built here the way the wrist student's heads
are (SOFTMAX over HR bins, LOGISTIC for a confidence): Keras -> TFLiteConverter, int8 in/out."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import tflite_file as tf
from firmware_bridge.codegen.host import HostModel, host_compiler

pytestmark = [pytest.mark.skipif(host_compiler() is None, reason="no host C compiler (gcc)"),
              pytest.mark.slow]

N_IN, N_BINS = 48, 12


def _heads_model() -> bytes:
    """(1, N_IN, 1) int8 -> conv -> dense -> {softmax over N_BINS, sigmoid}: full-int8 .tflite."""
    tfk = pytest.importorskip("tensorflow")
    keras = tfk.keras
    keras.utils.set_random_seed(3)
    x = keras.Input((N_IN, 1), batch_size=1, name="ppg")   # static shapes throughout
    h = keras.layers.Conv1D(4, 5, padding="same", activation="relu")(x)
    h = keras.layers.Reshape((N_IN * 4,))(h)                 # static: no SHAPE op
    h = keras.layers.Dense(16, activation="relu")(h)
    wide = keras.initializers.RandomNormal(stddev=1.0)      # wide logits: saturated bins too
    bins = keras.layers.Dense(N_BINS, kernel_initializer=wide)(h)
    probs = keras.layers.Softmax(name="hr_bins")(bins)
    conf = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=wide, name="hr_confidence")(h)
    model = keras.Model(x, [probs, conf])
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(64):
            yield [rng.normal(0, 1.5, (1, N_IN, 1)).astype(np.float32)]
    conv = tfk.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tfk.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tfk.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tfk.int8
    return bytes(conv.convert())


def _sidecar(model_bytes: bytes) -> dict:
    """Ports by the subgraph's own tensor indices, outputs in the subgraph's order."""
    m = tf.load_model(model_bytes)
    sg = m.subgraphs[0]
    ops = {int(op.outputs[0]): tf.opcode_name(m, op) for op in sg.operators}
    names = {"SOFTMAX": "hr_bins", "LOGISTIC": "hr_confidence"}
    return {"inputs": [{"name": "ppg", "index": int(sg.inputs[0])}],
            "outputs": [{"name": names[ops[int(i)]], "index": int(i)} for i in sg.outputs]}


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    mb = _heads_model()
    sc = _sidecar(mb)
    return mb, sc, HostModel(mb, sc, tmp_path_factory.mktemp("cg_heads"), sanitize=True)


def _tflm(model_bytes: bytes, n_out: int, xq: np.ndarray) -> list[np.ndarray]:
    import tflite_micro
    it = tflite_micro.runtime.Interpreter.from_bytes(model_bytes)
    shape = it.get_input_details(0)["shape"]
    res = [[] for _ in range(n_out)]
    for x in xq:
        it.set_input(x.reshape(shape), 0)
        it.invoke()
        for k in range(n_out):
            res[k].append(np.array(it.get_output(k)).reshape(-1))
        it.reset()
    return [np.stack(r) for r in res]


def test_model_has_both_heads(heads):
    mb, sc, hm = heads
    assert {"SOFTMAX", "LOGISTIC"} <= set(hm.facts["ops"])
    assert {o["name"] for o in sc["outputs"]} == {"hr_bins", "hr_confidence"}


@pytest.mark.parametrize("kind", ["uniform", "extreme", "smooth"])
def test_softmax_and_logistic_bit_exact(heads, kind):
    mb, sc, hm = heads
    rng = np.random.default_rng({"uniform": 1, "extreme": 2, "smooth": 3}[kind])
    n = 200
    if kind == "uniform":
        x = rng.integers(-128, 128, (n, N_IN))
    elif kind == "extreme":
        x = rng.choice([-128, 127], (n, N_IN))
    else:
        x = np.clip(np.cumsum(rng.integers(-12, 13, (n, N_IN)), axis=1), -128, 127)
    x = x.astype(np.int8)
    ref = _tflm(mb, len(sc["outputs"]), x)
    got = hm.run({"ppg": x})
    for k, o in enumerate(sc["outputs"]):
        assert np.array_equal(got[o["name"]], ref[k]), o["name"]
    # the inputs reach the interesting ranges: several bins in use, confidence not constant
    bins = got["hr_bins"].astype(int) + 128
    assert len(np.unique(bins.argmax(axis=1))) > 1 and len(np.unique(got["hr_confidence"])) > 3
