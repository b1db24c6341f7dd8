"""Recordings -> windows -> a window store: the machinery behind `anyppg data prepare` and the
probe stage's on-demand stores.

Reads each unit (file, subject) of a dataset in parallel, cuts it into windows with the one
preprocessing of `edge_runtime.preprocess`, drops windows whose quality flags are in the reject
list (counted by reason in index.json), and writes memory-mappable shards. With num_shards N
and shard_index I a cluster array job prepares one N-th of the units per task; each task writes
its own part atomically and the index covers whatever parts are complete.
"""
from __future__ import annotations

import multiprocessing as mp
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anyppg.runs import atomic_dir, git_commit
from anyppg.stage import one_line
from edge_runtime import preprocess as pp
from edge_runtime.accel import accel_windows
from edge_runtime.spec import FLAG_ECG_BAD, FLAG_NAN_GAP, SignalSpec, flag_names, flags_from_names
from training.data import readers
from training.data.records import Record, ReaderError
from training.data.store import PartWriter, part_name, rebuild_index, subject_split
from training.data.synthetic_wrist import ACCEL_AXES

# What each source rejects by default. Synthetic data keeps clipped and spiky windows because
# its `quality` label is about exactly those; PPG-BP's 2.1 s segments are all shorter than a
# window and are tiled up to one (flagged too_short, kept).
DEFAULT_REJECT = {
    "synthetic": ("nan_gap", "flat"),
    "ppg-bp": ("nan_gap", "flat", "clipping", "amplitude"),
}
GENERIC_REJECT = ("nan_gap", "flat", "clipping", "amplitude", "too_short")
PAD_SHORT = {"ppg-bp"}


