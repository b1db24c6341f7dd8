"""The runtime's allocation-free per-window paths equal the library definitions they replace,
bit for bit: scipy's sosfiltfilt, numpy's mean/std, the quality flags as first written with
numpy reductions, and TFLite-rounding quantisation (exact ties and saturation included)."""
import numpy as np
import pytest
from scipy import signal as sps

from edge_runtime import preprocess as P
from edge_runtime.interpreters import InputQuantizer, dequantize, quantize_input, run_int8
from edge_runtime.spec import FLAG_CLIPPING, FLAG_FLAT, FLAG_NAN_GAP, SignalSpec

SPEC = SignalSpec()


def windows(seed, n=4, L=1250):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, L)) * rng.uniform(1e-3, 1e4) + rng.uniform(-1e5, 1e5)
    w[0, 100:700] = w[0, 100]                      # a long constant run
    w[1] = np.clip(w[1], np.quantile(w[1], 0.1), np.quantile(w[1], 0.9))   # clipping
    return w


def quality_reference(raw, missing, fs, spec, flat_mask):
    """quality_flags as first written (np.std, np.mean, .sum, bool .mean)."""
    flags = np.zeros(len(raw), np.uint8)
    flags[missing.any(axis=-1)] |= FLAG_NAN_GAP
    flat = raw.std(axis=-1) < spec.flat_rel_std * (np.abs(raw.mean(axis=-1)) + 1.0)
    flat |= flat_mask.sum(axis=-1) >= spec.flat_run_s * fs
    flags[flat] |= FLAG_FLAT
    lo, hi = raw.min(axis=-1, keepdims=True), raw.max(axis=-1, keepdims=True)
    tol = 1e-9 * np.maximum(hi - lo, 1e-12)
    pinned = ((raw <= lo + tol) | (raw >= hi - tol)).mean(axis=-1)
    flags[(pinned > spec.clip_fraction) & ~flat] |= FLAG_CLIPPING
    return flags


@pytest.mark.parametrize("seed", range(6))
def test_filter_zscore_and_flags_equal_their_library_definitions(seed, monkeypatch):
    w = windows(seed)
    sos = P.ppg_sos(SPEC)
    ref = sps.sosfiltfilt(sos, w, axis=-1)
    assert np.array_equal(P.filter_windows(w, sos), ref)
    assert np.array_equal(P.filter_windows(w[1:2], sos), ref[1:2])
    monkeypatch.setattr(P, "_sosfilt", None)          # the public-scipy fallback agrees too
    assert np.array_equal(P.filter_windows(w, sos), ref)
    monkeypatch.undo()
    mu, sd = P.mean_std(w)
    assert np.array_equal(mu[:, 0], w.mean(axis=-1)) and np.array_equal(sd[:, 0], w.std(axis=-1))
    assert np.array_equal(P.zscore(ref), (ref - ref.mean(-1, keepdims=True)) / np.maximum(ref.std(-1, keepdims=True), 1e-8))
    rng = np.random.default_rng(seed)
    miss = rng.random(w.shape) < 0.0005
    flat = P.constant_runs(w.reshape(-1), SPEC.ppg_fs, SPEC.flat_run_s).reshape(w.shape)
    got = P.quality_flags(w, miss, SPEC.ppg_fs, SPEC, flat)
    assert np.array_equal(got, quality_reference(w, miss, SPEC.ppg_fs, SPEC, flat))
    assert got[0] & FLAG_FLAT and got[1] & FLAG_CLIPPING
    z = P.zscore(ref).astype(np.float32)
    assert np.array_equal(P.amplitude_flags(z, SPEC) > 0, np.abs(z).max(axis=-1) > SPEC.max_abs_z)


@pytest.mark.parametrize("scale,zp", [(0.5, 0), (0.25, -29), (0.022477610036730766, -29), (1 / 3, 5)])
def test_input_quantizer_equals_quantize_input(scale, zp):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1250) * 40 * scale).astype(np.float32)
    x[:40] = (np.arange(40) - 20 + 0.5) * np.float32(scale)      # exact ties where representable
    x[40:44] = [1e6, -1e6, 300 * scale, -300 * scale]              # saturation
    q = InputQuantizer((1, 1250, 1), scale, zp)
    out = np.zeros((1, 1250, 1), np.int8)
    ref = quantize_input(x.reshape(1, 1250, 1), scale, zp)
    assert np.array_equal(q(x, out), ref)
    assert np.array_equal(q(x[::-1].copy(), out), quantize_input(x[::-1].reshape(1, 1250, 1), scale, zp))


@pytest.mark.slow
def test_in_place_input_gives_the_set_tensor_results(export_dir, test_windows):
    from edge_runtime.model import EdgeModel
    m = EdgeModel.load(export_dir, backend="ref")
    got = m.run_batch(test_windows, raw=True)
    it = EdgeModel.load(export_dir, backend="ref").interp
    ref = run_int8(it, test_windows)
    order = {d["index"]: k for k, d in enumerate(it.get_output_details())}
    for name, e in m.outputs.items():
        assert np.array_equal(got[name].reshape(len(test_windows), -1),
                              ref[order[e["index"]]].reshape(len(test_windows), -1)), name
    raw = m.invoke_raw(test_windows[0])
    for name, v in m.dequantize(raw).items():           # the scalar shortcut included
        e = m.outputs[name]
        want = dequantize(raw[name], e["scale"], e["zero_point"]) if e["dtype"] == "int8" else raw[name]
        assert v.dtype == np.float32 and v.tobytes() == want.astype(np.float32).tobytes(), name
