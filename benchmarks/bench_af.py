"""AF detection of a student's `af_logit` on a labelled store's split, int8 as a device runs it
(or the float student), with its 95% CI over subjects, and paired against a second model.

    python -m benchmarks.bench_af --model runs/wrist/af10mask/export/model_int8.tflite \
        --store stores/liu2022-... [--split val] [--against other/model_int8.tflite] [--json out.json]

Windows: every window of the split with a finite `af` label (Liu: cardiologists' rhythm labels,
AF against every other rhythm). The CI resamples subjects (patients) with replacement; the
paired difference uses the same resamples for both models. Models are opened as
`bench_wrist` opens them (`.tflite`: LiteRT reference kernels, outputs by name from the sidecar;
a run folder: the float student).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_write_json
from training.data import readers
from training.data.store import WindowStore
from training.metrics import auroc

from .bench_wrist import BenchError, model_inputs, open_model, subject_resamples


def af_set(path: str, split: str, spec) -> dict:
    """ppg (N, L), af (N,) bool, flags, subject of the split's windows with an af label."""
    st = WindowStore(path, split)
    spec.check_compatible(st.spec, f"store {path}")
    if "af" not in st.label_names:
        raise BenchError(f"{path}: no 'af' label (labels: {st.label_names})")
    y = st.column("af")
    ok = np.isfinite(y)
    if not (0 < (y[ok] > 0.5).sum() < ok.sum()):
        raise BenchError(f"{path}: split {split!r} needs AF and non-AF windows")
    return {"ppg": st.column("ppg")[ok], "af": y[ok] > 0.5, "flags": st.column("flags")[ok],
            "subject": np.array(st.subject_ids())[ok]}


def bootstrap(y: np.ndarray, scores: list[np.ndarray], subject: np.ndarray, n: int = 2000,
              seed: int = 0) -> list[list[float]]:
    """AUROC of each score vector on the same subject resamples: (n_models, n_valid_draws)."""
    out: list[list[float]] = [[] for _ in scores]
    for pick in subject_resamples(subject, n, seed):
        if 0 < y[pick].sum() < len(pick):
            for k, s in enumerate(scores):
                out[k].append(auroc(y[pick], s[pick]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_af", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model_int8.tflite or a distill/QAT run folder")
    ap.add_argument("--against", default=None, help="a second model, compared paired on the same windows")
    ap.add_argument("--store", required=True, help="window store with an 'af' label (e.g. Liu)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        models = [open_model(args.model)] + ([open_model(args.against)] if args.against else [])
        data = af_set(args.store, args.split, models[0].spec)
        scores = []
        for m in models:
            out = m.run(model_inputs(m, data), data["flags"])
            if "af_logit" not in out:
                raise BenchError(f"{m.label}: the model has no af_logit output")
            scores.append(np.asarray(out["af_logit"], float).reshape(-1))
    except (BenchError, readers.ReaderError, ValueError, FileNotFoundError) as e:
        print(f"bench_af: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    y = data["af"]
    boots = bootstrap(y, scores, data["subject"])
    rows = []
    for path, s, b in zip([args.model, args.against], scores, boots):
        rows.append({"model": path, "auroc": auroc(y, s), "ci95": [float(np.percentile(b, 2.5)),
                                                                    float(np.percentile(b, 97.5))]})
    res = {"store": args.store, "split": args.split, "windows": int(len(y)), "af_windows": int(y.sum()),
           "subjects": int(len(np.unique(data["subject"]))), "models": rows}
    print(f"{args.store} {args.split}: {res['windows']} windows ({res['af_windows']} AF), "
          f"{res['subjects']} subjects")
    for r in rows:
        print(f"  {r['model']}: AF AUROC {r['auroc']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")
    if len(scores) == 2:
        d = np.asarray(boots[0]) - np.asarray(boots[1])
        res["difference"] = {"mean": rows[0]["auroc"] - rows[1]["auroc"],
                             "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]}
        print(f"  difference {res['difference']['mean']:+.3f} [{res['difference']['ci95'][0]:+.3f}, "
              f"{res['difference']['ci95'][1]:+.3f}] (95% CI over subjects)")
    if args.json:
        atomic_write_json(Path(args.json), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
