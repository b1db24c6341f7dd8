"""Reading a user's recording for the runtime with its own dependencies: CSV (optionally .gz,
e.g. BIDMC's `*_Signals.csv.gz`) and NPZ with numpy, WFDB records with `wfdb` when installed.

Every problem is a one-line `InputError` naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .timebase import InputError

PPG_NAMES = ("ppg", "pleth", "pulse", "bvp", "ppg_ir", "ir", "green")
TIME_NAMES = ("time", "t", "timestamp", "time [s]", "time_s", "seconds")


@dataclass
class Recording:
    """samples (T,) float64, optional timestamps (T,) in seconds, and a rate if the file says;
    accel (T, 3) in g when accelerometer columns were asked for."""
    path: Path
    column: str
    samples: np.ndarray
    timestamps: np.ndarray | None = None
    fs: float | None = None
    accel: np.ndarray | None = None


def _accel(path: Path, names: list[str], want: list[str] | None, get) -> np.ndarray | None:
    """(T, 3) from the three named columns (x, y, z), or None when none were asked for."""
    if not want:
        return None
    if len(want) != 3:
        raise InputError(f"{path}: --accel-columns takes three names (x,y,z), got {len(want)}")
    cols = [_pick(names, w, (), "accel", path) for w in want]
    return np.stack([np.asarray(get(c), np.float64).reshape(-1) for c in cols], axis=1)


def _pick(names: list[str], want: str | None, defaults: tuple[str, ...], what: str, path: Path,
          required: bool = True) -> str | None:
    def norm(n: str) -> str:            # genfromtxt turns spaces in a header into underscores
        return n.strip().lower().replace(" ", "_")
    low = {norm(n): n for n in names}
    if want is not None:
        if want in names:
            return want
        if norm(want) in low:
            return low[norm(want)]
        raise InputError(f"{path}: no {what} column {want!r} (columns: {', '.join(n.strip() for n in names)})")
    for d in defaults:
        if norm(d) in low:
            return low[norm(d)]
    if required:
        raise InputError(f"{path}: cannot tell which column is the {what} "
                         f"(columns: {', '.join(n.strip() for n in names)}); pass --{what}-column")
    return None


def _read_csv(path: Path, column: str | None, time_column: str | None,
              accel_columns: list[str] | None = None) -> Recording:
    try:
        data = np.genfromtxt(path, delimiter=",", names=True, dtype=np.float64,
                             deletechars="", autostrip=True, invalid_raise=False)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: unreadable CSV ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if data.dtype.names is None or data.size == 0:
        raise InputError(f"{path}: no header row or no data rows")
    names = list(data.dtype.names)
    col = _pick(names, column, PPG_NAMES, "ppg", path)
    tcol = _pick(names, time_column, TIME_NAMES, "time", path, required=time_column is not None)
    x = np.atleast_1d(data[col]).astype(np.float64)
    t = np.atleast_1d(data[tcol]).astype(np.float64) if tcol else None
    return Recording(path, col.strip(), x, t,
                     accel=_accel(path, names, accel_columns, lambda c: np.atleast_1d(data[c])))


def _read_npz(path: Path, column: str | None, time_column: str | None,
              accel_columns: list[str] | None = None) -> Recording:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable NPZ ({e})") from None
    names = list(z.files)
    col = _pick(names, column, PPG_NAMES, "ppg", path)
    tcol = _pick(names, time_column, TIME_NAMES, "time", path, required=time_column is not None)
    fs = float(z["fs"]) if "fs" in names and z["fs"].size == 1 else None
    return Recording(path, col, np.asarray(z[col], np.float64).reshape(-1),
                     np.asarray(z[tcol], np.float64).reshape(-1) if tcol else None, fs,
                     _accel(path, names, accel_columns, lambda c: z[c]))


def _read_wfdb(path: Path, column: str | None) -> Recording:
    try:
        import wfdb
    except ImportError:
        raise InputError(f"{path}: reading WFDB records needs `wfdb` (the training extra)") from None
    try:
        rec = wfdb.rdrecord(str(path.with_suffix("")))
    except Exception as e:          # wfdb raises many types on a bad header
        raise InputError(f"{path}: unreadable WFDB record ({type(e).__name__}: {e})") from None
    names = list(rec.sig_name)
    col = _pick(names, column, PPG_NAMES, "ppg", path)
    return Recording(path, col, rec.p_signal[:, names.index(col)].astype(np.float64), None, float(rec.fs))


def read_recording(path: str | Path, column: str | None = None, time_column: str | None = None,
                   time_unit: str = "s", accel_columns: list[str] | None = None) -> Recording:
    """A recording from CSV / CSV.GZ / NPZ / WFDB (.hea or .dat); accel_columns: the x, y, z
    accelerometer columns (g) of a CSV or NPZ."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt")):
        rec = _read_csv(path, column, time_column, accel_columns)
    elif name.endswith(".npz"):
        rec = _read_npz(path, column, time_column, accel_columns)
    elif name.endswith((".hea", ".dat")):
        if accel_columns:
            raise InputError(f"{path}: accelerometer columns are read from CSV or NPZ files only")
        rec = _read_wfdb(path, column)
    else:
        raise InputError(f"{path}: unknown format (CSV, CSV.GZ, NPZ or a WFDB .hea)")
    if rec.timestamps is not None and time_unit == "ms":
        rec.timestamps = rec.timestamps / 1000.0
    if len(rec.samples) == 0:
        raise InputError(f"{path}: column {rec.column!r} has no samples")
    if rec.accel is not None and len(rec.accel) != len(rec.samples):
        raise InputError(f"{path}: accelerometer columns have {len(rec.accel)} samples, the PPG {len(rec.samples)}")
    return rec
