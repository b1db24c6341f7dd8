"""PPG-BP database (Liang et al., Sci Data 2018).

Layout:
    PPG-BP dataset.xlsx         one row per subject; title on row 1, header on row 2
    PPGBPDatabase/<id>_<n>.txt  segment n (1..3) of subject <id>: one line of tab-separated
                                raw values at 1 kHz (2100 values = 2.1 s; subject 231 has two
                                segments of 4200 values)

A unit is one subject: the pattern '<folder>/<id>_*.txt', so that a subject's segments are read
together. `read_unit` also takes a single segment file.
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.readers import reader_error, sex_code
from training.data.records import Record, Signal

SOURCE = "ppg-bp"
FS = 1000.0
SEGMENT_FOLDER = "PPGBPDatabase"
XLSX_NAME = "PPG-BP dataset.xlsx"
XLSX_HEADER_ROW = 1            # 0-based: the first row holds a title, the second the header

# label -> column name in the xlsx. Matched ignoring case and spaces, since other copies of
# the file differ in spacing.
COLUMNS = {
    "subject": "subject_ID",
    "sex": "Sex(M/F)",
    "age": "Age(year)",
    "sbp": "Systolic Blood Pressure(mmHg)",
    "dbp": "Diastolic Blood Pressure(mmHg)",
    "hr": "Heart Rate(b/m)",
    "bmi": "BMI(kg/m^2)",
    "hypertension": "Hypertension",
    "diabetes": "Diabetes",
}
NUMERIC_LABELS = ("sbp", "dbp", "hr", "age", "bmi")
# Hypertension is made binary as 'has hypertension': the xlsx grades Normal, Prehypertension,
# Stage 1 hypertension and Stage 2 hypertension. Prehypertension (SBP 120-139 or DBP 80-89) is
# not hypertension, so it counts as 0 with Normal; either stage counts as 1.
HYPERTENSION = {"normal": 0.0, "prehypertension": 0.0,
                "stage 1 hypertension": 1.0, "stage 2 hypertension": 1.0}
# Comorbidity columns hold a diagnosis text or are empty.
COMORBIDITIES = ("Diabetes", "cerebral infarction", "cerebrovascular disease")

_SEGMENT = re.compile(r"^(\d+)_(\d+)\.txt$")


def discover(input_path, **opts) -> list[str]:
    """One unit per subject: '<segment folder>/<id>_*.txt', sorted by subject number.

    `input_path` is the dataset folder (holding the xlsx and PPGBPDatabase/), the segment
    folder itself, or one segment file (then the unit is that file).
    """
    p = Path(input_path)
    if str(input_path) == "" or not p.exists():
        raise reader_error(input_path or "''", "no such file or directory")
    if p.is_file():
        if not _SEGMENT.match(p.name):
            raise reader_error(p, "not a PPG-BP segment file (expected <subject_ID>_<n>.txt)")
        return [str(p)]
    folder = p / SEGMENT_FOLDER if (p / SEGMENT_FOLDER).is_dir() else p
    if not folder.is_dir():
        raise reader_error(p, f"not a PPG-BP folder (expected {SEGMENT_FOLDER}/<id>_<n>.txt)")
    ids = {m.group(1) for f in folder.iterdir() if (m := _SEGMENT.match(f.name))}
    if not ids:
        raise reader_error(folder, "no PPG-BP segment files (<subject_ID>_<n>.txt) found")
    return [str(folder / f"{i}_*.txt") for i in sorted(ids, key=lambda i: (int(i), i))]


def read_unit(unit, **opts) -> list[Record]:
    """One Record per segment of the unit's subject.

    signals: 'ppg' ((2100,) at 1 kHz, raw sensor values)
    labels:  'sbp', 'dbp' (mmHg), 'hr' (beats/min), 'hypertension' (0/1, see HYPERTENSION),
             'age' (years), 'sex' (1 male, 0 female), 'bmi' (kg/m^2), 'diabetes' (0/1);
             all NaN, with a meta note, when the subject is not in the xlsx
    Options: xlsx -- path of the subject table (default: 'PPG-BP dataset.xlsx' beside the
             segment folder, or in it).
    """
    path = Path(unit)
    if "*" in path.name:
        m = re.match(r"^(\d+)_\*\.txt$", path.name)
        if not m:
            raise reader_error(path, "not a PPG-BP unit (expected <folder>/<subject_ID>_*.txt)")
        sid = m.group(1)
        files = sorted((f for f in path.parent.glob(f"{sid}_*.txt")
                        if (s := _SEGMENT.match(f.name)) and s.group(1) == sid),
                       key=lambda f: int(_SEGMENT.match(f.name).group(2)))
        if not files:
            raise reader_error(path, "no segment files for this subject")
    else:
        m = _SEGMENT.match(path.name)
        if not m:
            raise reader_error(path, "not a PPG-BP segment file (expected <subject_ID>_<n>.txt)")
        if not path.is_file():
            raise reader_error(path, "no such file")
        sid, files = m.group(1), [path]
    subject = int(sid)

    labels, meta = _subject_labels(subject, path.parent, opts.get("xlsx"))
    records = []
    for f in files:
        n = int(_SEGMENT.match(f.name).group(2))
        records.append(Record(subject_id=f"ppgbp_{subject}", record_id=f"ppgbp_{subject}_{n}",
                              source=SOURCE, signals={"ppg": Signal(_read_segment(f), FS)},
                              labels=dict(labels), meta={**copy.deepcopy(meta), "segment": n},
                              path=str(f)))
    return records


def _read_segment(path: Path) -> np.ndarray:
    """The raw values of one segment file, (T,) float64 (tabs, spaces or newlines between)."""
    try:
        fields = path.read_text().split()
    except (OSError, UnicodeDecodeError) as e:
        raise reader_error(path, f"unreadable ({e})") from e
    try:
        x = np.array([float(v) for v in fields], dtype=np.float64)
    except ValueError as e:
        raise reader_error(path, f"non-numeric value in segment ({e})") from e
    if x.size == 0:
        raise reader_error(path, "empty segment")
    return x


def _find_xlsx(folder: Path, given) -> Path | None:
    if given:
        return Path(given)
    for cand in (folder.parent / XLSX_NAME, folder / XLSX_NAME):
        if cand.is_file():
            return cand
    return None


def _subject_labels(subject: int, folder: Path, xlsx_opt) -> tuple[dict[str, float], dict]:
    nan = float("nan")
    labels = {k: nan for k in (*NUMERIC_LABELS, "sex", "hypertension", "diabetes")}
    xlsx = _find_xlsx(folder, xlsx_opt)
    if xlsx is None:
        return labels, {"notes": [f"no {XLSX_NAME} found: labels unknown"]}
    if not xlsx.is_file():
        raise reader_error(xlsx, "no such file")
    st = xlsx.stat()
    table = _read_table(str(xlsx.resolve()), st.st_mtime_ns, st.st_size)
    if subject not in table:
        return labels, {"notes": [f"subject {subject} not in {xlsx.name}: labels unknown"]}
    return copy.deepcopy(table[subject])


@functools.lru_cache(maxsize=4)
def _read_table(xlsx: str, mtime_ns: int, size: int) -> dict[int, tuple[dict[str, float], dict]]:
    """subject_ID -> (labels, meta) for every row of the xlsx. Cached (keyed by the file's
    modification time and size too): every unit needs it, and parsing the workbook takes far
    longer than reading a subject's segments."""
    path = Path(xlsx)
    try:
        df = pd.read_excel(path, header=XLSX_HEADER_ROW)
    except Exception as e:   # openpyxl/zipfile raise many types for a broken workbook
        raise reader_error(path, f"unreadable workbook ({type(e).__name__}: {e})") from e
    key = {_key(c): c for c in df.columns}
    cols = {label: key.get(_key(name)) for label, name in COLUMNS.items()}
    if cols["subject"] is None:
        raise reader_error(path, f"no column {COLUMNS['subject']!r} in row {XLSX_HEADER_ROW + 1} "
                                 f"(found {[str(c) for c in df.columns]})")
    missing = [COLUMNS[k] for k, c in cols.items() if c is None]

    table = {}
    for _, row in df.iterrows():
        sid = pd.to_numeric(row[cols["subject"]], errors="coerce")
        if pd.isna(sid):
            continue                       # blank or footer rows
        labels = {k: _number(row[cols[k]]) if cols[k] else float("nan") for k in NUMERIC_LABELS}
        labels["sex"] = sex_code(row[cols["sex"]]) if cols["sex"] else float("nan")
        ht = _text(row[cols["hypertension"]]) if cols["hypertension"] else ""
        labels["hypertension"] = HYPERTENSION.get(ht.lower(), float("nan"))
        labels["diabetes"] = float(bool(_text(row[cols["diabetes"]]))) if cols["diabetes"] else float("nan")
        meta = {"hypertension_class": ht}
        for name in COMORBIDITIES:
            c = key.get(_key(name))
            if c is not None and _text(row[c]):
                meta.setdefault("comorbidities", []).append(_text(row[c]))
        if missing:
            meta["notes"] = [f"columns missing from {path.name}: {missing}"]
        table[int(sid)] = (labels, meta)
    return table


def _key(name) -> str:
    return re.sub(r"\s+", "", str(name)).lower()


def _text(v) -> str:
    return "" if pd.isna(v) else str(v).strip()


def _number(v) -> float:
    v = pd.to_numeric(v, errors="coerce")
    return float("nan") if pd.isna(v) else float(v)
