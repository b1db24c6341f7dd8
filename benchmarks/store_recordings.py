"""Whole recordings of a window store's split, read again from the store's own source, the
errors of the HR a stream showed on them, and the loop over stores, for the benchmarks that push
recordings through `edge_runtime.stream` (bench_polarity, bench_rates)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from anyppg.runs import atomic_write_json
from edge_runtime.model import EdgeModel
from edge_runtime.sidecar import ModelFileError
from edge_runtime.timebase import InputError
from training.data import readers


class BenchError(ValueError):
    """Bad input to a benchmark (one line, names the file)."""


def recordings(store: Path, split: str):
    """(subject, ppg (T,), fs, hr Series or None) of the split's subjects, from the store's source."""
    if not (store / "index.json").is_file():
        raise BenchError(f"{store}: not a window store (no index.json)")
    idx = json.loads((store / "index.json").read_text())
    if split not in (idx.get("split_subjects") or {}):
        raise BenchError(f"{store}: no split {split!r} in index.json")
    keep = set(idx["split_subjects"][split])
    for unit in readers.discover(idx["source"], idx["input"], **(idx.get("reader_opts") or {})):
        for rec in readers.read_unit(idx["source"], unit, **(idx.get("reader_opts") or {})):
            if rec.subject_id in keep:
                yield rec.subject_id, rec.ppg.data, rec.ppg.fs, rec.series.get("hr")


def shown_errors(res, hr) -> list[float]:
    """|shown HR - label| of the windows that showed one (label: the HR series' mean inside)."""
    out = []
    for r in res:
        inside = hr.values[(hr.times_s >= r.t_start) & (hr.times_s < r.t_end)]
        inside = inside[np.isfinite(inside)]
        if r.values.get("hr") is not None and inside.size:
            out.append(abs(r.values["hr"] - inside.mean()))
    return out


def run_over_stores(prog: str, model_path: str, stores: list[str], json_path: str | None,
                    score: Callable[[EdgeModel, Path], dict[str, Any]],
                    describe: Callable[[str, dict[str, Any]], str], backend: str = "xnnpack") -> int:
    """Load the model (on LiteRT `backend`), score each store, print one line per store, write
    the rows as JSON; a bad model, store or recording is one line on stderr and exit status 2."""
    try:
        model = EdgeModel.load(model_path, backend=backend)
        rows = []
        for st in stores:
            rows.append(score(model, Path(st)))
            print(describe(st, rows[-1]), flush=True)
    except (ModelFileError, readers.ReaderError, BenchError, InputError, FileNotFoundError) as e:
        print(f"{prog}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    if json_path:
        atomic_write_json(Path(json_path), {"model": model_path, "sets": rows})
    return 0
