"""PPG arrhythmia dataset of Liu et al. (JAHA 2022): one MATLAB file per patient.

    MPA_<timestamp>.mat   ppgseg (N, 1000): N segments of 10 s at 100 Hz, scaled to 0..1
                          labels (N, 1):    rhythm of each segment, 0..5 (RHYTHMS)

A unit is one file; the published files are MATLAB v5 (scipy.io.loadmat). v7.3 files (HDF5)
are read with h5py, which sees MATLAB's column-major arrays transposed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.readers import check_fs, find_files, reader_error
from training.data.records import ReaderError, Record, Signal

SOURCE = "liu2022"
FS = 100.0
RHYTHMS = ("sinus", "PVC", "PAC", "VT", "SVT", "AF")
AF = 5


def discover(input_path, **opts) -> list[str]:
    """The .mat files under `input_path` (a folder or one file)."""
    return find_files(input_path, ("*.mat",), "MATLAB (.mat)")


def read_unit(unit, **opts) -> list[Record]:
    """One Record per file (subject = file stem).

    signals:       'ppg' (N * L,) at 100 Hz: the N segments of L samples, concatenated
    segment_s:     L / fs (10.0 for the published files)
    window_labels: 'rhythm' (N,) int64 in 0..5, 'af' (N,) bool (rhythm == 5)
    Options: fs -- segment sampling rate (default 100 Hz, the published rate).
    """
    path = Path(unit)
    fs = FS if opts.get("fs") is None else check_fs(opts["fs"], path)
    ppgseg, labels = _load(path)

    if ppgseg.ndim != 2 or min(ppgseg.shape) == 0:
        raise reader_error(path, f"ppgseg has shape {ppgseg.shape}, expected (segments, samples)")
    if labels.size != ppgseg.shape[0] and labels.size == ppgseg.shape[1] and labels.ndim == 2 \
            and 1 in labels.shape:
        # Stored transposed (samples, segments): the label count tells which axis is which.
        ppgseg = ppgseg.T
    if labels.size != ppgseg.shape[0]:
        raise reader_error(path, f"{labels.size} labels for {ppgseg.shape[0]} ppgseg segments")
    labels = labels.reshape(-1)
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)) \
            or labels.min() < 0 or labels.max() > len(RHYTHMS) - 1:
        raise reader_error(path, f"labels outside 0..{len(RHYTHMS) - 1}: "
                                 f"{np.unique(labels)[:10].tolist()}")
    rhythm = labels.astype(np.int64)
    n_seg, seg_len = ppgseg.shape
    meta = {"n_segments": int(n_seg), "segment_samples": int(seg_len),
            "rhythm_counts": {RHYTHMS[k]: int((rhythm == k).sum()) for k in range(len(RHYTHMS))}}
    return [Record(subject_id=path.stem, record_id=path.stem, source=SOURCE,
                   signals={"ppg": Signal(ppgseg.astype(np.float64).reshape(-1), fs)},
                   segment_s=seg_len / fs,
                   window_labels={"rhythm": rhythm, "af": rhythm == AF},
                   meta=meta, path=str(path))]


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ppgseg, labels) as stored, float64."""
    import scipy.io

    if not path.is_file():
        raise reader_error(path, "no such file")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=("ppgseg", "labels"))
    except NotImplementedError:           # scipy's answer to MATLAB v7.3 (HDF5) files
        return _load_hdf5(path)
    except Exception as e:                # truncated/corrupt: ValueError, OSError, TypeError...
        raise reader_error(path, f"unreadable .mat file ({type(e).__name__}: {e})") from e
    for name in ("ppgseg", "labels"):
        if name not in mat:
            raise reader_error(path, f"no '{name}' variable in the .mat file")
    try:
        return np.asarray(mat["ppgseg"], dtype=np.float64), np.asarray(mat["labels"], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise reader_error(path, f"ppgseg/labels are not numeric arrays ({e})") from e


def _load_hdf5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        import h5py
    except ImportError as e:
        raise reader_error(path, "MATLAB v7.3 file and h5py is not installed") from e
    try:
        with h5py.File(path, "r") as f:
            for name in ("ppgseg", "labels"):
                if name not in f:
                    raise reader_error(path, f"no '{name}' variable in the .mat (v7.3) file")
            # HDF5 holds MATLAB's column-major arrays transposed.
            return (np.asarray(f["ppgseg"], dtype=np.float64).T,
                    np.asarray(f["labels"], dtype=np.float64).T)
    except ReaderError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise reader_error(path, f"unreadable .mat (v7.3) file ({type(e).__name__}: {e})") from e
