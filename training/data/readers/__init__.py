"""Dataset readers: one module per publisher layout, one registry that dispatches to them.

Every reader module has the same two functions:

    discover(input_path, **opts) -> list[str]   # independent units, sorted, deterministic
    read_unit(unit, **opts) -> list[Record]      # the records of one unit

A unit is what one worker reads on its own (a file, or one subject's files), so that the
caller can parallelise and shard over units. Options are per source; a reader ignores the
options it does not know, because the command line hands the same options to every source.
Option values may arrive as strings (`--opt key=value`), so readers coerce them.

Every predictable bad input raises `ReaderError('<path>: <problem>')` (one line).
"""
from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from training.data.records import Record, ReaderError

# Sex is coded the same way in every reader: 1.0 = male, 0.0 = female, NaN = unknown.
SEX_CODES = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}


# --- helpers shared by the reader modules ---------------------------------------------------
# They are defined before the reader modules are imported (bottom of this file), so a reader
# can `from training.data.readers import reader_error` while this package is still initialising.

def reader_error(path, problem) -> ReaderError:
    """A ReaderError whose message is the single line '<path>: <problem>'."""
    return ReaderError(f"{path}: {' '.join(str(problem).split())}")


def find_files(input_path, patterns: tuple[str, ...], what: str) -> list[str]:
    """Files under `input_path` (searched recursively) whose name matches one of `patterns`.

    A file given directly must match too. Sorted by path, so units are deterministic.
    """
    p = Path(input_path)
    if str(input_path) == "" or not p.exists():
        raise reader_error(input_path or "''", "no such file or directory")
    if p.is_file():
        if any(fnmatch.fnmatch(p.name, pat) for pat in patterns):
            return [str(p)]
        raise reader_error(p, f"not a {what} file (expected {' or '.join(patterns)})")
    found = {str(f) for pat in patterns for f in p.rglob(pat) if f.is_file()}
    if not found:
        raise reader_error(p, f"no {what} files ({', '.join(patterns)}) found")
    return sorted(found)


def check_fs(fs, path, what: str = "sampling rate") -> float:
    """A user-given sampling rate as a positive float (it may arrive as a string)."""
    try:
        value = float(fs)
    except (TypeError, ValueError):
        raise reader_error(path, f"invalid {what} {fs!r} (expected a positive number in Hz)") from None
    if not np.isfinite(value) or value <= 0:
        raise reader_error(path, f"invalid {what} {fs!r} (expected a positive number in Hz)")
    return value


def fs_from_times(times, path, column: str) -> float:
    """Sampling rate of a time column (seconds, (T,)), checked for regular sampling.

    The rate comes from the span ((T-1) / (t_last - t_first)) rather than from single steps,
    because exported time columns are often rounded (BIDMC prints 100.01 for 100.008). The
    column is regular when every time lies within one sampling period of the ideal grid; a gap,
    a jump or a clock drift of more than one sample is not, and needs resampling upstream.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(t) < 2:
        raise reader_error(path, f"time column {column!r} has fewer than 2 samples")
    if not np.all(np.isfinite(t)):
        raise reader_error(path, f"time column {column!r} has missing or non-finite values")
    if np.any(np.diff(t) < 0):
        raise reader_error(path, f"time column {column!r} is not increasing")
    span = t[-1] - t[0]
    if span <= 0:
        raise reader_error(path, f"time column {column!r} does not advance")
    fs = (len(t) - 1) / span
    off = np.abs(t - (t[0] + np.arange(len(t)) / fs))
    if off.max() > 1.0 / fs:
        i = int(off.argmax())
        raise reader_error(path, f"time column {column!r} is not regularly sampled: sample {i} "
                                 f"lies {off[i]:.4g} s off a {fs:.6g} Hz grid; resample first")
    return float(fs)


def as_list(value) -> list[str]:
    """An option that names one or more things: None, 'a', 'a,b' or ['a', 'b'] -> list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def sex_code(text) -> float:
    """'M'/'Male' -> 1.0, 'F'/'Female' -> 0.0, anything else -> NaN."""
    return SEX_CODES.get(str(text).strip().lower(), float("nan"))


# --- the registry ---------------------------------------------------------------------------

from training.data.readers import (bidmc, csv_reader, liu2022, ppg_bp,  # noqa: E402
                              troika, vitaldb_reader, wfdb_reader)

SOURCES: dict[str, ModuleType] = {
    "bidmc": bidmc,
    "wfdb": wfdb_reader,
    "ppg-bp": ppg_bp,
    "liu2022": liu2022,
    "vitaldb": vitaldb_reader,
    "csv": csv_reader,
    "troika": troika,           # evaluation only (wrist PPG + accelerometer under motion)
}

# Sources living elsewhere in the tree, imported on first use so that this package does not
# depend on them being importable.
LAZY_SOURCES: dict[str, str] = {"synthetic": "training.data.synthetic",
                                "synthetic-wrist": "training.data.synthetic_wrist"}


def known_sources() -> list[str]:
    return sorted([*SOURCES, *LAZY_SOURCES])


def _module(source: str) -> ModuleType:
    if source in SOURCES:
        return SOURCES[source]
    if source in LAZY_SOURCES:
        return importlib.import_module(LAZY_SOURCES[source])
    raise ValueError(f"unknown source {source!r}; known sources: {', '.join(known_sources())}")


def discover(source: str, input_path: str, **opts) -> list[str]:
    """The independent units of `input_path` for `source` (usually file paths), sorted.

    Raises ReaderError('<path>: ...') when the input does not exist or holds nothing
    recognisable, ValueError for an unknown source.
    """
    return list(_module(source).discover(input_path, **opts))


def read_unit(source: str, unit: str, **opts) -> list[Record]:
    """The records of one unit returned by `discover(source, ...)`."""
    return list(_module(source).read_unit(unit, **opts))


__all__ = ["SOURCES", "LAZY_SOURCES", "discover", "read_unit", "known_sources", "Record",
           "ReaderError", "reader_error", "find_files", "check_fs", "fs_from_times", "as_list",
           "sex_code"]
