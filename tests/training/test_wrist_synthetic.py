"""Synthetic wearable PPG: ranges, motion, sensor rates and the reader interface."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import preprocess as pp
from edge_runtime.spec import SPECS
from training.data import readers
from training.data.records import ReaderError
from training.data.synthetic_wrist import (ACCEL_AXES, SENSOR_RATES_HZ, generate_wrist_subject)


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
