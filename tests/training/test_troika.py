"""TROIKA reader: the published test set (skipped where absent) and small files written here.
The labelling is the wrist protocol's: 10-s windows from 0 s, each the mean of the two 8-s ECG
references that start at its start and 2 s later."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from tests.conftest import shared_dataset
from training.data import readers
from training.data.readers import troika
from training.data.records import ReaderError
from training.prepare import record_windows
from edge_runtime.spec import SPECS


def _write(folder, name="S99_T01", seconds=35.0, n_ref=14, fs=125.0, bpm=None):
    n = int(seconds * fs)
    t = np.arange(n) / fs
    sig = np.stack([np.sin(2 * np.pi * 1.5 * t), np.cos(2 * np.pi * 1.5 * t),
                    0.1 * t, np.ones(n), -np.ones(n)])
    bpm = np.arange(n_ref, dtype=float) + 80.0 if bpm is None else np.asarray(bpm, float)
    scipy.io.savemat(folder / f"TEST_{name}.mat", {"sig": sig})
    scipy.io.savemat(folder / f"True_{name}.mat", {"BPM0": bpm[:, None]})
    return folder / f"TEST_{name}.mat", sig, bpm


def test_labels_are_mean_of_the_two_references(tmp_path):
    path, sig, bpm = _write(tmp_path)
    [rec] = readers.read_unit("troika", str(path))
    # 35 s of signal -> 3 full windows; 14 references -> windows k with 5k + 1 <= 13 -> 3.
    np.testing.assert_allclose(rec.window_labels["hr"], [(bpm[0] + bpm[1]) / 2,
                                                         (bpm[5] + bpm[6]) / 2,
                                                         (bpm[10] + bpm[11]) / 2])
    assert rec.segment_s == 10.0 and rec.subject_id == "troika_S99"
    assert len(rec.ppg.data) == 3 * 1250
    np.testing.assert_array_equal(rec.ppg.data, sig[0, :3 * 1250])
    for ax, row in (("accel_x", 2), ("accel_y", 3), ("accel_z", 4)):
        np.testing.assert_array_equal(rec.signals[ax].data, sig[row, :3 * 1250])


def test_windows_limited_by_references(tmp_path):
    path, _, bpm = _write(tmp_path, seconds=60.0, n_ref=8)     # refs 0..7 -> windows 0, 1
    [rec] = readers.read_unit("troika", str(path))
    assert len(rec.window_labels["hr"]) == 2
    w = record_windows(rec, SPECS["small"], pad_short=False)
    assert w["ppg"].shape == (2, 1250)
    np.testing.assert_allclose(w["labels"]["hr"], [(bpm[0] + bpm[1]) / 2, (bpm[5] + bpm[6]) / 2])
    np.testing.assert_allclose(w["start_s"], [0.0, 10.0])


def test_bad_inputs_are_one_line_errors(tmp_path):
    path, _, _ = _write(tmp_path)
    (tmp_path / "True_S99_T01.mat").unlink()
    with pytest.raises(ReaderError, match=r"True_S99_T01\.mat: no such file"):
        readers.read_unit("troika", str(path))
    scipy.io.savemat(tmp_path / "TEST_S98_T01.mat", {"sig": np.zeros((3, 5000))})
    scipy.io.savemat(tmp_path / "True_S98_T01.mat", {"BPM0": np.ones((20, 1))})
    with pytest.raises(ReaderError, match=r"TEST_S98_T01\.mat: sig has shape \(3, 5000\)"):
        readers.read_unit("troika", str(tmp_path / "TEST_S98_T01.mat"))
    _write(tmp_path, name="S97_T01", bpm=[80.0, np.nan] + [80.0] * 12)
    with pytest.raises(ReaderError, match="BPM0 has missing"):
        readers.read_unit("troika", str(tmp_path / "TEST_S97_T01.mat"))
    (tmp_path / "other.mat").write_bytes(b"not a mat file")
    with pytest.raises(ReaderError, match="not a TROIKA test file"):
        troika.read_unit(str(tmp_path / "other.mat"))
    (tmp_path / "TEST_S96_T01.mat").write_bytes(b"garbage")
    with pytest.raises(ReaderError, match=r"TEST_S96_T01\.mat: unreadable"):
        readers.read_unit("troika", str(tmp_path / "TEST_S96_T01.mat"))


def test_published_test_set():
    folder = shared_dataset("troika_test")
    units = readers.discover("troika", str(folder))
    assert len(units) == 10
    recs = [r for u in units for r in readers.read_unit("troika", u)]
    assert sum(len(r.window_labels["hr"]) for r in recs) == 269
    assert len({r.subject_id for r in recs}) == 8
    first = recs[0]
    bpm0 = scipy.io.loadmat(str(folder / "True_S01_T01.mat"))["BPM0"].ravel()
    assert first.window_labels["hr"][3] == pytest.approx((bpm0[15] + bpm0[16]) / 2)
    hr = np.concatenate([r.window_labels["hr"] for r in recs])
    assert 55 < hr.min() < 65 and 165 < hr.max() < 180
