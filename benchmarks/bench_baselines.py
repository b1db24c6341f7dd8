"""Classical HR baselines of `anyppg probe`: speed and agreement on the same windows.

    python -m benchmarks.bench_baselines [--windows 300] [--store DIR] [--json out.json]

Times, per 10 s window, the three direct HR estimators the probe reports (Welch spectral peak,
NeuroKit2 `ppg_peaks`, HeartPy `process`) and the probe's own beat detector / hand-made feature
extractor, on preprocessed windows (a store given with --store, else a synthetic store built on
the fly). With a store that has an 'hr' label, also their MAE and coverage against it.

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


def _windows(store: str | None, n: int):
    from training.data.store import WindowStore
    if store is None:
        from training.prepare import main as prepare_main
        tmp = tempfile.mkdtemp(prefix="bench_baselines_")
        store = os.path.join(tmp, "syn")
        prepare_main(["--source", "synthetic", "--input", "subjects=12,minutes=4,seed=1", "--out", store,
                      "--quiet", "--workers", "1"])
    s = WindowStore(store)
    idx = np.linspace(0, len(s) - 1, min(n, len(s))).astype(int)
    hr = s.column("hr")[idx] if "hr" in s.label_names else None
    return s.column("ppg")[idx], s.column("flags")[idx], hr, store


def main(argv=None) -> int:
    from training.probe import baselines as B
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, default=300)
    p.add_argument("--store", default=None, help="a prepared window store (default: synthetic)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    x, flags, hr, store = _windows(args.store, args.windows)
    segs = B.segments(x, flags)
    methods = {
        "hr-spectral (Welch, ours)": lambda s: B.hr_spectral_one(s),
        "hr-peaks (find_peaks, ours)": lambda s: (60.0 / (np.mean(np.diff(B.find_beats(s)[0])) / B.FS)
                                                  if len(B.find_beats(s)[0]) > 1 else np.nan),
        "hr-neurokit2 (ppg_peaks)": B.hr_neurokit_one,
        "hr-heartpy (process)": B.hr_heartpy_one,
        "features (22, ours)": lambda s: B.features_one(s)[0],
    }
    B.hr_heartpy_one(segs[0])          # first call imports and warms up
    B.hr_neurokit_one(segs[0])
    out = {"store": store, "windows": len(segs), "methods": {}}
    print(f"{len(segs)} windows from {store}")
    print(f"{'method':<30} {'ms/window':>10} {'coverage':>9} {'MAE bpm':>8}")
    for name, fn in methods.items():
        t0 = time.perf_counter()
        est = np.array([fn(s) for s in segs], float)
        ms = (time.perf_counter() - t0) / len(segs) * 1e3
        row = {"ms_per_window": ms, "coverage": float(np.isfinite(est).mean())}
        if hr is not None and not name.startswith("features"):
            ok = np.isfinite(est) & np.isfinite(hr)
            row["mae_bpm"] = float(np.mean(np.abs(est[ok] - hr[ok]))) if ok.any() else None
        out["methods"][name] = row
        mae = row.get("mae_bpm")
        print(f"{name:<30} {ms:>10.2f} {row['coverage']:>9.1%} {'' if mae is None else f'{mae:8.2f}'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
