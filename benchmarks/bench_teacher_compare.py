"""What ECG-guided pretraining adds: the arms of `training.ssl` against random init, paired.

    python -m benchmarks.bench_teacher_compare --runs runs/compare --data stores/bidmc \
        --tasks bidmc-hr,bidmc-rr,bidmc-spo2,ppgbp-sbp,ppgbp-dbp,ppgbp-hr,ppgbp-hypertension \
        --seeds 0,1,2 --out runs/compare/report-bidmc-ppgbp [--train]

Arms (run folders `<objective>-f<synthetic_fraction>-s<seed>` under --runs; `--train` trains the
missing ones with `python -m training.ssl --config arms-small`):
  clip-f0        ECG-guided, real paired windows only (BIDMC training patients)
  simclr-f0      PPG-only self-supervision (SimCLR), same windows
  supervised-f0  the same encoder trained on the labels alone, same windows
  clip-f1, clip-f0.5   ablations of the corpus (synthetic only, half synthetic), seed 0
  random:net1d-small:<seed>   the same encoder at random initialisation, one per seed
  features       hand-made HRV + morphology features (the probe's baseline)

All encoders go through one `anyppg probe` call, so every method is scored on the same windows:
subjects any encoder trained on are dropped for all (held-out patients only). Each arm's
difference to random init is paired: the same subject resamples score both, seed s of an arm
against random seed s, averaged over seeds; 95% CI by bootstrap over subjects. Writes
compare.json and compare.md (with the retrieval of every clip arm and its patient oracle).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_write_json, atomic_write_text
from training.probe import protocol as P
from training.probe.main import main as probe_main
from training.ssl import main as ssl_main

MAIN_ARMS = ("clip", "simclr", "supervised")
ABLATIONS = (("clip", 1.0), ("clip", 0.5))
RANDOM = "random"


def arm_name(objective: str, fraction: float) -> str:
    return f"{objective}-f{fraction:g}"


def run_folder(runs: Path, objective: str, fraction: float, seed: int) -> Path:
    return runs / f"{arm_name(objective, fraction)}-s{seed}"


def arm_grid(seeds: list[int]) -> list[tuple[str, float, int]]:
    """(objective, synthetic fraction, seed) of every run: main arms x seeds, ablations seed 0."""
    grid = [(o, 0.0, s) for s in seeds for o in MAIN_ARMS]
    return grid + [(o, f, seeds[0]) for o, f in ABLATIONS]


def train_missing(runs: Path, data: Path, grid) -> None:
    for obj, frac, seed in grid:
        out = run_folder(runs, obj, frac, seed)
        if (out / "manifest.json").is_file():
            continue
        rc = ssl_main(["--config", "arms-small", "--objective", obj, "--data", str(data), "--out", str(out),
                       "--set", f"seed={seed}", "--set", f"corpus.synthetic_fraction={frac}", "--quiet"])
        if rc:
            raise SystemExit(f"bench_teacher_compare: training {out} failed (rc {rc})")


def paired_bootstrap(kind: str, y, groups, preds: dict[str, list[np.ndarray]],
                     refs: dict[str, list[np.ndarray]], n_classes: int = 2, rounds: int = 1000,
                     seed: int = 0) -> dict:
    """Seed-averaged metric of each method and its paired difference to its reference.

    preds[m] = [pred of seed 0, seed 1, ...]; refs[m] = the reference's predictions of the
    same seeds (or a one-element list used for every seed). Every round draws subjects with
    replacement once, and all methods and references are scored on that draw.
    Returns {m: {value, ci, diff, diff_ci, p_better, rounds}}; diff > 0 means a larger metric.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    subj, inv = np.unique(groups, return_inverse=True)
    by_subject = [np.flatnonzero(inv == i) for i in range(len(subj))]
    rng = np.random.default_rng(seed)
    metric = lambda yy, p: P.primary_metric(kind, yy, p, n_classes)
    pair = {m: [(p, refs[m][k % len(refs[m])]) for k, p in enumerate(ps)] for m, ps in preds.items()}
    point = {m: (np.mean([metric(y, p) for p, _ in pr]), np.mean([metric(y, p) - metric(y, r) for p, r in pr]))
             for m, pr in pair.items()}
    vals = {m: [] for m in preds}
    diffs = {m: [] for m in preds}
    for _ in range(rounds):
        idx = np.concatenate([by_subject[i] for i in rng.integers(0, len(subj), len(subj))])
        yr = y[idx]
        if kind != "regression" and len(np.unique(yr)) < 2:
            continue
        for m, pr in pair.items():
            v = [metric(yr, p[idx]) for p, _ in pr]
            d = [vi - metric(yr, r[idx]) for vi, (_, r) in zip(v, pr)]
            vals[m].append(np.mean(v))
            diffs[m].append(np.mean(d))
    better = (lambda d: d > 0) if P.HIGHER_IS_BETTER[metric_name(kind)] else (lambda d: d < 0)
    out = {}
    for m in preds:
        v, d = np.asarray(vals[m]), np.asarray(diffs[m])
        out[m] = {"value": float(point[m][0]), "ci": _pct(v), "diff": float(point[m][1]), "diff_ci": _pct(d),
                  "p_better": float(np.mean(better(d))) if len(d) else None, "rounds": int(len(d)),
                  "seeds": len(pair[m])}
    return out


