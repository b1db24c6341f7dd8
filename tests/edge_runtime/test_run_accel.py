"""`anyppg run` with accelerometer columns: read beside the PPG (CSV or NPZ, three named columns
in g), refused in one line where they do not fit the file or the model."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.recordings import read_recording
from edge_runtime.run_cli import main as run_main
from edge_runtime.timebase import InputError


def _csv(tmp_path, n=4000, fs=64.0):
    t = np.arange(n) / fs
    rows = np.stack([np.sin(2 * np.pi * 1.2 * t), 0.3 * np.sin(2 * np.pi * 2 * t),
                     0.01 * np.cos(t), 1.0 + 0 * t], 1)
    p = tmp_path / "rec.csv"
    np.savetxt(p, rows, delimiter=",", header="pleth,ax,ay,az", comments="")
    return p, rows


def test_reads_three_accel_columns_from_csv_and_npz(tmp_path):
    p, rows = _csv(tmp_path)
    rec = read_recording(p, accel_columns=["ax", "ay", "az"])
    assert rec.column == "pleth" and rec.accel.shape == (len(rows), 3)
    np.testing.assert_allclose(rec.accel, rows[:, 1:], atol=1e-12)
    assert read_recording(p).accel is None
    z = tmp_path / "rec.npz"
    np.savez(z, ppg=rows[:, 0], x=rows[:, 1], y=rows[:, 2], z=rows[:, 3], fs=64.0)
    np.testing.assert_array_equal(read_recording(z, accel_columns=["x", "y", "z"]).accel, rows[:, 1:])
    with pytest.raises(InputError, match="three names"):
        read_recording(p, accel_columns=["ax", "ay"])
    with pytest.raises(InputError, match="no accel column 'aw'"):
        read_recording(p, accel_columns=["ax", "ay", "aw"])


@pytest.mark.slow
def test_a_ppg_only_model_refuses_accel_columns(export_dir, tmp_path, capsys):
    p, _ = _csv(tmp_path)
    assert run_main(["--model", str(export_dir), "--input", str(p), "--fs", "64",
                     "--accel-columns", "ax,ay,az"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "takes no 'accel' input" in err
