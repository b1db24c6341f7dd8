"""BIDMC PPG and Respiration dataset (PhysioNet, Pimentel et al. 2017), CSV layout.

Per record NN, in one folder:
    bidmc_NN_Signals.csv[.gz]   125 Hz: 'Time [s]', RESP, PLETH, ECG leads (II, V, AVR, ...),
                                sometimes ABP/ART/CVP; column order varies between records
    bidmc_NN_Numerics.csv[.gz]  1 Hz monitor values: 'Time [s]', HR, PULSE, RESP, SpO2
    bidmc_NN_Breaths.csv[.gz]   breath marks (signal sample numbers) by two annotators
    bidmc_NN_Fix.txt            'Key: value' lines: Age, Gender, Location, ...

A unit is one Signals file; the companions are found beside it by record name.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.readers import as_list, find_files, fs_from_times, reader_error, sex_code
from training.data.records import Record, Series, Signal

SOURCE = "bidmc"
FS = 125.0                      # documented rate of the Signals files
FS_TOLERANCE = 0.005            # relative; the derived rate must be this close to FS
TIME_COLUMN = "Time [s]"
ECG_PREFERENCE = ("II", "I", "V", "III", "AVR", "AVL", "AVF", "MCL")
# Numerics column -> series name. HR is the monitor's ECG-derived rate, PULSE the oximeter's.
NUMERICS = {"HR": "hr", "PULSE": "pulse", "RESP": "rr", "SpO2": "spo2"}
BREATHS_ANNOTATOR = "breaths ann1"   # prefix of the column used for 'rr_breaths'

_NAME = re.compile(r"^(bidmc_\d+)_Signals\.csv(\.gz)?$")


def discover(input_path, **opts) -> list[str]:
    """Signals files under `input_path` (a folder or one Signals file), one per record.

    Where a record has both a .csv and a .csv.gz, the uncompressed one is used.
    """
    files = find_files(input_path, ("bidmc_*_Signals.csv", "bidmc_*_Signals.csv.gz"),
                       "BIDMC Signals")
    by_record: dict[str, str] = {}
    for f in files:                       # sorted: '.csv' comes before '.csv.gz'
        m = _NAME.match(Path(f).name)
        if m:
            by_record.setdefault(str(Path(f).parent / m.group(1)), f)
    if not by_record:
        raise reader_error(input_path, "no BIDMC Signals files (bidmc_NN_Signals.csv[.gz]) found")
    return sorted(by_record.values())


def read_unit(unit, **opts) -> list[Record]:
    """One Record per Signals file.

    signals: 'ppg' (PLETH, (T,) at 125 Hz), 'ecg' (lead II by default, (T,) at 125 Hz)
    labels:  'age' (years; '90+' -> 90), 'sex' (1 male, 0 female, NaN unknown)
    series:  'hr', 'pulse', 'rr', 'spo2' from Numerics at 1 Hz (values <= 0 -> NaN),
             'rr_breaths' (breaths/min, one value per breath of annotator 1)
    Options: ecg_lead -- a lead or a comma-separated preference list (default II, I, V, ...).
    """
    path = Path(unit)
    m = _NAME.match(path.name)
    if not m:
        raise reader_error(path, "not a BIDMC Signals file (expected bidmc_NN_Signals.csv[.gz])")
    name = m.group(1)
    notes: list[str] = []

    sig = _read_csv(path)
    if TIME_COLUMN not in sig.columns:
        raise reader_error(path, f"no {TIME_COLUMN!r} column among {list(sig.columns)}")
    fs = fs_from_times(_numeric(sig, TIME_COLUMN, path), path, TIME_COLUMN)
    if abs(fs - FS) > FS_TOLERANCE * FS:
        raise reader_error(path, f"sampling rate {fs:.6g} Hz from {TIME_COLUMN!r}, expected {FS:g} Hz")
    fs = FS     # the derived rate is FS up to the rounding of the time column

    if "PLETH" not in sig.columns:
        raise reader_error(path, f"no PPG channel (PLETH) among {list(sig.columns)}")
    signals = {"ppg": Signal(_numeric(sig, "PLETH", path), fs)}
    lead = next((c for c in (as_list(opts.get("ecg_lead")) or ECG_PREFERENCE) if c in sig.columns), None)
    if lead is not None:
        signals["ecg"] = Signal(_numeric(sig, lead, path), fs)
    else:
        notes.append(f"no ECG lead among {list(sig.columns)}")

    series: dict[str, Series] = {}
    numerics = _companion(path, name, "Numerics")
    if numerics is None:
        notes.append("no Numerics file: no hr/pulse/rr/spo2 series")
    else:
        series.update(_numerics_series(numerics))
    breaths = _companion(path, name, "Breaths")
    if breaths is None:
        notes.append("no Breaths file: no rr_breaths series")
    else:
        series["rr_breaths"] = _breath_rate(breaths, fs)

    meta = {"channels": [c for c in sig.columns if c != TIME_COLUMN], "ecg_lead": lead}
    labels = {"age": float("nan"), "sex": float("nan")}
    fix = path.parent / f"{name}_Fix.txt"
    if fix.is_file():
        info = _read_fix(fix)
        meta["fix"] = info
        labels = {"age": _age(info.get("age", "")), "sex": sex_code(info.get("gender", ""))}
        for key in ("age", "location"):
            if key in info:
                meta[key] = info[key]
        if "gender" in info:
            meta["sex"] = info["gender"]
    else:
        notes.append("no Fix.txt: age, sex and location unknown")
    if notes:
        meta["notes"] = notes

    return [Record(subject_id=name, record_id=name, source=SOURCE, signals=signals,
                   labels=labels, series=series, meta=meta, path=str(path))]


def _read_csv(path: Path) -> pd.DataFrame:
    """A BIDMC CSV with its column names stripped of the spaces that follow each comma."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as e:   # incl. gzip, parser errors
        raise reader_error(path, f"unreadable CSV ({type(e).__name__}: {e})") from e
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise reader_error(path, "no data rows")
    return df


