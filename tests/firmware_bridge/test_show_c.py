"""anyppg_hr_show (c/anyppg_hr.c), what a watch shows for a window, against edge_runtime's own
decision (edge_runtime.show, the one PPGStream applies): on every int8 code of quality_logit,
hr_confidence, hr and af_logit, for each quality flag, for thresholds on both sides of the
export's and with and without a beat count in AF (edge_runtime.af_beats). The show and withheld
bits must agree exactly; the shown hr to the refinement's tolerance, and a beat rate to the bit."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.af_beats import AFBeats, beat_hr_int8
from edge_runtime.contract import sidecar_inputs
from edge_runtime.interpreters import quantize_input
from edge_runtime.show import dequantize_scalar, int8_minimums, shown_value
from edge_runtime.spec import FLAG_NAMES, FLAG_TOO_SHORT, SignalSpec
from firmware_bridge import hr_check
from firmware_bridge.dsp_check import missing_host_compiler

TOL_BPM = 0.002      # the refinement's float32 C against edge_runtime's float64 (test_hr_refine_c)
# decision blocks: the export's own, and thresholds that put the int8 gates at other codes
DECISIONS = {"own": None,
             "strict": {"quality_min_prob": 0.9, "hr_confidence_min": 0.781},
             "nothing-passes": {"quality_min_prob": 1.01, "hr_confidence_min": 1.01},
             "everything-passes": {"quality_min_prob": 0.0, "hr_confidence_min": 0.0}}
AF_BEATS = {"no-af-beats": None, "af-beats-0.9": AFBeats(min_af_prob=0.9, fraction=0.2),
            "af-beats-0.5": AFBeats(min_af_prob=0.5, fraction=0.35)}
VARIANTS = [(d, "no-af-beats") for d in DECISIONS] + [("everything-passes", b) for b in list(AF_BEATS)[1:]]


def show_cases(n_windows: int, rng: np.random.Generator) -> np.ndarray:
    """Every code of each gated output with the others passing, every hr code with and without
    too_short, each flag alone, and random combinations."""
    codes = np.arange(-128, 128)
    rows = []

    def add(flags, quality, conf, hr, af):
        cols = np.broadcast_arrays(*map(np.atleast_1d, (flags, quality, conf, hr, af)))
        rows.extend((*c, 0, w) for c, w in zip(zip(*cols), rng.integers(0, n_windows, len(cols[0]))))

    add(0, codes, 127, 40, rng.integers(-128, 128, 256))
    add(0, 127, codes, 40, rng.integers(-128, 128, 256))
    add(0, 127, 127, codes, rng.integers(-128, 128, 256))
    add(0, 127, 127, 40, codes)
    add(0, 127, 127, 40, np.repeat([-128, 127], 64))
    add(FLAG_TOO_SHORT, 127, 127, codes, 127)
    for bit in FLAG_NAMES.values():
        add(bit, *rng.integers(-128, 128, (4, 16)))
    add(rng.choice([0, 0, 0, FLAG_TOO_SHORT, 32, 4], 400), *rng.integers(-128, 128, (4, 400)))
    return np.array([(f, qq, c, h, a, (0, 0, 0), w) for f, qq, c, h, a, _, w in rows], hr_check.SHOW_CASE)


@pytest.fixture(scope="module")
def material(export_dir, qstore):
    from training.data.store import WindowStore
    sidecar = json.loads((export_dir / "model_int8.json").read_text())
    ppg = next(e for e in sidecar_inputs(sidecar) if e["name"] == "ppg")
    z = WindowStore(qstore, split=None).column("ppg")[:6].astype(np.float32)
    q = quantize_input(z, float(ppg["scale"]), int(ppg["zero_point"]))
    zp = int(ppg["zero_point"])
    q = np.concatenate([q, np.full((1, q.shape[1]), zp, np.int8), crafted(q.shape[1], zp)])
    cases = show_cases(len(q), np.random.default_rng(0))
    every = np.zeros(len(q), hr_check.SHOW_CASE)        # each window once with every gate open
    every["quality_logit"], every["hr_confidence"], every["af_logit"] = 127, 127, 127
    every["hr"], every["window"] = 40, np.arange(len(q))
    return sidecar, q, zp, np.concatenate([cases, every])


def crafted(length: int, zero_point: int) -> np.ndarray:
    """Two int8 windows at the detector's edges: plateau beats of height 50 every 100 samples
    (so the level is 50 and, at fraction 0.2, the threshold exactly 10.0f), with (a) a lower peak
    just before the first beat, which the first beat must replace, and a peak exactly at the
    threshold, which must not count; (b) the same without the early peak."""
    x = np.zeros(length, np.int32)
    for c in range(60, length - 60, 100):
        x[c - 15:c] = np.linspace(0, 49, 15).astype(np.int32)
        x[c:c + 10] = 50
        x[c + 10:c + 25] = np.linspace(49, 0, 15).astype(np.int32)
    x[length - 20] = 10                        # == 0.2f * 50: not above the threshold
    a = x.copy()
    a[40] = 20                                 # 20 samples before the first beat's top
    return (np.stack([a, x]) + zero_point).clip(-128, 127).astype(np.int8)


@pytest.mark.skipif(missing_host_compiler() is not None, reason=str(missing_host_compiler()))
@pytest.mark.parametrize("decision,af_beats", VARIANTS)
def test_c_shows_what_edge_runtime_shows(material, decision, af_beats, tmp_path):
    sidecar, q, zp, cases = material
    side = json.loads(json.dumps(sidecar))          # in memory only, never beside a model file
    if DECISIONS[decision] is not None:
        side["decision"] = DECISIONS[decision]
    side.pop("af_beats", None)
    if AF_BEATS[af_beats] is not None:
        side["af_beats"] = AF_BEATS[af_beats].to_dict()
    exe = hr_check.build_host(hr_check.generate_header(side, tmp_path / "gen"), runner=hr_check.SHOW_SOURCES)
    got, _ = hr_check.run_show(exe, cases, q, zp, tmp_path / "run")
    want = hr_check.reference_show(cases, q, zp, side)
    assert np.array_equal(got["withheld"], want["withheld"])
    assert np.array_equal(got["show"], want["show"])
    shown = (want["show"] & hr_check.SHOW_HR) > 0
    assert np.isnan(got["hr_bpm"][~shown]).all()
    assert np.all(np.abs(got["hr_bpm"][shown].astype(np.float64) - want["hr_bpm"][shown]) <= TOL_BPM)
    # a padded window keeps the network's hr, and a beat rate is the Python's, to the bit
    short = shown & ((cases["flags"] & FLAG_TOO_SHORT) > 0)
    assert np.array_equal(got["hr_bpm"][short], want["hr_bpm"][short].astype(np.float32))
    fs = float(SignalSpec.from_dict(side["spec"]).ppg_fs)
    beats = np.array([beat_hr_int8(q[w], zp, fs, AF_BEATS[af_beats].fraction) if AF_BEATS[af_beats] else np.nan
                      for w in cases["window"]])
    counted = shown & ~short & (want["hr_bpm"] == beats)
    assert np.array_equal(got["hr_bpm"][counted], want["hr_bpm"][counted].astype(np.float32))
    if AF_BEATS[af_beats] is not None:
        assert counted.sum() > 50 and (shown & ~counted).sum() > 50, counted.sum()
    # the cases reach every branch where the thresholds allow it
    counts = {w: int((want["withheld"] == b).sum()) for w, b in {"all shown": 0, **hr_check.WITHHELD}.items()}
    assert counts["flags"] > 0
    if decision == "strict":
        assert min(counts.values()) > 0, counts
    if decision == "nothing-passes":
        assert counts["all shown"] == 0 and counts["hr_confidence"] == 0


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(1e-3, 0.5), zero_point=st.integers(-128, 127),
       threshold=st.floats(-0.2, 1.2), logit=st.booleans())
def test_int8_minimum_is_the_first_code_the_stream_shows(scale, zero_point, threshold, logit):
    name, key = ("quality_logit", "quality_min_prob") if logit else ("hr_confidence", "hr_confidence_min")
    scale = float(np.float32(scale))
    m = int8_minimums([{"name": name, "scale": scale, "zero_point": zero_point}], {key: threshold})[name]
    for code in range(-128, 128):
        passes = shown_value(name, dequantize_scalar(code, zero_point, scale)) >= threshold
        assert passes == (code >= m), (code, m)


def test_outputs_without_a_gate_have_no_minimum():
    assert int8_minimums([{"name": "hr", "scale": 1.0, "zero_point": 0}], {}) == {}