def metric_name(kind: str) -> str:
    return {"regression": "mae", "binary": "auroc", "multiclass": "macro_f1"}[kind]


def _pct(a: np.ndarray) -> list[float] | None:
    return [float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))] if len(a) else None


def compare_task(pred_file: Path, task: dict, arms: dict[str, list[str]], randoms: list[str],
                 rounds: int, seed: int) -> dict:
    """Paired comparison of one task from the probe's predictions file."""
    z = np.load(pred_file)
    kind = task["task"]["kind"]
    n_classes = max(2, len(task.get("class_counts") or []))
    get = lambda name: z[f"pred:{name}"]
    preds = {a: [get(n) for n in names] for a, names in arms.items()}
    refs = {a: [get(r) for r in randoms[:len(names)]] for a, names in arms.items()}
    preds[RANDOM], refs[RANDOM] = [get(r) for r in randoms], [get(r) for r in randoms]
    preds["features"], refs["features"] = [get("features")], [get(r) for r in randoms]
    # features vs random: its one prediction against every random seed, averaged
    preds["features"] = preds["features"] * len(randoms)
    ref_name = "subject-mean" if kind == "regression" else "prior"
    preds[ref_name], refs[ref_name] = [get(ref_name)] * len(randoms), [get(r) for r in randoms]
    res = paired_bootstrap(kind, z["y"], z["subject"], preds, refs, n_classes, rounds, seed)
    return {"metric": task["metric"], "kind": kind, "n_subjects": task.get("n_subjects"),
            "n_windows": task.get("n_windows"), "methods": res}


def retrieval_rows(runs: Path, grid) -> list[dict]:
    rows = []
    for obj, frac, seed in grid:
        if obj != "clip":
            continue
        m = json.loads((run_folder(runs, obj, frac, seed) / "manifest.json").read_text())
        r = m["metrics"].get(f"{m['config'].get('eval_split', 'test')}_retrieval", {})
        rows.append({"run": run_folder(runs, obj, frac, seed).name, **r})
    return rows


def render(report: dict) -> str:
    lines = ["| task | metric | subjects (windows) | method | seeds | value [95% CI] | paired diff to random init [95% CI] | P(better) |",
             "|---|---|---|---|---|---|---|---|"]
    for t, r in report["tasks"].items():
        for m, v in r["methods"].items():
            ci = f"[{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" if v["ci"] else ""
            dci = f"[{v['diff_ci'][0]:+.3f}, {v['diff_ci'][1]:+.3f}]" if v["diff_ci"] else ""
            diff = "" if m == RANDOM else f"{v['diff']:+.3f} {dci}"
            pb = "" if m == RANDOM or v["p_better"] is None else f"{v['p_better']:.2f}"
            lines.append(f"| {t} | {r['metric']} | {r['n_subjects']} ({r['n_windows']}) | {m} | {v['seeds']} | "
                         f"{v['value']:.3f} {ci} | {diff} | {pb} |")
    lines += ["", "| clip run | split | top-1, batches of 64 [95% CI] | chance | patient oracle | within-patient top-1 [95% CI] | its chance |",
              "|---|---|---|---|---|---|---|"]
    for r in report["retrieval"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['run']} | | {r.get('status')} | | | | |")
            continue
        u, w = r["uniform"], r["within_patient"]
        lines.append(f"| {r['run']} | {r['split']} ({r['n_subjects']} patients) | {u['top1']:.3f} "
                     f"[{u['ci'][0]:.3f}, {u['ci'][1]:.3f}] | {u['chance']:.3f} | {u['patient_oracle']:.3f} | "
                     f"{w['top1']:.3f} [{w['ci'][0]:.3f}, {w['ci'][1]:.3f}] | {w['chance']:.3f} |")
    return "\n".join(lines) + "\n"


