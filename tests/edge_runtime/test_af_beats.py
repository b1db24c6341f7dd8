"""edge_runtime.af_beats: the beat rate of an int8 window, the sidecar block's validation, and
the stream showing the beat rate only where the model's af_prob reaches the block."""
import math

import numpy as np
import pytest

from edge_runtime.af_beats import AFBeats, AFBeatsConfigError, beat_hr_int8, min_gap, shown_in_af
from edge_runtime.spec import FLAG_TOO_SHORT

FS = 125.0


def beats_at(times_s, length=1250, zp=-3):
    """An int8 window with a narrow pulse (height 60) at each time."""
    n = np.arange(length)
    x = sum(60.0 * np.exp(-0.5 * ((n - t * FS) / 4.0) ** 2) for t in times_s)
    return (np.round(x) + zp).astype(np.int8), zp


def test_regular_and_irregular_rates():
    q, zp = beats_at(np.arange(0.3, 10.0, 0.75))                      # 80 bpm
    assert beat_hr_int8(q, zp, FS, 0.2) == pytest.approx(80.0, abs=0.2)
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.4, 1.1, 30))
    t = t[t < 9.9]                                                    # AF-like: irregular
    q, zp = beats_at(t)
    want = 60.0 * (len(t) - 1) / (t[-1] - t[0])
    assert beat_hr_int8(q, zp, FS, 0.2) == pytest.approx(want, rel=0.01)


def test_too_few_or_too_close_peaks():
    q, zp = beats_at([2.0, 6.0])
    assert math.isnan(beat_hr_int8(q, zp, FS, 0.2))
    # a second bump 0.1 s after each beat (closer than 60/230 s) is not a beat
    t = np.arange(0.3, 10.0, 1.0)
    q, zp = beats_at(np.sort(np.concatenate([t, t + 0.1])))
    assert beat_hr_int8(q, zp, FS, 0.2) == pytest.approx(60.0, abs=0.5)
    assert min_gap(FS) == 33


def test_shown_only_where_the_block_applies():
    q, zp = beats_at(np.arange(0.3, 10.0, 0.5))                       # 120 bpm
    cfg = AFBeats(min_af_prob=0.9)
    assert shown_in_af(70.0, 0.95, q, zp, FS, cfg) == pytest.approx(120.0, abs=0.5)
    assert shown_in_af(70.0, 0.85, q, zp, FS, cfg) == 70.0            # not called AF
    assert shown_in_af(70.0, 0.95, q, zp, FS, None) == 70.0           # no block
    assert shown_in_af(70.0, 0.95, q, zp, FS, cfg, FLAG_TOO_SHORT) == 70.0
    flat = np.full(1250, zp, np.int8)
    assert shown_in_af(70.0, 0.95, flat, zp, FS, cfg) == 70.0         # no beats: refined hr stays


@pytest.mark.parametrize("block,msg", [({"min_af_prob": 0.0}, "min_af_prob"),
                                       ({"fraction": 1.5}, "fraction"),
                                       ({"min_af_prob": "high"}, "min_af_prob"),
                                       ({"method": "other"}, "unknown af_beats method"),
                                       ({"typo": 1}, "unknown fields"), ([], "must be an object")])
def test_bad_blocks_are_one_line(block, msg):
    with pytest.raises(AFBeatsConfigError, match=msg):
        AFBeats.from_sidecar({"af_beats": block})
    assert AFBeats.from_sidecar({}) is None


@pytest.mark.slow
def test_the_stream_shows_the_beat_rate_where_the_model_calls_af(export_dir, tmp_path):
    """A copy of the session's export whose sidecar gates at af_prob 1e-6 (every window): the
    shown hr of every usable window is the beat rate of its own int8 input, or the refined hr
    where fewer than 3 peaks; with the gate at 1.0 (never reached below certainty) nothing
    changes against the export as it is."""
    import json
    import shutil

    from edge_runtime.interpreters import quantize_input
    from edge_runtime.model import EdgeModel
    from edge_runtime.stream import run_recording
    from training.data.synthetic import generate_subject

    x = generate_subject(3, seed=5, duration_s=60, ppg_fs=FS).signals["ppg"].data
    side = json.loads((export_dir / "model_int8.json").read_text())
    plain = EdgeModel.load(export_dir, backend="ref")
    base, _ = run_recording(plain, x, FS, polarity="up", keep_z=True)
    shutil.copy(export_dir / "model_int8.tflite", tmp_path / "model_int8.tflite")
    for gate in (1e-6, 1.0):
        (tmp_path / "model_int8.json").write_text(json.dumps({**side, "af_beats": {"min_af_prob": gate}}))
        m = EdgeModel.load(tmp_path / "model_int8.tflite", backend="ref")
        res, _ = run_recording(m, x, FS, polarity="up", keep_z=True)
        ppg = m.inputs["ppg"]
        counted = 0
        for r, b in zip(res, base):
            if r.values.get("hr") is None:
                continue
            q = quantize_input(r.z[None], ppg["scale"], ppg["zero_point"])[0]
            beats = beat_hr_int8(q, ppg["zero_point"], FS, 0.2)
            af_on = gate < 1.0 or r.values["af_prob"] >= 1.0
            want = beats if af_on and not math.isnan(beats) else b.values["hr"]
            assert r.values["hr"] == pytest.approx(want, abs=1e-9)
            counted += want == beats
        assert (counted > 0) == (gate < 1.0)