def _numeric(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Column as float64 (T,); missing values stay NaN. A non-numeric column is an error."""
    if not pd.api.types.is_numeric_dtype(df[column]):
        raise reader_error(path, f"column {column!r} is not numeric")
    return df[column].to_numpy(dtype=np.float64, na_value=np.nan)


def _companion(signals_path: Path, name: str, kind: str) -> Path | None:
    for ext in (".csv", ".csv.gz"):
        p = signals_path.parent / f"{name}_{kind}{ext}"
        if p.is_file():
            return p
    return None


def _numerics_series(path: Path) -> dict[str, Series]:
    df = _read_csv(path)
    if TIME_COLUMN not in df.columns:
        raise reader_error(path, f"no {TIME_COLUMN!r} column among {list(df.columns)}")
    t = _numeric(df, TIME_COLUMN, path)
    out = {}
    for column, label in NUMERICS.items():
        if column in df.columns:
            v = _numeric(df, column, path)
            # The monitor writes 0 (or less) when it has no value, e.g. SpO2 without a pleth.
            out[label] = Series(t, np.where(v > 0, v, np.nan))
    return out


def _breath_rate(path: Path, fs: float) -> Series:
    """Instantaneous breathing rate 60 / (breath interval) in breaths/min, placed at the later
    breath of each interval. Marks are sample numbers of the 125 Hz signals; the two annotators'
    columns differ in length, so the shorter one is padded with NaN, which is dropped here."""
    df = _read_csv(path)
    col = next((c for c in df.columns if c.lower().startswith(BREATHS_ANNOTATOR)), None)
    if col is None:
        raise reader_error(path, f"no '{BREATHS_ANNOTATOR} ...' column among {list(df.columns)}")
    marks = _numeric(df, col, path)
    t = np.sort(marks[np.isfinite(marks)]) / fs
    dt = np.diff(t)
    ok = dt > 0
    return Series(t[1:][ok], 60.0 / dt[ok])


def _read_fix(path: Path) -> dict[str, str]:
    """'Key: value' lines -> {'key': 'value'} with lower-case keys."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise reader_error(path, f"unreadable ({e})") from e
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info.setdefault(key.strip().lower(), value.strip())
    return info


def _age(text: str) -> float:
    """'88' -> 88.0; '90+' (ages above 89 are censored for anonymity) -> 90.0; else NaN."""
    try:
        return float(str(text).strip().rstrip("+"))
    except ValueError:
        return float("nan")
