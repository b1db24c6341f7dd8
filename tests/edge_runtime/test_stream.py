"""The streaming runtime without a model: equal to training's windows, chunk-invariant, and the
rate / timestamp policy (each bad input a one-line error or a flagged window)."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime import preprocess as pp
from edge_runtime.contract import ACCEL_SCALE_G
from edge_runtime.spec import FLAG_FLAT, FLAG_NAN_GAP, SignalSpec
from edge_runtime.stream import PPGStream, WindowResult, run_recording
from edge_runtime.timebase import InputError, plan_rate

SPEC = SignalSpec()


def sensor(fs, seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * seconds))) / fs
    return np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 2.4 * t + 1) + 0.05 * rng.standard_normal(len(t))


def defects(x, fs):
    x = x.copy()
    x[int(fs * 12):int(fs * 13)] = np.nan          # window 1: gap
    x[int(fs * 22):int(fs * 26)] = 0.7             # window 2: sensor off
    x[int(fs * 45):int(fs * 45.06)] += 80.0          # window 4: a 60 ms spike
    return x


@pytest.mark.parametrize("fs", [25.0, 50.0, 64.0, 100.0, 125.0, 128.0, 200.0, 250.0, 256.0, 500.0, 1000.0])
def test_stream_gives_exactly_the_training_windows(fs):
    x = defects(sensor(fs, 65), fs)
    ref = pp.ppg_windows(x, fs, SPEC)
    res, _ = run_recording(None, x, fs, keep_z=True)
    assert len(res) == len(ref["x"]) == 6
    assert np.array_equal(np.stack([r.z for r in res]), ref["x"])
    assert [r.flags for r in res] == ref["flags"].tolist()
    assert res[1].flags & FLAG_NAN_GAP and res[2].flags & FLAG_FLAT
    assert [r.status for r in res] == ["ok", "low_quality", "low_quality", "ok", "low_quality", "ok"]
    assert np.allclose([r.t_start for r in res], np.arange(6) * 10.0)


def _chunked(x, cuts, fs, t=None):
    s = PPGStream(None, fs, keep_z=True)
    out, i = [], 0
    for c in list(cuts) + [len(x)]:
        out += s.push(x[i:i + c], None if t is None else t[i:i + c])
        i += c
    return out + s.close()


def _same(a: list[WindowResult], b: list[WindowResult]) -> bool:
    return len(a) == len(b) and all(np.array_equal(p.z, q.z) and p.flags == q.flags
                                    and p.t_start == q.t_start for p, q in zip(a, b))


@settings(max_examples=20, deadline=None)
@given(fs=st.sampled_from([25.0, 64.0, 125.0, 256.0]),
       cuts=st.lists(st.integers(0, 1500), max_size=25),
       jitter=st.booleans())
def test_results_do_not_depend_on_chunking(fs, cuts, jitter):
    x = defects(sensor(fs, 32), fs)
    t = None
    if jitter:
        rng = np.random.default_rng(1)
        t = 100.0 + np.arange(len(x)) / fs + rng.uniform(-0.2, 0.2, len(x)) / fs
    whole = _chunked(x, [], fs, t)
    assert len(whole) == 3
    assert _same(whole, _chunked(x, cuts, fs, t))


def test_zero_length_chunks_are_no_ops():
    s = PPGStream(None, 125.0)
    assert s.push([]) == [] and s.push(np.zeros(0)) == []


@pytest.mark.parametrize("fs", [0, -64, float("nan"), float("inf"), 10.0, 37.3])
def test_bad_rates_are_one_line_errors_naming_the_rate(fs):
    with pytest.raises(InputError, match="rate") as e:
        PPGStream(None, fs)
    assert "\n" not in str(e.value)


def test_rate_a_little_off_a_supported_one_is_snapped_and_reported():
    plan = plan_rate(64.02, 125.0, 8.0)
    assert plan.nominal_hz == 64.0 and round(plan.offset_ppm) == 312 and "64.02" in plan.note
    assert plan_rate(300.0, 125.0, 8.0).nominal_hz == 300.0       # exact ratio 5/12
    cam = plan_rate(30000 / 1001, 125.0, 8.0)                        # a phone camera's 29.97 fps
    assert cam.nominal_hz == 30.0 and round(cam.offset_ppm) == -999


def test_timestamps_in_milliseconds_are_named():
    x = sensor(64.0, 20)
    t_ms = np.arange(len(x)) * 1000.0 / 64.0
    with pytest.raises(InputError, match="milliseconds"):
        run_recording(None, x, 64.0, t_ms)


def test_declared_rate_that_differs_from_timestamps_is_named():
    x = sensor(100.0, 20)
    with pytest.raises(InputError, match="does not match the timestamps"):
        run_recording(None, x, 64.0, np.arange(len(x)) / 100.0)


def test_non_monotonic_timestamps_name_the_sample():
    x = sensor(64.0, 20)
    t = np.arange(len(x)) / 64.0
    t[700] = t[698]
    with pytest.raises(InputError, match="sample 700"):
        run_recording(None, x, 64.0, t)
    s = PPGStream(None, 64.0)
    s.push(x[:10], t[:10])
    with pytest.raises(InputError, match="increase"):
        s.push(x[10:12], np.array([t[5], t[6]]))


def test_timestamp_gap_flags_the_window_and_jitter_is_absorbed():
    fs = 64.0
    x = sensor(fs, 40)
    t = np.arange(len(x)) / fs + np.random.default_rng(2).uniform(-0.3, 0.3, len(x)) / fs
    keep = (t < 14.0) | (t > 15.5)            # 1.5 s without samples inside window 1
    res, _ = run_recording(None, x[keep], fs, t[keep], keep_z=True)
    assert [bool(r.flags & FLAG_NAN_GAP) for r in res] == [False, True, False]
    clean, _ = run_recording(None, x, fs, None, keep_z=True)
    # jittered timestamps interpolated back onto the grid give nearly the same model input
    assert np.corrcoef(res[0].z, clean[0].z)[0, 1] > 0.99


def test_drifting_clock_is_followed_by_timestamps():
    true_fs, fs = 64.02, 64.0                  # crystal 312 ppm fast, declared nominal
    t = np.arange(int(true_fs * 609.9)) / true_fs
    x = np.sin(2 * np.pi * 1.0 * t)
    res_t, _ = run_recording(None, x, fs, t, keep_z=True)
    assert res_t[-1].t_end <= t[-1] + 1 / fs   # windows stay on the true time axis
    # without timestamps the same samples read at the nominal rate span 312 ppm more time
    res_n, s = run_recording(None, x, 64.02)
    assert s.plan.nominal_hz == 64.0 and res_n[-1].t_end > t[-1] + 0.1


def test_every_edge_runtime_module_imports_without_torch_tensorflow_brevitas():
    code = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'tensorflow', 'brevitas', 'tf_keras', 'keras', 'training',
                                  'quantization', 'firmware_bridge', 'benchmarks'):
            raise ImportError(f'blocked import of {name}')
        return None
sys.meta_path.insert(0, Block())
import edge_runtime
mods = [m.name for m in pkgutil.iter_modules(edge_runtime.__path__, 'edge_runtime.')]
for m in mods:
    importlib.import_module(m)
print(len(mods))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip()) >= 12


def test_accelerometer_rides_on_the_ppg_windows():
    fs = 64.0
    x = sensor(fs, 32)
    t = np.arange(len(x)) / fs
    acc = np.stack([np.sin(2 * np.pi * 1.5 * t), 0.2 * np.cos(2 * np.pi * 3 * t), 1.0 + 0.01 * t], axis=1)
    acc[int(fs * 15), 1] = np.nan                  # window 1 misses one accel sample
    s = PPGStream(None, fs, keep_z=True, accel=True)
    out = []
    for i in range(0, len(x), 100):
        out += s.push(x[i:i + 100], accel=acc[i:i + 100])
    out += s.close()
    s2 = PPGStream(None, fs, keep_z=True, accel=True)
    ref = s2.push(x, accel=acc) + s2.close()
    assert len(out) == len(ref) == 3
    for a, b in zip(out, ref):
        assert a.accel.shape == (1250, 3) and np.array_equal(a.accel, b.accel)
        # band-passed and scaled, not z-scored: the 1.5 Hz swing of 1 g reads ~1/ACCEL_SCALE_G,
        # the 0.2 g at 3 Hz ~0.2/ACCEL_SCALE_G, the slow 1 g drift (gravity) ~0
        amp = np.abs(a.accel[200:-200]).max(axis=0) * ACCEL_SCALE_G
        np.testing.assert_allclose(amp[:2], [1.0, 0.2], rtol=0.1)
        assert amp[2] < 0.01
    assert [bool(r.flags & FLAG_NAN_GAP) for r in out] == [False, True, False]
    with pytest.raises(InputError, match=r"\(T, 3\)"):
        PPGStream(None, fs, accel=True).push(x[:10], accel=acc[:9])
    with pytest.raises(InputError, match="accel"):
        PPGStream(None, fs, accel=True).push(x[:10])
