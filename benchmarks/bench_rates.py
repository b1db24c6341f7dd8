"""Does the HR a stream shows depend on the sensor's rate? Whole recordings of a store's split,
resampled to each rate (as a slower or faster sensor would have sampled them: scipy's
polyphase `resample_poly`, anti-aliased) and pushed through `edge_runtime.stream` declared at
that rate, which resamples them back to the model's 125 Hz.

    python -m benchmarks.bench_rates --model runs/wrist/af10mask/export --store stores/bidmc \
        [--split val] [--rates 25,30,64,125,256] [--json out.json]

Per rate: HR MAE of the windows shown (labelled by the mean of the record's HR series inside the
window) and how many were shown; the polarity is the contract's (`up`), so only the rate differs.
A phone camera's 30 Hz is in the default list.
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from edge_runtime.model import EdgeModel
from edge_runtime.stream import run_recording

from .store_recordings import recordings, run_over_stores, shown_errors

RATES_HZ = (25.0, 30.0, 64.0, 125.0, 256.0)


def at_rate(x: np.ndarray, fs: float, rate: float) -> np.ndarray:
    """x (T,) sampled at fs, resampled to `rate` (the same samples where rate == fs)."""
    if rate == fs:
        return np.asarray(x, np.float64)
    r = Fraction(rate / fs).limit_denominator(1000)
    return resample_poly(np.asarray(x, np.float64), r.numerator, r.denominator)


def score(model: EdgeModel, store: Path, split: str, rates: tuple[float, ...]) -> dict:
    err: dict[float, list[float]] = {r: [] for r in rates}
    n = 0
    for _, x, fs, hr in recordings(store, split):
        if hr is None:
            continue
        n += 1
        for rate in rates:
            res, _ = run_recording(model, at_rate(x, fs, rate), rate, polarity="up")
            err[rate] += shown_errors(res, hr)
    return {"store": str(store), "split": split, "recordings": n,
            "rates": [{"rate_hz": r, "hr_mae": float(np.mean(e)) if e else None, "windows_shown": len(e)}
                      for r, e in err.items()]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_rates", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="export folder or .tflite")
    ap.add_argument("--store", action="append", required=True, help="window store with HR labels (repeatable)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES_HZ), help="sensor rates, Hz")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        rates = tuple(float(r) for r in args.rates.split(","))
        if not all(r > 0 for r in rates):
            raise ValueError
    except ValueError:
        print(f"bench_rates: error: --rates {args.rates!r}: positive numbers, comma-separated", file=sys.stderr)
        return 2

    def describe(st: str, r: dict) -> str:
        cells = ", ".join(f"{c['rate_hz']:g} Hz {c['hr_mae']:.2f} ({c['windows_shown']})"
                          if c["hr_mae"] is not None else f"{c['rate_hz']:g} Hz n/a" for c in r["rates"])
        return f"{st} {args.split}: {r['recordings']} recordings; HR MAE shown (windows): {cells}"
    return run_over_stores("bench_rates", args.model, args.store, args.json,
                           lambda m, st: score(m, st, args.split, rates), describe)


if __name__ == "__main__":
    sys.exit(main())
