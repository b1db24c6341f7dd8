"""TROIKA / IEEE Signal Processing Cup 2015 test set: wrist PPG and accelerometer during exercise.

    TEST_Sxx_Tyy.mat   sig (5, T) at 125 Hz: rows PPG channel 1, PPG channel 2, accel x, y, z
    True_Sxx_Tyy.mat   BPM0 (W, 1): HR from a chest ECG for 8-s windows every 2 s
                       (reference i covers [2i, 2i + 8) s)

A unit is one TEST file (its True file beside it). The labelling follows the project's wrist
evaluation: non-overlapping 10-s windows from 0 s, each labelled with the mean of the two 8-s
references that start at its start and 2 s later (i = 5k and 5k + 1 for window k). The record
is therefore pre-cut (`segment_s` = 10 s, one label per segment), like Liu 2022, so the window
store cuts exactly these windows. Only windows with both references are kept.

Evaluation only: this set is never used to train, tune or select a model. Prepare it so that
every window lands in the test split and none is dropped for motion spikes (a wrist under
exercise is what it is there to measure):

    anyppg data prepare --source troika --input ../shared/data/troika_test --out stores/troika \
        --split 0,0,1 --reject nan_gap,flat
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from training.data.readers import check_fs, find_files, reader_error
from training.data.records import Record, Series, Signal

SOURCE = "troika"
FS = 125.0
WINDOW_S = 10.0          # the evaluation protocol's window (one label per window)
REF_STEP_S = 2.0         # BPM0 reference i starts at 2i s ...
REF_LEN_S = 8.0          # ... and covers 8 s
PPG_ROW = 0              # PPG channel 1
ACCEL_ROWS = {"accel_x": 2, "accel_y": 3, "accel_z": 4}
_NAME = re.compile(r"^TEST_(S\d+)_(T\d+)\.mat$")


def discover(input_path, **opts) -> list[str]:
    """The TEST_Sxx_Tyy.mat files under `input_path` (a folder or one file)."""
    return find_files(input_path, ("TEST_S*_T*.mat",), "TROIKA test (TEST_Sxx_Tyy.mat)")


def window_labels(bpm0: np.ndarray, n_windows: int) -> np.ndarray:
    """HR label of each non-overlapping 10-s window k: mean(BPM0[5k], BPM0[5k + 1]), (K,),
    for the K <= n_windows windows whose two references both exist."""
    per = int(round(WINDOW_S / REF_STEP_S))
    bpm0 = np.asarray(bpm0, np.float64).reshape(-1)
    k = min(n_windows, (len(bpm0) - 2) // per + 1 if len(bpm0) >= 2 else 0)
    i = per * np.arange(k)
    return 0.5 * (bpm0[i] + bpm0[i + 1])


def read_unit(unit, **opts) -> list[Record]:
    """One Record per recording (subject = Sxx, record = Sxx_Tyy).

    signals:       'ppg' (PPG channel 1) and 'accel_x', 'accel_y', 'accel_z', all at 125 Hz,
                   cut to the K labelled 10-s windows
    segment_s:     10.0 (each segment is one evaluation window)
    window_labels: 'hr' (K,) bpm by the labelling above
    series:        'hr_ref' the raw 8-s references at their centres (2i + 4 s)
    Options: fs -- sampling rate (default 125 Hz, the published rate).
    """
    path = Path(unit)
    fs = FS if opts.get("fs") is None else check_fs(opts["fs"], path)
    m = _NAME.match(path.name)
    if not m:
        raise reader_error(path, "not a TROIKA test file (expected TEST_Sxx_Tyy.mat)")
    subject, trial = m.groups()
    sig = _load(path, "sig")
    if sig.ndim != 2 or sig.shape[0] != 5 or sig.shape[1] < 2:
        raise reader_error(path, f"sig has shape {sig.shape}, expected (5, samples): PPG 1, PPG 2, "
                                 "accel x, y, z")
    true_path = path.with_name(f"True_{subject}_{trial}.mat")
    bpm0 = _load(true_path, "BPM0").reshape(-1)
    if not np.all(np.isfinite(bpm0)) or np.any(bpm0 <= 0):
        raise reader_error(true_path, "BPM0 has missing or non-positive heart rates")
    seg = int(round(WINDOW_S * fs))
    hr = window_labels(bpm0, sig.shape[1] // seg)
    if len(hr) == 0:
        raise reader_error(path, f"no 10-s window has both references ({sig.shape[1]} samples, "
                                 f"{len(bpm0)} BPM0 values)")
    keep = len(hr) * seg
    signals = {"ppg": Signal(sig[PPG_ROW, :keep], fs)}
    signals.update({name: Signal(sig[row, :keep], fs) for name, row in ACCEL_ROWS.items()})
    centres = REF_STEP_S * np.arange(len(bpm0)) + REF_LEN_S / 2
    rid = f"{subject}_{trial}"
    return [Record(subject_id=f"troika_{subject}", record_id=f"troika_{rid}", source=SOURCE,
                   signals=signals, segment_s=WINDOW_S,
                   window_labels={"hr": hr.astype(np.float64)},
                   series={"hr_ref": Series(centres, bpm0)},
                   meta={"n_windows": int(len(hr)), "n_references": int(len(bpm0)),
                         "evaluation_only": True},
                   path=str(path))]


def _load(path: Path, name: str) -> np.ndarray:
    """Variable `name` of a MATLAB v5 file as float64."""
    import scipy.io

    if not path.is_file():
        raise reader_error(path, "no such file" + (" (the True_ file beside the TEST_ file)"
                                                  if name == "BPM0" else ""))
    try:
        mat = scipy.io.loadmat(str(path), variable_names=(name,))
    except Exception as e:                # truncated/corrupt/v7.3: ValueError, OSError, ...
        raise reader_error(path, f"unreadable .mat file ({type(e).__name__}: {e})") from e
    if name not in mat:
        raise reader_error(path, f"no '{name}' variable in the .mat file")
    try:
        return np.asarray(mat[name], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise reader_error(path, f"'{name}' is not a numeric array ({e})") from e
