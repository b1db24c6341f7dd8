"""`anyppg data prepare`: recordings -> preprocessed fixed-size windows in a window store.

    anyppg data prepare --source bidmc --input ../shared/data/bidmc --out stores/bidmc

A thin CLI over `training.data.build` (readers -> windows -> shards): see there for what a
store holds, the default reject lists and sharded preparation with --num-shards/--shard-index.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from anyppg.stage import run_stage, stage_parser
from edge_runtime.spec import FLAG_NAMES, SPECS, SignalSpec
from training.data import readers
from training.data.build import BuildOptions, build_store, format_summary
from training.data.build import record_windows  # noqa: F401  (imported from here by tests/training/test_troika.py)
from training.data.records import ReaderError


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("anyppg data prepare", __doc__)
    p.add_argument("--source", required=True,
                   choices=sorted(readers.known_sources()))
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


def options(args) -> BuildOptions:
    """The build the command line asks for (ValueError on inconsistent arguments)."""
    spec = SPECS[args.spec]
    if args.mains is not None:
        spec = SignalSpec.from_dict({**spec.to_dict(), "mains_hz": args.mains})
    fractions = tuple(float(f) for f in args.split.split(","))
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"--split must be three fractions summing to 1, got {args.split!r}")
    return BuildOptions(args.source, args.input, Path(args.out), spec,
                        reject=tuple(args.reject.split(",")) if args.reject else None,
                        split=fractions, split_seed=args.split_seed, num_shards=args.num_shards,
                        shard_index=args.shard_index, workers=args.workers,
                        chunk_windows=args.chunk_windows, overwrite=args.overwrite, strict=args.strict,
                        quiet=args.quiet, reader_opts=_reader_opts(args))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_stage("anyppg data prepare", lambda: build_store(options(args)), errors=(ReaderError,),
                     show=format_summary, error_rc=2)


if __name__ == "__main__":
    sys.exit(main())
