"""Throughput of the synthetic generator, in 10-s windows per second, on one process.

    python benchmarks/bench_synthetic.py [--subjects 16] [--minutes 5] [--repeat 3]

Each configuration simulates `subjects` subjects of `minutes` each (PPG at 125 Hz plus ECG at
125 Hz, then ECG at 500 Hz) and reports the best of `repeat` runs; no data is written.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.data.synthetic import generate_subject  # noqa: E402

WINDOW_S = 10.0


def bench(subjects: int, minutes: float, ecg_fs: float, repeat: int) -> dict:
    """Best-of-`repeat` wall time to simulate `subjects` subjects; windows/s and s/subject."""
    duration = 60.0 * minutes
    generate_subject(0, duration_s=duration, ecg_fs=ecg_fs)         # warm-up (imports, caches)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(subjects):
            generate_subject(i, duration_s=duration, ecg_fs=ecg_fs)
        best = min(best, time.perf_counter() - t0)
    windows = subjects * int(duration // WINDOW_S)
    return {"ecg_fs": ecg_fs, "windows": windows, "seconds": best,
            "windows_per_s": windows / best, "ms_per_subject": 1000 * best / subjects}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    results = []
    print(f"synthetic generator, one process: {args.subjects} subjects x {args.minutes:g} min, "
          f"best of {args.repeat}")
    for ecg_fs in (125.0, 500.0):
        r = bench(args.subjects, args.minutes, ecg_fs, args.repeat)
        results.append(r)
        print(f"  ppg 125 Hz + ecg {ecg_fs:g} Hz: {r['windows_per_s']:8.0f} windows/s "
              f"({r['windows']} windows in {r['seconds']:.3f} s, {r['ms_per_subject']:.1f} ms/subject)")
    return results


if __name__ == "__main__":
    main()
