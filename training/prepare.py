"""`anyppg data prepare`: recordings -> preprocessed fixed-size windows in a window store.

    anyppg data prepare --source bidmc --input ../shared/data/bidmc --out stores/bidmc

Reads each unit (file, subject) of a dataset in parallel, cuts it into windows with the one
preprocessing of `edge_runtime.preprocess`, drops windows whose quality flags are in
`--reject` (counted by reason in index.json), and writes memory-mappable shards. With
`--num-shards N --shard-index I` a cluster array job prepares one N-th of the units per task;
each task writes its own part atomically and the index covers whatever parts are complete.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anyppg.runs import atomic_dir, git_commit
from edge_runtime import preprocess as pp
from edge_runtime.spec import (FLAG_ECG_BAD, FLAG_NAMES, SPECS, SignalSpec, flag_names,
                               flags_from_names)
from training.data import readers
from training.data.records import Record, ReaderError
from training.data.store import PartWriter, part_name, rebuild_index, subject_split

# What each source rejects by default. Synthetic data keeps clipped and spiky windows because
# its `quality` label is about exactly those; PPG-BP's 2.1 s segments are all shorter than a
# window and are tiled up to one (flagged too_short, kept).
DEFAULT_REJECT = {
    "synthetic": ("nan_gap", "flat"),
    "ppg-bp": ("nan_gap", "flat", "clipping", "amplitude"),
}
GENERIC_REJECT = ("nan_gap", "flat", "clipping", "amplitude", "too_short")
PAD_SHORT = {"ppg-bp"}


def record_windows(rec: Record, spec: SignalSpec, pad_short: bool) -> dict:
    """All windows of one record: ppg (K, Lp), ecg (K, Le) or None, labels {name: (K,)},
    start_s (K,), flags (K,)."""
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
    return {"ppg": x, "ecg": ecg, "labels": labels, "start_s": start_s, "flags": flags}


def _work(job):
    """Worker: read one unit and window its records. Returns (unit, [results], error)."""
    source, unit, opts, spec, pad_short = job
    try:
        recs = readers.read_unit(source, unit, **opts)
        return unit, [(r.subject_id, r.record_id, record_windows(r, spec, pad_short)) for r in recs], None
    except (ReaderError, ValueError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if unit not in msg:
            msg = f"{unit}: {msg}"
        return unit, [], msg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anyppg data prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True,
                   choices=["synthetic", "bidmc", "wfdb", "ppg-bp", "liu2022", "vitaldb", "csv"])
    p.add_argument("--input", default="", help="dataset folder or file (synthetic: 'subjects=24,minutes=4,seed=0')")
    p.add_argument("--out", required=True, help="store folder to create")
    p.add_argument("--spec", default="small", choices=sorted(SPECS), help="signal spec (default: small)")
    p.add_argument("--mains", type=float, default=None, help="ECG notch frequency: 50 or 60 Hz")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard-index", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--reject", default=None,
                   help=f"comma-separated flags that drop a window (default per source); known: {','.join(FLAG_NAMES)}")
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions of subjects")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--chunk-windows", type=int, default=8192)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable unit")
    p.add_argument("--quiet", action="store_true")
    # A user's own recordings (--source csv) and other reader options.
    p.add_argument("--ppg-column")
    p.add_argument("--ecg-column")
    p.add_argument("--fs", type=float, help="sampling rate of --source csv recordings, Hz")
    p.add_argument("--time-column")
    p.add_argument("--subject-id")
    p.add_argument("--opt", action="append", default=[], help="reader option key=value")
    return p


def _reader_opts(args) -> dict:
    opts = {}
    for k in ("ppg_column", "ecg_column", "fs", "time_column", "subject_id"):
        v = getattr(args, k)
        if v is not None:
            opts[k] = v
    for kv in args.opt:
        if "=" not in kv:
            raise SystemExit(f"anyppg data prepare: --opt expects key=value, got {kv!r}")
        k, v = kv.split("=", 1)
        opts[k] = v
    return opts


def prepare(args) -> dict:
    spec = SPECS[args.spec]
    if args.mains is not None:
        spec = SignalSpec.from_dict({**spec.to_dict(), "mains_hz": args.mains})
    fractions = tuple(float(f) for f in args.split.split(","))
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"--split must be three fractions summing to 1, got {args.split!r}")
    if not (0 <= args.shard_index < args.num_shards):
        raise ValueError(f"--shard-index must be in [0, {args.num_shards})")
    reject_names = args.reject.split(",") if args.reject else DEFAULT_REJECT.get(args.source, GENERIC_REJECT)
    reject = flags_from_names([r for r in reject_names if r])
    pad_short = args.source in PAD_SHORT
    opts = _reader_opts(args)

    units = readers.discover(args.source, args.input, **opts)
    mine = units[args.shard_index::args.num_shards]
    out = Path(args.out)
    meta = {"source": args.source, "input": str(args.input), "spec": spec.to_dict(),
            "num_shards": args.num_shards, "split_fractions": list(fractions),
            "split_seed": args.split_seed, "reject": list(reject_names), "reader_opts": opts,
            "git_commit": git_commit()}

    jobs = [(args.source, u, opts, spec, pad_short) for u in mine]
    rejected: dict[str, int] = {}
    errors: list[str] = []
    n_short_records = 0

    def run(part_dir: Path) -> dict:
        nonlocal n_short_records
        writer = PartWriter(part_dir, spec, args.chunk_windows)
        if args.workers > 1 and len(jobs) > 1:
            ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
            pool = ctx.Pool(args.workers)
            it = pool.imap(_work, jobs)
        else:
            pool, it = None, map(_work, jobs)
        try:
            for unit, results, err in tqdm(it, total=len(jobs), desc=f"prepare {args.source}",
                                           unit="unit", disable=args.quiet, file=sys.stderr):
                if err:
                    if args.strict:
                        raise ValueError(err)
                    errors.append(err)
                    print(f"warning: skipped {err}", file=sys.stderr)
                    continue
                for subject_id, record_id, w in results:
                    n = len(w["ppg"])
                    if n == 0:
                        n_short_records += 1
                        rejected["too_short"] = rejected.get("too_short", 0) + 1
                        continue
                    bad = (w["flags"] & reject) != 0
                    for f in w["flags"][bad]:
                        for name in flag_names(int(f) & reject):
                            rejected[name] = rejected.get(name, 0) + 1
                    rejected["windows_rejected"] = rejected.get("windows_rejected", 0) + int(bad.sum())
                    keep = ~bad
                    writer.add({"record_id": record_id, "unit": unit, "n": int(keep.sum())},
                               subject_id, subject_split(subject_id, fractions, args.split_seed),
                               w["ppg"][keep], None if w["ecg"] is None else w["ecg"][keep],
                               {k: v[keep] for k, v in w["labels"].items()},
                               w["start_s"][keep], w["flags"][keep])
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        return writer.close({"rejected": rejected, "errors": errors, "units": len(jobs),
                             "short_records": n_short_records})

    if args.num_shards == 1:
        # Whole store built under a temp name and renamed: never a half-written store.
        with atomic_dir(out, overwrite=args.overwrite) as tmp:
            with atomic_dir(tmp / "parts" / part_name(0, 1)) as part_tmp:
                run(part_tmp)
            index = rebuild_index(tmp, meta)
    else:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out / "parts" / part_name(args.shard_index, args.num_shards),
                        overwrite=args.overwrite) as part_tmp:
            run(part_tmp)
        index = rebuild_index(out, meta)
    return index


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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        index = prepare(args)
    except (ReaderError, ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"anyppg data prepare: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_summary(index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
