"""Diagnosis tables for `anyppg probe --diagnoses`: reading, ICD-10 codes and chapters, matching.

A diagnosis table is a CSV with a header row naming a subject column and a code column, one
row per (subject, code); an optional description column names the code::

    subject,code,description
    ppgbp_2,I10,Essential (primary) hypertension
    ppgbp_3,                                 <- a subject known to have no diagnosis
    ppgbp_3,E11.9

Rules: ICD-10 codes (a letter, two digits, optional dot and more) are truncated to their
three-character category ('E11.9' -> 'E11') and grouped by chapter; anything else is kept as a
plain label (another code system, a free-text label). Duplicate rows collapse. A row with an
empty code says the subject is in the cohort and has no (further) diagnosis: only subjects that
appear in the table count at all, since absence from a table means unknown, not healthy.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

# WHO ICD-10 (2019) chapters: (first category, last category, number, title). Ranges are
# inclusive and compared as 3-character strings; D49 (ICD-10-CM's last neoplasm) is in II.
CHAPTERS: tuple[tuple[str, str, str, str], ...] = (
    ("A00", "B99", "I", "Infectious and parasitic"),
    ("C00", "D49", "II", "Neoplasms"),
    ("D50", "D89", "III", "Blood and immune"),
    ("E00", "E90", "IV", "Endocrine and metabolic"),
    ("F00", "F99", "V", "Mental and behavioural"),
    ("G00", "G99", "VI", "Nervous system"),
    ("H00", "H59", "VII", "Eye"),
    ("H60", "H95", "VIII", "Ear"),
    ("I00", "I99", "IX", "Circulatory system"),
    ("J00", "J99", "X", "Respiratory system"),
    ("K00", "K93", "XI", "Digestive system"),
    ("L00", "L99", "XII", "Skin"),
    ("M00", "M99", "XIII", "Musculoskeletal"),
    ("N00", "N99", "XIV", "Genitourinary"),
    ("O00", "O99", "XV", "Pregnancy and childbirth"),
    ("P00", "P96", "XVI", "Perinatal"),
    ("Q00", "Q99", "XVII", "Congenital"),
    ("R00", "R99", "XVIII", "Symptoms and signs"),
    ("S00", "T98", "XIX", "Injury and poisoning"),
    ("U00", "U99", "XXII", "Special purposes"),
    ("V01", "Y98", "XX", "External causes"),
    ("Z00", "Z99", "XXI", "Health status and services"),
)
OTHER_CHAPTER = ("", "Other labels")
_ICD10 = re.compile(r"^([A-Z][0-9][0-9A-Z])(?:\.?[0-9A-Z]{0,4})?$")
SUBJECT_COLUMNS = ("subject", "subject_id", "subjectid", "id", "patient", "patient_id", "person_id")
CODE_COLUMNS = ("code", "icd10", "icd-10", "icd", "diagnosis", "dx", "label")
DESCRIPTION_COLUMNS = ("description", "name", "title", "text")


def normalise_code(raw: str) -> tuple[str, str]:
    """(code, system): ('E11', 'icd10') for 'e11.9'; ('smoker', 'label') for other labels."""
    s = raw.strip()
    m = _ICD10.match(s.upper())
    if m:
        return m.group(1), "icd10"
    return s, "label"


def chapter_of(code: str, system: str = "icd10") -> tuple[str, str]:
    """(roman numeral, title) of an ICD-10 category; ('', 'Other labels') otherwise."""
    if system == "icd10":
        for lo, hi, num, title in CHAPTERS:
            if lo <= code[:3] <= hi:
                return num, title
    return OTHER_CHAPTER


def chapter_order(code: str, system: str = "icd10") -> int:
    """Sort key of a code's chapter (chapter order of the classification; labels last)."""
    num, _ = chapter_of(code, system)
    nums = [c[2] for c in CHAPTERS]
    return nums.index(num) if num in nums else len(nums)


