"""Data-layer throughput: preprocessing (vs NeuroKit2 in the same run), synthetic generation,
store reads.

    python -m benchmarks.bench_data [--seconds 3600] [--json out.json]

Figures are per core (one process, BLAS/OpenMP threads pinned to 1).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_preprocessing(seconds: float, fs_in: float, repeats: int) -> dict:
    """Seconds of signal processed per second: our per-window pipeline vs neurokit2.ppg_clean.

    Ours: polyphase resample fs_in -> 125 Hz, cut 10 s windows, zero-phase band-pass per window,
    z-score, all quality flags. NeuroKit2: `ppg_clean` (Elgendi: the same 0.5-8 Hz 3rd-order
    Butterworth, zero-phase) over the whole record at its native rate, which is strictly less
    work (no resampling, no windowing, no quality checks).
    """
    import neurokit2 as nk
    from edge_runtime import preprocess as pp
    from edge_runtime.spec import SPECS

    from training.data.synthetic import generate_subject
    rec = generate_subject(0, seed=1, duration_s=seconds, ppg_fs=fs_in)
    x = rec.signals["ppg"].data
    spec = SPECS["small"]
    ours = _best_of(lambda: pp.ppg_windows(x, fs_in, spec), repeats)
    nk_t = _best_of(lambda: nk.ppg_clean(x, sampling_rate=int(fs_in), method="elgendi"), repeats)
    return {"signal_seconds": seconds, "fs_in": fs_in,
            "ours_signal_s_per_s": seconds / ours, "neurokit2_signal_s_per_s": seconds / nk_t,
            "ratio_ours_over_neurokit2": nk_t / ours}


def bench_generator(n_subjects: int, minutes: float, ecg_fs: float) -> dict:
    from training.data.synthetic import generate_subject
    generate_subject(0, seed=0, duration_s=10.0, ecg_fs=ecg_fs)  # warm-up
    t0 = time.perf_counter()
    for i in range(n_subjects):
        generate_subject(i, seed=0, duration_s=minutes * 60, ecg_fs=ecg_fs)
    dt = time.perf_counter() - t0
    windows = n_subjects * minutes * 6
    return {"ecg_fs": ecg_fs, "windows": windows, "windows_per_s": windows / dt}


def bench_store_reads(n_reads: int) -> dict:
    """Random-access reads of (ppg, ecg, labels) through the torch Dataset, one worker."""
    from training.data.dataset import WindowDataset
    from training.prepare import main as prepare_main
    with tempfile.TemporaryDirectory() as d:
        store = os.path.join(d, "store")
        prepare_main(["--source", "synthetic", "--input", "subjects=12,minutes=10,seed=3",
                      "--out", store, "--quiet", "--workers", "1"])
        ds = WindowDataset(store, split=None, with_ecg=True)
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(ds), n_reads)
        for i in idx[:100]:
            ds[int(i)]
        t0 = time.perf_counter()
        for i in idx:
            ds[int(i)]
        dt = time.perf_counter() - t0
    return {"windows": len(ds), "reads": n_reads, "windows_per_s": n_reads / dt}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_data")
    p.add_argument("--seconds", type=float, default=3600.0, help="signal length for preprocessing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reads", type=int, default=20000)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    res = {"preprocessing": [bench_preprocessing(args.seconds, fs, args.repeats) for fs in (125.0, 500.0)],
           "generator": [bench_generator(6, 10.0, fs) for fs in (125.0, 500.0)],
           "store_reads": bench_store_reads(args.reads)}
    print("preprocessing (1 core; seconds of signal per second):")
    for r in res["preprocessing"]:
        print(f"  input {r['fs_in']:>5.0f} Hz: ours {r['ours_signal_s_per_s']:>10.0f}   "
              f"neurokit2.ppg_clean {r['neurokit2_signal_s_per_s']:>10.0f}   "
              f"ratio {r['ratio_ours_over_neurokit2']:.2f}x")
    print("synthetic generator (1 core; 10 s windows of PPG + ECG per second):")
    for r in res["generator"]:
        print(f"  ECG {r['ecg_fs']:>5.0f} Hz: {r['windows_per_s']:>8.0f} windows/s")
    r = res["store_reads"]
    print(f"store reads (1 worker, random access, ppg+ecg+labels): {r['windows_per_s']:.0f} windows/s "
          f"over {r['windows']} windows")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
