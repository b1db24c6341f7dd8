"""Any PhysioNet WFDB record (.hea header + .dat/.mat signal files) via the `wfdb` package.

A unit is one header file. In a folder, the segment and layout headers of a multi-segment
record are not units of their own: the multi-segment record is read whole instead.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from training.data.readers import as_list, find_files, reader_error
from training.data.records import Record, Signal

SOURCE = "wfdb"
# Normalised (upper-case, alphanumerics only) channel names taken as PPG, best first; names
# that merely start with one of them (PLETH2, PPGIR) come after.
PPG_NAMES = ("PLETH", "PPG")
ECG_PREFERENCE = ("II", "I", "V", "III", "AVR", "AVL", "AVF", "MLII", "MCL1", "MCL",
                  "V1", "V2", "V3", "V4", "V5", "V6", "ECG")


def discover(input_path, **opts) -> list[str]:
    """Header files under `input_path`: a folder, a .hea file or a record path without suffix."""
    p = Path(input_path)
    if p.suffix != ".hea" and not p.exists() and p.with_name(p.name + ".hea").is_file():
        p = p.with_name(p.name + ".hea")
    headers = find_files(p, ("*.hea",), "WFDB header")
    if len(headers) == 1:
        return headers
    return sorted(set(headers) - _segment_headers(headers))


def _segment_headers(headers: list[str]) -> set[str]:
    """Headers that are segments (or the layout) of a multi-segment record in the list."""
    import wfdb

    parts: set[str] = set()
    for h in headers:
        try:
            text = Path(h).read_text(errors="replace")
        except OSError:
            continue
        first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
        if "/" not in first.split(" ")[0]:        # 'name/nseg ...' marks a multi-segment record
            continue
        try:
            hdr = wfdb.rdheader(str(Path(h).with_suffix("")))
        except Exception:                         # unreadable: read_unit reports it
            continue
        for seg in getattr(hdr, "seg_name", None) or []:
            if seg and seg != "~":
                parts.add(str(Path(h).parent / f"{seg}.hea"))
    return parts


def read_unit(unit, **opts) -> list[Record]:
    """One Record per WFDB record.

    signals: 'ppg' (the PLETH/PPG channel, (T,) at its own rate), 'ecg' (the preferred lead,
             (T',) at its own rate) when there is one. Invalid samples stay NaN.
    meta:    header comments, channel names and units, the chosen channels.
    Options: ppg_channel -- exact channel name to use as PPG;
             ecg_lead -- a lead or comma-separated preference list (default II, I, V, ...);
             subject_id -- subject of every record; subject_map -- {record name: subject} or
             the path of a two-column CSV 'record,subject' (default: the record name).
    """
    import wfdb

    path = Path(unit)
    if path.suffix == ".hea":
        path = path.with_suffix("")
    header = path.with_name(path.name + ".hea")
    if not header.is_file():
        raise reader_error(header, "no such WFDB header")
    try:
        hdr = wfdb.rdheader(str(path))
        multi = getattr(hdr, "seg_name", None) is not None
        # smooth_frames=False keeps each channel at its own rate (samples per frame > 1);
        # multi-segment records are merged by wfdb, which needs smoothed frames.
        rec = wfdb.rdrecord(str(path), physical=True, m2s=True, smooth_frames=multi)
    except Exception as e:   # wfdb raises many types for truncated or inconsistent files
        raise reader_error(header, f"unreadable WFDB record ({type(e).__name__}: {e})") from e

    names = [str(n) for n in (rec.sig_name or [])]
    spf = list(rec.samps_per_frame or [1] * len(names))
    if getattr(rec, "e_p_signal", None) is not None:
        channels = [np.asarray(x, dtype=np.float64) for x in rec.e_p_signal]
    elif rec.p_signal is not None:
        channels = [np.asarray(rec.p_signal[:, i], dtype=np.float64) for i in range(len(names))]
        spf = [1] * len(names)
    else:
        raise reader_error(header, "record has no signals")

    i_ppg = _ppg_index(names, opts.get("ppg_channel"))
    if i_ppg is None:
        wanted = repr(opts["ppg_channel"]) if opts.get("ppg_channel") else "(PLETH)"
        raise reader_error(header, f"no PPG channel {wanted} among {names}")
    fs = float(rec.fs)
    signals = {"ppg": Signal(channels[i_ppg], fs * spf[i_ppg])}
    i_ecg = _ecg_index(names, as_list(opts.get("ecg_lead")) or ECG_PREFERENCE, exclude=i_ppg)
    if i_ecg is not None:
        signals["ecg"] = Signal(channels[i_ecg], fs * spf[i_ecg])

    meta = {"comments": list(rec.comments or []), "channels": names,
            "units": list(rec.units or []), "fs": fs, "ppg_channel": names[i_ppg],
            "ecg_lead": None if i_ecg is None else names[i_ecg]}
    if getattr(rec, "base_datetime", None) is not None:
        meta["base_datetime"] = str(rec.base_datetime)
    return [Record(subject_id=_subject(path.name, opts, header), record_id=path.name,
                   source=SOURCE, signals=signals, meta=meta, path=str(header))]


def _norm(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def _ppg_index(names: list[str], wanted) -> int | None:
    if wanted:
        return names.index(wanted) if wanted in names else None
    norm = [_norm(n) for n in names]
    for target in PPG_NAMES:
        if target in norm:
            return norm.index(target)
    return next((i for i, n in enumerate(norm) if n.startswith(PPG_NAMES)), None)


def _ecg_index(names: list[str], preference, exclude: int) -> int | None:
    # 'ECG II', 'ECG_II' and 'II' are the same lead.
    norm = [_norm(n) for n in names]
    norm = [n[3:] if n.startswith("ECG") and len(n) > 3 else n for n in norm]
    for lead in preference:
        key = _norm(lead)
        for i, n in enumerate(norm):
            if n == key and i != exclude:
                return i
    return None


def _subject(record_name: str, opts: dict, header: Path) -> str:
    if opts.get("subject_id"):
        return str(opts["subject_id"])
    mapping = opts.get("subject_map")
    if mapping is None:
        return record_name
    if callable(mapping):
        return str(mapping(record_name))
    if isinstance(mapping, (str, Path)):
        mapping = _read_subject_map(Path(mapping))
    return str(mapping.get(record_name, record_name))


def _read_subject_map(path: Path) -> dict[str, str]:
    """Two-column CSV (record, subject); a header line is allowed."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise reader_error(path, f"unreadable subject map ({e})") from e
    out = {}
    for line in lines:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 2 and cells[0]:
            out[cells[0]] = cells[1]
    return out