@dataclass
class DiagnosisTable:
    """subject -> set of codes (ICD-10 categories or labels), read from one CSV.

    subjects:     every subject in the table (with or without codes), in file order
    codes:        subject -> set of normalised codes
    system:       code -> 'icd10' or 'label'
    descriptions: code -> the first description given for it (may be empty)
    raw_rows / duplicate_rows: rows read / rows that repeated a (subject, code) pair after
                  truncation to three characters
    """

    path: str
    subjects: list[str] = field(default_factory=list)
    codes: dict[str, set[str]] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    raw_rows: int = 0
    duplicate_rows: int = 0

    def positives(self, code: str) -> set[str]:
        return {s for s, cs in self.codes.items() if code in cs}

    def all_codes(self) -> list[str]:
        """Every code, ordered by chapter then code."""
        return sorted(self.system, key=lambda c: (chapter_order(c, self.system[c]), c))


def _pick(header: list[str], names: tuple[str, ...]) -> int | None:
    keys = [h.strip().lower().replace(" ", "_") for h in header]
    for n in names:
        if n in keys:
            return keys.index(n)
    return None


def read_table(path: str | Path) -> DiagnosisTable:
    """Read a diagnosis CSV (see the module docstring). Bad input: a one-line ValueError."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such diagnosis table")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{p}: unreadable diagnosis table ({type(e).__name__}: {e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{p}: empty diagnosis table")
    header = rows[0]
    si, ci = _pick(header, SUBJECT_COLUMNS), _pick(header, CODE_COLUMNS)
    if si is None or ci is None:
        raise ValueError(f"{p}: the header {header} names no subject column ({'/'.join(SUBJECT_COLUMNS[:3])}) "
                         f"or no code column ({'/'.join(CODE_COLUMNS[:3])})")
    di = _pick(header, DESCRIPTION_COLUMNS)
    t = DiagnosisTable(str(p))
    seen_pairs: set[tuple[str, str]] = set()
    for line, r in enumerate(rows[1:], start=2):
        sid = r[si].strip() if si < len(r) else ""
        if not sid:
            raise ValueError(f"{p}: line {line} has no subject id")
        if sid not in t.codes:
            t.codes[sid] = set()
            t.subjects.append(sid)
        t.raw_rows += 1
        raw = r[ci].strip() if ci < len(r) else ""
        if not raw:
            continue
        code, system = normalise_code(raw)
        if (sid, code) in seen_pairs:
            t.duplicate_rows += 1
            continue
        seen_pairs.add((sid, code))
        t.codes[sid].add(code)
        t.system.setdefault(code, system)
        desc = r[di].strip() if di is not None and di < len(r) else ""
        if desc and not t.descriptions.get(code):
            t.descriptions[code] = desc
    return t


def _common_prefix(ids: list[str]) -> str:
    """The shared '<source>_' prefix of store subject ids ('ppgbp_2' -> 'ppgbp_'), or ''."""
    heads = {s.rsplit("_", 1)[0] + "_" for s in ids if "_" in s}
    return heads.pop() if len(heads) == 1 and all("_" in s for s in ids) else ""


def match_subjects(table_ids: list[str], store_ids: list[str]) -> tuple[dict[str, str], list[str], str]:
    """Map table subject ids onto store subject ids.

    Exact ids first; else, where every store id carries one '<source>_' prefix (a store
    prepared from PPG-BP names subject 2 'ppgbp_2'), the table id with that prefix.
    Returns ({table id: store id}, [table ids found in neither form], how they were matched).
    """
    store = set(store_ids)
    mapping = {t: t for t in table_ids if t in store}
    n_exact = len(mapping)
    prefix = _common_prefix(store_ids)
    if prefix:
        mapping.update({t: prefix + t for t in table_ids if t not in mapping and prefix + t in store})
    how = "exact ids" if len(mapping) == n_exact else (
        f"table ids prefixed with '{prefix}'" + (f" ({n_exact} exact)" if n_exact else ""))
    return mapping, [t for t in table_ids if t not in mapping], how
