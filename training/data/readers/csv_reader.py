"""A user's own recordings: one CSV (optionally .csv.gz) or NPZ file per recording.

CSV: a header row naming the columns. NPZ: one 1-D array per column (all the same length);
a scalar array 'fs' gives the sampling rate. A unit is one file.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.readers import as_list, check_fs, find_files, fs_from_times, reader_error
from training.data.records import ReaderError, Record, Series, Signal

SOURCE = "csv"
PATTERNS = ("*.csv", "*.csv.gz", "*.npz")
PPG_NAMES = ("ppg", "pleth")           # auto-detected PPG column names (case-insensitive)
ECG_NAMES = ("ecg",)
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
FS_AGREEMENT = 0.01                    # relative; a given fs must match the time column's


def discover(input_path, **opts) -> list[str]:
    """The .csv, .csv.gz and .npz files under `input_path` (a folder or one file)."""
    return find_files(input_path, PATTERNS, "CSV/NPZ")


def read_unit(unit, **opts) -> list[Record]:
    """One Record per file.

    signals: 'ppg' ((T,), NaN where a cell is empty), 'ecg' ((T,)) when there is an ECG column
    series:  one per label column, a value per sample at t = i / fs (or the time column)
    Options: ppg_column -- default: the column named PPG or PLETH (any case);
             ecg_column -- default: a column named ECG (any case) if present; 'none' for none;
             fs -- sampling rate in Hz, required unless time_column is given;
             time_column -- times in seconds (see time_unit) or datetimes; fs is derived from it
                and the sampling checked for regularity;
             time_unit -- 's' (default), 'ms' or 'us' for a numeric time column;
             label_columns -- column or comma list of per-sample labels;
             subject_id -- default: the file name without extension;
             sep -- CSV field separator (default ',').
    """
    path = Path(unit)
    columns, file_fs = _load(path, opts.get("sep") or ",")
    names = list(columns)

    ppg_col = _pick(path, names, opts.get("ppg_column"), PPG_NAMES, "PPG")
    ecg_opt = opts.get("ecg_column")
    if ecg_opt is not None and str(ecg_opt).strip().lower() in ("", "none"):
        ecg_col = None
    else:
        ecg_col = _pick(path, names, ecg_opt, ECG_NAMES, "ECG", required=False)
    label_cols = [_pick(path, names, c, (), "label") for c in as_list(opts.get("label_columns"))]

    n = len(columns[ppg_col])
    time_col = opts.get("time_column")
    if time_col:
        time_col = _pick(path, names, time_col, (), "time")
        t = _times(path, columns[time_col], time_col, opts.get("time_unit") or "s")
        fs = fs_from_times(t, path, time_col)
        if opts.get("fs") is not None:
            given = check_fs(opts["fs"], path)
            if abs(given - fs) > FS_AGREEMENT * fs:
                raise reader_error(path, f"fs={given:g} Hz disagrees with time column "
                                         f"{time_col!r} ({fs:.6g} Hz)")
        times_s = t - t[0]
    else:
        if opts.get("fs") is not None:
            fs = check_fs(opts["fs"], path)
        elif file_fs is not None:
            fs = check_fs(file_fs, path, "sampling rate stored as 'fs'")
        else:
            raise reader_error(path, "no sampling rate: give fs (Hz) or time_column")
        times_s = np.arange(n) / fs

    signals = {"ppg": Signal(_numeric(path, columns[ppg_col], ppg_col), fs)}
    if ecg_col is not None:
        signals["ecg"] = Signal(_numeric(path, columns[ecg_col], ecg_col), fs)
    series = {c: Series(times_s, _numeric(path, columns[c], c)) for c in label_cols}

    stem = re.sub(r"\.(csv(\.gz)?|npz)$", "", path.name)
    meta = {"columns": names, "ppg_column": ppg_col, "ecg_column": ecg_col,
            "time_column": time_col or None}
    return [Record(subject_id=str(opts.get("subject_id") or stem), record_id=stem, source=SOURCE,
                   signals=signals, series=series, meta=meta, path=str(path))]


def _load(path: Path, sep: str) -> tuple[dict[str, np.ndarray], float | None]:
    """Columns by name (each (T,)) and the sampling rate stored in the file, if any."""
    if not path.is_file():
        raise reader_error(path, "no such file")
    if path.name.endswith(".npz"):
        return _load_npz(path)
    try:
        df = pd.read_csv(path, sep=sep)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as e:  # incl. parser errors
        raise reader_error(path, f"unreadable CSV ({type(e).__name__}: {e})") from e
    if len(df) == 0:
        raise reader_error(path, "no data rows")
    return {str(c).strip(): df[c].to_numpy() for c in df.columns}, None


def _load_npz(path: Path) -> tuple[dict[str, np.ndarray], float | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except Exception as e:   # zipfile.BadZipFile, ValueError (pickled objects), OSError...
        raise reader_error(path, f"unreadable NPZ ({type(e).__name__}: {e})") from e
    file_fs = arrays.pop("fs", None)
    if file_fs is not None:
        if file_fs.size != 1:
            raise reader_error(path, f"'fs' must be a scalar, has shape {file_fs.shape}")
        file_fs = file_fs.reshape(-1)[0]
    # 1-D arrays, and (T, 1) or (1, T) ones, are columns; anything else is not a signal.
    columns = {k: v.reshape(-1) for k, v in arrays.items() if v.ndim >= 1 and v.size == max(v.shape)}
    lengths = {k: len(v) for k, v in columns.items()}
    if not columns:
        raise reader_error(path, "no 1-D arrays")
    if len(set(lengths.values())) > 1:
        raise reader_error(path, f"arrays differ in length: {lengths}")
    return columns, file_fs


def _pick(path: Path, names: list[str], wanted, defaults, what: str, required: bool = True) -> str | None:
    """The column for `wanted` (exact name, else case-insensitive), or by default the first
    column whose name is one of `defaults` (case-insensitive)."""
    if wanted:
        wanted = str(wanted)
        if wanted in names:
            return wanted
        folded = [n for n in names if n.lower() == wanted.lower()]
        if folded:
            return folded[0]
        raise reader_error(path, f"no {what} column {wanted!r}; columns: {names}")
    hit = next((n for d in defaults for n in names if n.lower() == d), None)
    if hit is None and required:
        raise reader_error(path, f"no {what} column (give {what.lower()}_column); columns: {names}")
    return hit


def _numeric(path: Path, values: np.ndarray, column: str) -> np.ndarray:
    """A column as float64; empty cells are NaN. Text in a numeric column is an error."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    converted = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(converted) & ~pd.isna(pd.Series(values)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise reader_error(path, f"column {column!r} is not numeric (row {i + 1}: {values[i]!r})")
    return converted


def _times(path: Path, values: np.ndarray, column: str, unit: str) -> np.ndarray:
    """Time column in seconds: numbers in `unit`, or datetime strings."""
    if unit not in TIME_UNITS:
        raise reader_error(path, f"time_unit {unit!r} not one of {list(TIME_UNITS)}")
    try:
        return _numeric(path, values, column) * TIME_UNITS[unit]
    except ReaderError:
        pass
    try:
        dt = pd.to_datetime(pd.Series(values), errors="raise")
    except (ValueError, TypeError) as e:
        raise reader_error(path, f"time column {column!r} holds neither numbers nor datetimes") from e
    return (dt - dt.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)