def record_accel(rec: Record, spec: SignalSpec, start_s: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(accel (K, 3, Lp) float16, missing (K,)) on the record's PPG windows by the one accel
    preprocessing (edge_runtime.accel), or None when the record has no 3-axis accelerometer."""
    if not all(ax in rec.signals for ax in ACCEL_AXES):
        return None
    axes = [rec.signals[ax] for ax in ACCEL_AXES]
    if len({a.fs for a in axes}) != 1 or len({len(a.data) for a in axes}) != 1:
        raise ReaderError(f"{rec.path or rec.record_id}: accelerometer axes differ in rate or length")
    data, fs = np.stack([a.data for a in axes]), axes[0].fs
    if rec.segment_s:       # one window per pre-cut segment, resampled on its own like the PPG
        seg = int(round(rec.segment_s * fs))
        outs = [accel_windows(data[:, k * seg:(k + 1) * seg], fs, spec, np.array([0.0]))
                for k in range(len(start_s))]
        x = np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, 3, spec.ppg_len), np.float32)
        miss = np.concatenate([o[1] for o in outs]) if outs else np.zeros(0, bool)
    else:
        x, miss = accel_windows(data, fs, spec, start_s)
    return x.astype(np.float16), miss


def record_windows(rec: Record, spec: SignalSpec, pad_short: bool) -> dict:
    """All windows of one record: ppg (K, Lp), ecg (K, Le) or None, accel (K, 3, Lp) or None,
    labels {name: (K,)}, start_s (K,), flags (K,)."""
    sig = rec.ppg
    if rec.segment_s:
        # Pre-cut segments (Liu 2022): each segment is one window, resampled on its own so that
        # no filter state crosses the border between unrelated segments.
        seg = int(round(rec.segment_s * sig.fs))
        n_seg = len(sig.data) // seg
        outs = [pp.ppg_windows(sig.data[k * seg:(k + 1) * seg], sig.fs, spec, pad_short=True,
                               starts_s=np.array([0.0])) for k in range(n_seg)]
        x = np.concatenate([o["x"] for o in outs]) if outs else np.zeros((0, spec.ppg_len), np.float32)
        flags = np.concatenate([o["flags"] for o in outs]) if outs else np.zeros(0, np.uint8)
        start_s = np.arange(n_seg) * rec.segment_s
        labels = {k: np.asarray(v, np.float32)[:n_seg] for k, v in rec.window_labels.items()}
    else:
        out = pp.ppg_windows(sig.data, sig.fs, spec, pad_short=pad_short)
        x, flags, start_s = out["x"], out["flags"], out["start_s"]
        labels = {name: np.array([s.mean_over(t, t + spec.window_s) for t in start_s], np.float32)
                  for name, s in rec.series.items()}
    for name, v in rec.labels.items():
        labels.setdefault(name, np.full(len(x), np.nan if v is None else v, np.float32))
    ecg = None
    if "ecg" in rec.signals and len(x) and not rec.segment_s:
        e = pp.ecg_windows(rec.signals["ecg"].data, rec.signals["ecg"].fs, spec, start_s)
        ecg = e["x"].astype(np.float16)
        flags = flags | np.where(e["flags"] != 0, FLAG_ECG_BAD, 0).astype(np.uint8)
    acc = record_accel(rec, spec, start_s) if len(x) else None
    if acc is not None:
        flags = flags | np.where(acc[1], FLAG_NAN_GAP, 0).astype(np.uint8)
    return {"ppg": x, "ecg": ecg, "accel": None if acc is None else acc[0], "labels": labels,
            "start_s": start_s, "flags": flags}


def _work(job):
    """Worker: read one unit and window its records. Returns (unit, [results], error)."""
    source, unit, opts, spec, pad_short = job
    try:
        recs = readers.read_unit(source, unit, **opts)
        return unit, [(r.subject_id, r.record_id, record_windows(r, spec, pad_short)) for r in recs], None
    except (ReaderError, ValueError, OSError) as e:
        msg = one_line(e)
        if unit not in msg:
            msg = f"{unit}: {msg}"
        return unit, [], msg


@dataclass
class BuildOptions:
    """One store to build (the arguments of `anyppg data prepare`)."""
    source: str
    input: str
    out: Path
    spec: SignalSpec
    reject: tuple[str, ...] | None = None      # flag names; None: the source's default
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    num_shards: int = 1
    shard_index: int = 0
    workers: int = 1
    chunk_windows: int = 8192
    overwrite: bool = False
    strict: bool = False                       # fail on the first unreadable unit
    quiet: bool = False
    reader_opts: dict = field(default_factory=dict)


# A resting or exercising pulse lies in 0.5-3.7 Hz (30-220 bpm). When most kept windows' dominant
# frequency falls outside it, the declared sampling rate is probably wrong (a 30 Hz recording
# declared as 125 Hz shows a 70 bpm pulse at 17 bpm).
PULSE_BAND_HZ = (0.5, 3.7)


def dominant_hz(x: np.ndarray, fs: float) -> np.ndarray:
    """Frequency (Hz) of the largest spectral peak in 0.2-8 Hz of each window x (K, L)."""
    if len(x) == 0:
        return np.zeros(0)
    f = np.fft.rfftfreq(x.shape[1], 1.0 / fs)
    p = np.abs(np.fft.rfft(x - x.mean(1, keepdims=True), axis=1)) ** 2
    band = (f >= 0.2) & (f <= 8.0)
    return f[band][np.argmax(p[:, band], axis=1)]


class _Tally:
    """Rejected windows by reason, unreadable units, too-short records and the pulse-frequency
    check of one build."""

    def __init__(self):
        self.rejected: dict[str, int] = {}
        self.errors: list[str] = []
        self.short_records = 0
        self.pulse_checked = 0
        self.pulse_implausible = 0

    def count(self, name: str, n: int = 1) -> None:
        self.rejected[name] = self.rejected.get(name, 0) + n

    def extra(self, units: int) -> dict:
        return {"rejected": self.rejected, "errors": self.errors, "units": units,
                "short_records": self.short_records,
                "pulse_check": {"windows": self.pulse_checked, "implausible": self.pulse_implausible,
                                "band_hz": list(PULSE_BAND_HZ)}}

    def rate_warning(self, source: str, fs: float) -> str | None:
        """A warning when most kept windows' pulse frequency is implausible (None otherwise)."""
        if self.pulse_checked < 5 or self.pulse_implausible <= self.pulse_checked / 2:
            return None
        return (f"warning: {self.pulse_implausible} of {self.pulse_checked} {source} windows have a dominant "
                f"frequency outside {PULSE_BAND_HZ[0]}-{PULSE_BAND_HZ[1]} Hz (30-220 bpm) at the declared "
                f"sampling rate: check the rate the recordings declare (e.g. --fs of a CSV)")

    def empty_reason(self) -> str:
        """Why a build kept no window: unreadable units and rejections by reason."""
        parts = []
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable (e.g. {self.errors[0]})")
        rej = {k: v for k, v in self.rejected.items() if k != "windows_rejected"}
        if rej:
            parts.append("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(rej.items())))
        return "; ".join(parts) or "no recordings found"


def _add_results(writer: PartWriter, o: BuildOptions, unit, results, reject: int, tally: _Tally) -> None:
    for subject_id, record_id, w in results:
        n = len(w["ppg"])
        if n == 0:
            tally.short_records += 1
            tally.count("too_short")
            continue
        bad = (w["flags"] & reject) != 0
        for f in w["flags"][bad]:
            for name in flag_names(int(f) & reject):
                tally.count(name)
        tally.count("windows_rejected", int(bad.sum()))
        keep = ~bad
        hz = dominant_hz(w["ppg"][keep], o.spec.ppg_fs)
        tally.pulse_checked += len(hz)
        tally.pulse_implausible += int(((hz < PULSE_BAND_HZ[0]) | (hz > PULSE_BAND_HZ[1])).sum())
        writer.add({"record_id": record_id, "unit": unit, "n": int(keep.sum())},
                   subject_id, subject_split(subject_id, o.split, o.split_seed),
                   w["ppg"][keep], None if w["ecg"] is None else w["ecg"][keep],
                   {k: v[keep] for k, v in w["labels"].items()},
                   w["start_s"][keep], w["flags"][keep],
                   accel=None if w.get("accel") is None else w["accel"][keep])


def _write_part(part_dir: Path, o: BuildOptions, jobs: list, reject: int) -> dict:
    writer = PartWriter(part_dir, o.spec, o.chunk_windows)
    tally = _Tally()
    if o.workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
        pool = ctx.Pool(o.workers)
        it = pool.imap(_work, jobs)
    else:
        pool, it = None, map(_work, jobs)
    try:
        for unit, results, err in tqdm(it, total=len(jobs), desc=f"prepare {o.source}",
                                       unit="unit", disable=o.quiet, file=sys.stderr):
            if err:
                if o.strict:
                    raise ValueError(err)
                tally.errors.append(err)
                print(f"warning: skipped {err}", file=sys.stderr)
                continue
            _add_results(writer, o, unit, results, reject, tally)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    info = writer.close(tally.extra(len(jobs)))
    if info["n_windows"] == 0 and (jobs or o.num_shards == 1):   # inside atomic_dir: nothing is left
        raise ValueError(f"{o.input}: no window kept from {len(jobs)} {o.source} units "
                         f"({tally.empty_reason()}); no store written")
    warn = tally.rate_warning(o.source, o.spec.ppg_fs)
    if warn:
        print(warn, file=sys.stderr)
    return info


def build_store(o: BuildOptions) -> dict:
    """Build (or, sharded, add one part to) the store at o.out; returns its index."""
    if not (0 <= o.shard_index < o.num_shards):
        raise ValueError(f"--shard-index must be in [0, {o.num_shards})")
    reject_names = o.reject if o.reject is not None else DEFAULT_REJECT.get(o.source, GENERIC_REJECT)
    reject = flags_from_names([r for r in reject_names if r])
    pad_short = o.source in PAD_SHORT
    units = readers.discover(o.source, o.input, **o.reader_opts)
    mine = units[o.shard_index::o.num_shards]
    out = Path(o.out)
    meta = {"source": o.source, "input": str(o.input), "spec": o.spec.to_dict(),
            "num_shards": o.num_shards, "split_fractions": list(o.split),
            "split_seed": o.split_seed, "reject": list(reject_names), "reader_opts": o.reader_opts,
            "git_commit": git_commit()}
    jobs = [(o.source, u, o.reader_opts, o.spec, pad_short) for u in mine]
    if o.num_shards == 1:
        # Whole store built under a temp name and renamed: never a half-written store.
        with atomic_dir(out, overwrite=o.overwrite) as tmp:
            with atomic_dir(tmp / "parts" / part_name(0, 1)) as part_tmp:
                _write_part(part_tmp, o, jobs, reject)
            return rebuild_index(tmp, meta)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "parts" / part_name(o.shard_index, o.num_shards), overwrite=o.overwrite) as part_tmp:
        _write_part(part_tmp, o, jobs, reject)
    return rebuild_index(out, meta)


def format_summary(index: dict) -> str:
    lines = [f"store: {index['n_windows']} windows from {index['n_subjects']} subjects "
             f"({index['source']}), splits " + ", ".join(f"{k} {v}" for k, v in index["splits"].items())]
    rej = {k: v for k, v in index["rejected"].items() if k != "windows_rejected"}
    lines.append(f"rejected: {index['rejected'].get('windows_rejected', 0)} windows"
                 + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(rej.items())) + ")" if rej else ""))
    if index["errors"]:
        lines.append(f"unreadable: {len(index['errors'])} units, e.g. {index['errors'][0]}")
    lines.append("labels: " + ", ".join(index["label_names"]))
    if not index["complete"]:
        lines.append(f"incomplete: {len(index['parts'])} of {index['num_shards']} parts present")
    return "\n".join(lines)
