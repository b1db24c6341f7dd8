"""The accelerometer input: one preprocessing for the store (accel_windows) and the stream."""
import numpy as np

from edge_runtime import preprocess as pp
from edge_runtime.accel import accel_window, accel_windows
from edge_runtime.contract import ACCEL_CLIP, ACCEL_SCALE_G, INPUTS
from edge_runtime.spec import SignalSpec
from edge_runtime.stream import PPGStream

SPEC = SignalSpec()


def wrist(fs, seconds, swing_g=0.0, seed=0):
    """(T,) PPG and (T, 3) acceleration in g: gravity on z, sensor noise, an optional 2 Hz swing."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * seconds))) / fs
    ppg = np.sin(2 * np.pi * 1.3 * t) + 0.05 * rng.standard_normal(len(t))
    acc = 0.005 * rng.standard_normal((len(t), 3))
    acc[:, 2] += 1.0
    acc[:, 0] += swing_g * np.sin(2 * np.pi * 2.0 * t)
    return ppg, acc


def test_still_wrist_reads_zero_and_motion_keeps_its_size():
    _, still = wrist(125.0, 10)
    a = accel_window(still, SPEC)
    assert a.shape == (1250, 3) and a.dtype == np.float32
    assert np.abs(a[100:-100]).max() < 0.1          # gravity gone; noise of 5 mg stays small
    for g in (0.2, 1.0):
        _, moving = wrist(125.0, 10, swing_g=g)
        amp = np.abs(accel_window(moving, SPEC)[100:-100, 0]).max() * ACCEL_SCALE_G
        assert abs(amp - g) < 0.1 * g               # how hard the arm moves is kept
    _, wild = wrist(125.0, 10, swing_g=20.0)
    assert np.abs(accel_window(wild, SPEC)).max() == ACCEL_CLIP


def test_store_windows_equal_stream_windows_at_a_foreign_rate():
    fs = 64.0
    ppg, acc = wrist(fs, 35, swing_g=0.5)
    s = PPGStream(None, fs, keep_z=True, accel=True)
    out = []
    for i in range(0, len(ppg), 77):
        out += s.push(ppg[i:i + 77], accel=acc[i:i + 77])
    out += s.close()
    starts = pp.ppg_windows(ppg, fs, SPEC)["start_s"]
    x, missing = accel_windows(acc.T, fs, SPEC, starts)
    assert x.shape == (len(out), 3, 1250) and not missing.any()
    for r, w in zip(out, x):
        np.testing.assert_allclose(r.accel.T, w, atol=1e-5)


def test_windows_past_the_end_are_zero_and_missing():
    _, acc = wrist(125.0, 15)
    x, missing = accel_windows(acc.T, 125.0, SPEC, np.array([0.0, 10.0]))
    assert missing.tolist() == [False, True] and not x[1].any()


def test_contract_names_the_scale():
    assert f"{ACCEL_SCALE_G:g}" in INPUTS["accel"].unit and "clip" in INPUTS["accel"].doc


def test_runtime_refuses_an_accel_input_made_with_another_preprocessing():
    import pytest
    from edge_runtime.contract import ACCEL_PREPROCESSING
    from edge_runtime.sidecar import ModelFileError, check_inputs
    ins = [{"name": "ppg", "shape": [1, 1250, 1], "dtype": "int8"},
           {"name": "accel", "shape": [1, 1250, 3], "dtype": "int8", "preprocessing": ACCEL_PREPROCESSING}]
    check_inputs(ins, SPEC, "m.tflite")
    ins[1]["preprocessing"] = "z-score per window"
    with pytest.raises(ModelFileError, match="accel input made with preprocessing 'z-score"):
        check_inputs(ins, SPEC, "m.tflite")
    ins[1]["shape"] = [1, 1250, 1]
    with pytest.raises(ModelFileError, match="needs \\[1, 1250, 3\\]"):
        check_inputs(ins, SPEC, "m.tflite")