def render_wide(report: dict) -> str:
    """One row per task: each method's seed-mean value and its paired difference to random init."""
    order = [RANDOM] + list(report["arms"]) + ["features"]
    head = {RANDOM: "random init", "clip-f0": "ECG-guided", "simclr-f0": "SimCLR (PPG only)",
            "supervised-f0": "supervised", "clip-f1": "ECG-guided, synthetic only",
            "clip-f0.5": "ECG-guided, half synthetic", "features": "HRV+morph. features"}
    lines = ["| task | metric | subjects (windows) | " + " | ".join(head.get(m, m) for m in order) + " |",
             "|---|---|---|" + "---|" * len(order)]
    for t, r in report["tasks"].items():
        cells = []
        for m in order:
            v = r["methods"].get(m)
            if v is None:
                cells.append("")
            elif m == RANDOM:
                cells.append(f"{v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]")
            else:
                cells.append(f"{v['value']:.3f}, {v['diff']:+.3f} [{v['diff_ci'][0]:+.3f}, {v['diff_ci'][1]:+.3f}]")
        lines.append(f"| {t} | {r['metric']} | {r['n_subjects']} ({r['n_windows']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/compare")
    p.add_argument("--data", default="stores/bidmc", help="paired store the arms train on")
    p.add_argument("--tasks", default="real")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train", action="store_true", help="train the missing runs first")
    p.add_argument("--rounds", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    runs, out = Path(args.runs), Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = arm_grid(seeds) if args.ablations else [(o, 0.0, s) for s in seeds for o in MAIN_ARMS]
    if args.train:
        train_missing(runs, Path(args.data), grid)
    missing = [str(run_folder(runs, *g)) for g in grid if not (run_folder(runs, *g) / "manifest.json").is_file()]
    if missing:
        print(f"bench_teacher_compare: runs missing (use --train): {', '.join(missing)}", file=sys.stderr)
        return 1
    randoms = [f"random:net1d-small:{s}" for s in seeds]
    enc = [str(run_folder(runs, *g)) for g in grid] + randoms
    argv_probe = sum((["--encoder", e] for e in enc), []) + [
        "--tasks", args.tasks, "--out", str(out / "probe"), "--threads", str(args.threads),
        "--workers", "1", "--no-plots", "--baselines", "features", "--bootstrap", "200"]
    rc = probe_main(argv_probe)
    if rc:
        return rc
    probe = json.loads((out / "probe" / "probe.json").read_text())
    arms: dict[str, list[str]] = {}
    for obj, frac, seed in grid:
        arms.setdefault(arm_name(obj, frac), []).append(run_folder(runs, obj, frac, seed).name)
    report = {"seeds": seeds, "arms": arms, "randoms": randoms, "tasks": {},
              "retrieval": retrieval_rows(runs, grid),
              "probe": str(out / "probe" / "probe.json")}
    for name, t in probe["tasks"].items():
        f = out / "probe" / "predictions" / f"{name}.npz"
        if t.get("status") != "ok" or not f.is_file():
            continue
        report["tasks"][name] = compare_task(f, t, arms, randoms, args.rounds, 0)
    atomic_write_json(out / "compare.json", report)
    atomic_write_text(out / "compare.md", render_wide(report) + "\n" + render(report))
    print(render_wide(report) + "\n" + render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
