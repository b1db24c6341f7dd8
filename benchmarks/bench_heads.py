"""A student's own heads against classical estimators, on the same held-out windows.

    python -m benchmarks.bench_heads --store stores/bidmc --run runs/bidmc/distill-student-s \
        --run runs/bidmc/scratch-student-s [--splits val,test]

No probe is fitted here: the HR head's output in bpm is compared with the label, next to the
HR that HeartPy, NeuroKit2 and the spectral peak read from the very same windows, and the
constant training-split mean.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from training.checkpoint import build_student, load_checkpoint
from training.probe.baselines import hr_estimates
from training.data.store import WindowStore


def head_predictions(run: str, x: np.ndarray, head: str = "hr") -> np.ndarray:
    ck, path = load_checkpoint(run)
    st = build_student(ck, path)
    with torch.no_grad():
        out = st.model(torch.from_numpy(x).unsqueeze(1))
    return getattr(out, head).numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_heads")
    ap.add_argument("--store", required=True)
    ap.add_argument("--run", action="append", required=True, help="distill run folder (repeatable)")
    ap.add_argument("--splits", default="val,test")
    ap.add_argument("--label", default="hr")
    args = ap.parse_args(argv)
    train_mean = float(np.nanmean(WindowStore(args.store, "train").column(args.label)))
    print(f"{args.label.upper()} MAE on held-out windows of {args.store} (no probe fitted):")
    for split in args.splits.split(","):
        s = WindowStore(args.store, split)
        x, y = s.column("ppg"), s.column(args.label)
        ok = np.isfinite(y)
        rows = {f"head of {r}": head_predictions(r, x) for r in args.run}
        rows.update({k: v for k, v in hr_estimates(x, s.column("flags")).items()})
        rows["constant training mean"] = np.full(len(y), train_mean)
        print(f"  {split}: {len(set(s.subject_ids()))} subjects, {int(ok.sum())} windows")
        for name, pred in rows.items():
            m = ok & np.isfinite(pred)
            print(f"    {name:<48} {np.abs(pred[m] - y[m]).mean():6.2f}   (coverage {m.sum() / ok.sum():.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
