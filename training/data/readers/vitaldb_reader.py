"""VitalDB / Vital Recorder `.vital` files via the `vitaldb` package.

Track names carry the device: 'SNUADC/PLETH', 'SNUADC/ECG_II', 'Solar8000/HR'. Tracks are
matched by the part after the device (case-insensitive) unless a full 'device/track' name is
given. A unit is one .vital file (one surgical case).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.readers import as_list, check_fs, find_files, reader_error
from training.data.records import Record, Series, Signal

SOURCE = "vitaldb"
DEFAULT_FS = 500.0          # waveform rate when a track does not state its own
PPG_TRACKS = ("PLETH",)
ECG_TRACKS = ("ECG_II", "II")
# label -> numeric track; the Solar 8000 monitor's names in the VitalDB open dataset.
SERIES_TRACKS = {"hr": "HR", "pulse": "PLETH_HR", "spo2": "PLETH_SPO2", "rr": "RR_CO2",
                 "sbp": "ART_SBP", "dbp": "ART_DBP"}
_WAVE, _NUM = 1, 2          # vitaldb track types


def discover(input_path, **opts) -> list[str]:
    """The .vital files under `input_path` (a folder or one file)."""
    return find_files(input_path, ("*.vital",), "VitalDB (.vital)")


def read_unit(unit, **opts) -> list[Record]:
    """One Record per .vital file (subject and record = file stem unless `subject_id`).

    signals: 'ppg' (PLETH, (T,) at the track's rate), 'ecg' (ECG_II) when present; NaN where the
             recorder had no samples
    series:  'hr', 'pulse', 'spo2', 'rr', 'sbp', 'dbp' from numeric tracks that exist, times
             in seconds from the file start; values <= 0 (monitor placeholders) -> NaN
    Options: ppg_track, ecg_track -- track name or comma list (default PLETH; ECG_II);
             fs -- rate for waveform tracks that do not state one (default 500 Hz);
             series_tracks -- {label: track} or 'label=TRACK,...' replacing SERIES_TRACKS;
             subject_id.
    """
    import vitaldb

    path = Path(unit)
    if not path.is_file():
        raise reader_error(path, "no such file")
    fallback_fs = DEFAULT_FS if opts.get("fs") is None else check_fs(opts["fs"], path)
    try:
        names = vitaldb.VitalFile(str(path), header_only=True).get_track_names()
    except Exception as e:   # not gzip, bad header...
        raise reader_error(path, f"unreadable .vital file ({type(e).__name__}: {e})") from e
    if not names:
        raise reader_error(path, "not a readable .vital file (no tracks)")

    ppg_name = _match(names, as_list(opts.get("ppg_track")) or PPG_TRACKS)
    if ppg_name is None:
        raise reader_error(path, f"no PPG track (PLETH) among {names}")
    ecg_name = _match(names, as_list(opts.get("ecg_track")) or ECG_TRACKS)
    series_map = _series_map(opts.get("series_tracks"))
    series_names = {label: n for label, t in series_map.items() if (n := _match(names, [t]))}

    wanted = [ppg_name, *([ecg_name] if ecg_name else []), *series_names.values()]
    try:
        # vitaldb swallows a premature end of file: a truncated file reads as tracks without
        # samples, which the emptiness check on the PPG below catches.
        vf = vitaldb.VitalFile(str(path), track_names=wanted)
    except Exception as e:
        raise reader_error(path, f"unreadable .vital file ({type(e).__name__}: {e})") from e

    signals = {"ppg": _wave(vf, ppg_name, fallback_fs, path)}
    if not np.isfinite(signals["ppg"].data).any():
        raise reader_error(path, f"PPG track {ppg_name!r} has no samples (empty or truncated file)")
    if ecg_name:
        signals["ecg"] = _wave(vf, ecg_name, fallback_fs, path)
    series = {label: s for label, n in series_names.items() if (s := _numeric(vf, n)) is not None}

    stem = path.name[: -len(".vital")] if path.name.endswith(".vital") else path.stem
    meta = {"tracks": names, "ppg_track": ppg_name, "ecg_track": ecg_name,
            "series_tracks": series_names, "dtstart": float(vf.dtstart)}
    return [Record(subject_id=str(opts.get("subject_id") or stem), record_id=stem, source=SOURCE,
                   signals=signals, series=series, meta=meta, path=str(path))]


def _match(names: list[str], wanted) -> str | None:
    """The track for the first wanted name that exists: a full 'device/track' name matches
    exactly; a bare name matches the track part of any device. Several devices -> the one
    listed first in the file."""
    for w in wanted:
        if "/" in w:
            if w in names:
                return w
            continue
        hits = [n for n in names if n.split("/")[-1].lower() == w.lower()]
        if hits:
            return hits[0]
    return None


def _series_map(value) -> dict[str, str]:
    if value is None:
        return dict(SERIES_TRACKS)
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for item in as_list(value):
        label, _, track = item.partition("=")
        if label.strip() and track.strip():
            out[label.strip()] = track.strip()
    return out


def _wave(vf, name: str, fallback_fs: float, path: Path) -> Signal:
    """A waveform track on its own grid: interval = 1 / native rate, so vitaldb does not
    resample (it would decimate by picking samples, without anti-aliasing)."""
    trk = vf.trks[name]
    fs = float(trk.srate) if trk.srate and trk.srate > 0 else fallback_fs
    try:
        x = vf.to_numpy([name], 1.0 / fs)
    except Exception as e:
        raise reader_error(path, f"track {name!r} unreadable ({type(e).__name__}: {e})") from e
    return Signal(np.asarray(x, dtype=np.float64).reshape(-1), fs)


def _numeric(vf, name: str) -> Series | None:
    trk = vf.trks[name]
    if trk.type != _NUM or not trk.recs:
        return None
    t = np.array([r["dt"] for r in trk.recs], dtype=np.float64) - float(vf.dtstart)
    v = np.array([r["val"] for r in trk.recs], dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    return Series(t, np.where(v > 0, v, np.nan))
