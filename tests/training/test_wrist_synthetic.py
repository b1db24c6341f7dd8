"""Synthetic wearable PPG: ranges, motion, sensor rates and the reader interface."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import preprocess as pp
from edge_runtime.spec import SPECS
from training.data import readers
from training.data.records import ReaderError
from training.data.synthetic_wrist import (ACCEL_AXES, SENSOR_RATES_HZ, WristConfig,
                                           generate_wrist_subject)


@pytest.fixture(scope="module")
def cohort():
    return [generate_wrist_subject(i, seed=3, duration_s=240.0) for i in range(16)]


def test_deterministic_and_seeded():
    a = generate_wrist_subject(5, seed=0, duration_s=60.0)
    b = generate_wrist_subject(5, seed=0, duration_s=60.0)
    c = generate_wrist_subject(5, seed=1, duration_s=60.0)
    np.testing.assert_array_equal(a.ppg.data, b.ppg.data)
    assert a.subject_id == b.subject_id != c.subject_id
    assert not np.array_equal(a.ppg.data[:100], c.ppg.data[:100])


def test_signals_and_labels(cohort):
    for r in cohort:
        fs = r.ppg.fs
        assert fs in SENSOR_RATES_HZ
        assert len(r.ppg.data) == round(240.0 * fs)
        for ax in ACCEL_AXES:
            assert r.signals[ax].fs == fs and len(r.signals[ax].data) == len(r.ppg.data)
        assert np.isfinite(r.ppg.data).all()
        assert set(r.series) >= {"hr", "rr", "quality", "af", "activity"}
    hr = np.concatenate([r.series["hr"].values for r in cohort])
    # The wearable range: resting wearers and hard efforts, well outside the ICU's 52-131.
    assert hr.min() < 60 and hr.max() > 170 and hr.max() <= 230
    assert len({r.ppg.fs for r in cohort}) >= 4


def test_motion_degrades_quality_and_shows_in_accel(cohort):
    act = np.concatenate([r.series["activity"].values for r in cohort])
    q = np.concatenate([r.series["quality"].values for r in cohort])
    assert q[act < 0.1].mean() > q[act > 0.4].mean() + 0.2
    # The accelerometer moves more when the wearer does (gravity aside).
    for r in cohort[:6]:
        a = np.stack([r.signals[ax].data for ax in ACCEL_AXES])
        fs = r.ppg.fs
        act1 = np.repeat(r.series["activity"].values, int(fs))[:a.shape[1]]
        d = np.abs(np.diff(a, axis=1)).sum(0)[:len(act1) - 1] * fs
        if (act1 > 0.4).sum() > fs * 10 and (act1 < 0.05).sum() > fs * 10:
            assert d[act1[:-1] > 0.4].mean() > 2 * d[act1[:-1] < 0.05].mean()


def test_windows_through_the_project_preprocessing(cohort):
    spec = SPECS["small"]
    for r in cohort[:4]:
        out = pp.ppg_windows(r.ppg.data, r.ppg.fs, spec)
        assert out["x"].shape == (24, spec.ppg_len)
        assert np.isfinite(out["x"]).all()


def test_reader_interface():
    units = readers.discover("synthetic-wrist", "subjects=3,minutes=1,seed=2")
    assert units == [f"synthetic-wrist:seed=2:subject={i}:minutes=1" for i in range(3)]
    [rec] = readers.read_unit("synthetic-wrist", units[1])
    assert rec.subject_id == "wrist2_0001" and rec.path == units[1]
    assert rec.source == "synthetic-wrist"
    for bad in ("subjects=x", "subjects=0", "colour=3"):
        with pytest.raises(ReaderError, match="synthetic-wrist spec"):
            readers.discover("synthetic-wrist", bad)
    with pytest.raises(ReaderError, match="no subject="):
        readers.read_unit("synthetic-wrist", "synthetic-wrist:seed=1")


def _beat_rr(rec) -> np.ndarray:
    """RR intervals (s) from the 1 Hz hr series' distinct values (the RR holding each bin)."""
    return 60.0 / rec.series["hr"].values


def test_atrial_fibrillation_wearers():
    """af=: a share of wearers in AF, whole or one episode; inside, the rhythm is irregularly
    irregular around an exercise-following rate, labelled af=1 exactly there; af=0 draws
    nothing (the version-1 cohort is unchanged) and sinus wearers of an AF cohort are too."""
    cfg = WristConfig(af_fraction=0.6)
    recs = [generate_wrist_subject(i, seed=4, duration_s=180.0, config=cfg) for i in range(12)]
    plain = [generate_wrist_subject(i, seed=4, duration_s=180.0) for i in range(12)]
    af = [r for r in recs if "af" in r.meta]
    assert 3 <= len(af) <= 11
    for r, p in zip(recs, plain):
        if "af" not in r.meta:
            np.testing.assert_array_equal(r.ppg.data, p.ppg.data)
            assert not r.series["af"].values.any()
            continue
        a = r.meta["af"]
        tc, lab = r.series["af"].times_s, r.series["af"].values
        np.testing.assert_array_equal(lab, ((tc >= a["start_s"]) & (tc < a["end_s"])).astype(float))
        rr = _beat_rr(r)
        # successive-difference irregularity: AF's beats are independent, sinus beats are not
        inside = lab > 0
        d_af = np.abs(np.diff(rr[inside])) / rr[inside][1:]
        assert np.median(d_af) > 0.05, r.subject_id
        if (~inside).sum() > 20:
            d_sr = np.abs(np.diff(rr[~inside])) / rr[~inside][1:]
            assert np.median(d_af) > 2 * np.median(d_sr), r.subject_id
        assert 30 < np.median(r.series["hr"].values[inside]) < 240
    units = readers.discover("synthetic-wrist", "subjects=2,minutes=1,seed=4,af=0.6")
    assert units[0] == "synthetic-wrist:seed=4:subject=0:minutes=1:af=0.6"
    [rec] = readers.read_unit("synthetic-wrist", units[0])
    ref = generate_wrist_subject(0, seed=4, duration_s=60.0, config=cfg)
    np.testing.assert_array_equal(rec.ppg.data, ref.ppg.data)
    with pytest.raises(ReaderError, match="0 <= af <= 1"):
        readers.discover("synthetic-wrist", "subjects=2,af=1.5")
