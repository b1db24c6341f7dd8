"""Does `--polarity auto` find which way up a recording reports the pulse? Whole recordings of a
store's split, pushed through the streaming runtime upright and flipped.

    python -m benchmarks.bench_polarity --model runs/wrist/af10mask/export \
        --store stores/bidmc --store stores/synthetic-wrist [--split val] [--json out.json]

Each store's split subjects are read again from the store's own source and input (the raw
recordings: BIDMC's CSVs, the synthetic generator's wearers at their sensor rates), then run by
`edge_runtime.stream.run_recording(..., polarity="auto")` as recorded and with its sign flipped.
Per set: how often auto decided the recording's true way up, and the HR MAE of the numbers the
stream showed (usable windows, labelled by the mean of the record's HR series inside the window).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge_runtime.model import EdgeModel
from edge_runtime.polarity import VOTE_WINDOWS
from edge_runtime.stream import run_recording

from .store_recordings import recordings, run_over_stores, shown_errors


def score(model: EdgeModel, store: Path, split: str, vote_windows: int) -> dict:
    """Auto on each recording upright and flipped, and the contract's 'up' on it upright."""
    right, err = {1: 0, -1: 0}, {1: [], -1: [], "declared": []}
    n = 0
    for _, x, fs, hr in recordings(store, split):
        n += 1
        x = np.asarray(x, np.float64)
        for sign in (1, -1):
            res, s = run_recording(model, sign * x, fs, polarity="auto", vote_windows=vote_windows)
            right[sign] += s.polarity.state()["polarity"] == ("up" if sign == 1 else "down")
            err[sign] += shown_errors(res, hr) if hr is not None else []
        if hr is not None:
            err["declared"] += shown_errors(run_recording(model, x, fs, polarity="up")[0], hr)
    mae = {k: float(np.mean(v)) if v else None for k, v in err.items()}
    return {"store": str(store), "split": split, "recordings": n, "vote_windows": vote_windows,
            "auto_right_upright": right[1], "auto_right_flipped": right[-1],
            "hr_mae_upright": mae[1], "hr_mae_flipped": mae[-1], "hr_mae_declared_up": mae["declared"],
            "windows_shown": {"upright": len(err[1]), "flipped": len(err[-1]), "declared": len(err["declared"])}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_polarity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="export folder or .tflite")
    ap.add_argument("--store", action="append", required=True, help="window store (repeatable)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--vote-windows", type=int, default=VOTE_WINDOWS,
                    help=f"windows auto votes over before it locks (default {VOTE_WINDOWS}, the runtime's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    def describe(st: str, r: dict) -> str:
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        return (f"{st} {args.split}: {r['recordings']} recordings; auto right {r['auto_right_upright']} "
                f"upright, {r['auto_right_flipped']} flipped; HR MAE shown {fmt(r['hr_mae_upright'])} "
                f"upright, {fmt(r['hr_mae_flipped'])} flipped, {fmt(r['hr_mae_declared_up'])} declared up "
                f"(windows shown {r['windows_shown']})")
    return run_over_stores("bench_polarity", args.model, args.store, args.json,
                           lambda m, st: score(m, st, args.split, args.vote_windows), describe)


if __name__ == "__main__":
    sys.exit(main())
