"""`anyppg probe`: frozen-embedding probes of PPG encoders on downstream tasks, with baselines.

    anyppg probe --encoder runs/bidmc/pretrain --encoder random:net1d-small \\
                 --tasks real --out runs/bidmc/probe

For every task: the task's window store is prepared on demand (cached under --stores, keyed by
source + input + spec), windows without a label are dropped, subjects any of the encoders was
trained on are dropped (same dataset: see embedders.seen_subjects_in_store), then every method
is scored on the same windows of the same subjects with the same grouped folds:

  encoders      frozen embedding -> StandardScaler -> ridge (alpha by inner grouped CV on MAE)
                / logistic (C by inner grouped CV on AUROC or macro-F1), 5-fold GroupKFold by
                subject, metrics on pooled out-of-fold predictions
  subject-mean  (regression) each held-out subject gets the mean label of the training
                subjects; 'prior' (classification): the training prevalence / majority class
  features      hand-made HRV + pulse-morphology features through the same linear protocol
  hr-*, rr-*    direct classical estimators (spectral peak, NeuroKit2, HeartPy; RIIV, RIAV,
                RIFV and their median) on the same windows; scored where they produce a value
                (coverage reported)

95% CIs: bootstrap over subjects (--bootstrap rounds, seeded). Skill: 1 - MAE/MAE_subject_mean
(regression), (AUROC - 0.5)/0.5 (binary), (macroF1 - F1_majority)/(1 - F1_majority)
(multi-class); a student "keeps 90% of the teacher's skill" when its skill >= 0.9 x teacher's.

Writes DIR/probe.json, DIR/probe.md, DIR/<task>.png, DIR/predictions/<task>.npz (pooled
out-of-fold predictions per method, for paired comparisons later) and DIR/manifest.json.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_path, atomic_write_json, atomic_write_text, write_manifest
from edge_runtime.spec import SPECS

from . import protocol as P
from .baselines import DIRECT, DISPLAY
from .tasks import PRIMARY_METRIC, SYNTHETIC_DEFAULT, Task, describe_tasks, resolve_tasks, shared_data_dir

PROBE_VERSION = 1


def log(msg: str) -> None:
    print(f"[probe] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- stores
def store_key(source: str, inp: str, spec_name: str, reader_opts=()) -> str:
    spec = SPECS[spec_name].to_dict()
    key = {"source": source, "input": inp, "spec": spec}
    if reader_opts:
        key["reader_opts"] = sorted(reader_opts)
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(inp).name if source != "synthetic") \
        or ("synthetic-" + "".join(c if c.isalnum() else "_" for c in inp))[:40]
    return f"{source}-{base[:40]}-{h.hexdigest()[:10]}"


def _store_complete(p: Path) -> bool:
    try:
        return json.loads((p / "index.json").read_text()).get("complete", False)
    except (OSError, ValueError):
        return False


def ensure_store(task: Task, stores_dir: Path, spec_name: str = "small", workers: int = 2,
                 reader_opts=()):
    """(store path, None) or (None, reason). Prepares the store once; reuses it afterwards.

    reader_opts: 'key=value' reader options (prepare --opt) for custom tasks, e.g. 'fs=100'.
    """
    inp = task.resolved_input()
    if task.source != "synthetic" and not Path(inp).exists():
        return None, f"skipped: dataset not found at {inp}"
    reader_opts = tuple(reader_opts) if task.group == "custom" else ()
    path = stores_dir / store_key(task.source, inp, spec_name, reader_opts)
    if _store_complete(path):
        return path, None
    from training import prepare
    argv = ["--source", task.source, "--input", inp, "--out", str(path), "--spec", spec_name,
            "--workers", str(max(1, workers)), "--quiet"]
    for kv in reader_opts:
        argv += ["--opt", kv]
    if path.exists():
        argv.append("--overwrite")           # an incomplete leftover
    log(f"preparing store {path} ({task.source} from {inp})")
    err, outbuf = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
        rc = prepare.main(argv)
    if rc != 0:
        if _store_complete(path):           # prepared concurrently by another process
            return path, None
        msg = (err.getvalue().strip().splitlines() or [f"prepare returned {rc}"])[-1]
        return None, f"skipped: could not prepare the store: {msg}"
    return path, None


class StoreData:
    """One store's arrays, loaded once and shared by its tasks, encoders and baselines."""

    def __init__(self, path: Path):
        from training.data.store import WindowStore
        self.path = path
        self.store = WindowStore(path)
        self.index = self.store.index
        self.x = self.store.column("ppg")
        self.flags = self.store.column("flags")
        self.subjects = np.array(self.store.subject_ids())
        self._emb: dict[str, np.ndarray] = {}
        self._direct: dict[str, dict[str, np.ndarray]] = {}
        self._features: np.ndarray | None = None
        self.timings: dict[str, float] = {}

    def embedding(self, emb) -> np.ndarray:
        if emb.name not in self._emb:
            t = time.perf_counter()
            self._emb[emb.name] = emb.embed(self.x)
            self.timings[f"embed:{emb.name}"] = time.perf_counter() - t
            log(f"  embedded {len(self.x)} windows of {self.path.name} with {emb.name} "
                f"({self._emb[emb.name].shape[1]}-d, {self.timings[f'embed:{emb.name}']:.1f} s)")
        return self._emb[emb.name]

    def direct(self, family: str) -> dict[str, np.ndarray]:
        from . import baselines as B
        if family not in self._direct:
            t = time.perf_counter()
            fn = {"hr": B.hr_estimates, "rr": B.rr_estimates}[family]
            self._direct[family] = fn(self.x, self.flags)
            self.timings[f"baseline:{family}"] = time.perf_counter() - t
            log(f"  {family} baselines on {len(self.x)} windows ({self.timings[f'baseline:{family}']:.1f} s)")
        return self._direct[family]

    def features(self) -> np.ndarray:
        from . import baselines as B
        if self._features is None:
            t = time.perf_counter()
            self._features = B.features(self.x, self.flags)
            self.timings["baseline:features"] = time.perf_counter() - t
            log(f"  hand-made features on {len(self.x)} windows ({self.timings['baseline:features']:.1f} s)")
        return self._features


# --------------------------------------------------------------------------- one task
def spec_mismatch(emb, store_spec) -> str | None:
    s = getattr(emb, "spec", None)
    if s is None:
        return None
    keys = ("ppg_fs", "window_s", "ppg_band_hz", "ppg_filter_order")
    a, b = s.to_dict(), store_spec.to_dict()
    diff = [f"{k} {a[k]} vs store {b[k]}" for k in keys if a[k] != b[k]]
    return ("skipped: encoder input contract differs: " + ", ".join(diff)) if diff else None


def _labels(task: Task, raw: np.ndarray):
    """(y, valid mask, n_classes, problem)."""
    valid = np.isfinite(raw)
    if task.kind == "regression":
        return raw.astype(float), valid, 0, None
    if task.kind == "binary":
        if task.threshold is not None:
            y = (raw >= task.threshold).astype(int)
        else:
            vals = np.unique(raw[valid])
            if not np.isin(vals, (0.0, 1.0)).all():
                return None, valid, 2, (f"skipped: label {task.label!r} is not 0/1 (values {vals[:5]}...); "
                                        "give a threshold")
            y = np.where(valid, raw, 0).astype(int)
        return y, valid, 2, None
    vals = raw[valid]
    if len(vals) and (np.any(vals < 0) or np.any(vals != np.round(vals))):
        return None, valid, 0, f"skipped: label {task.label!r} is not a class index 0..K-1"
    k = max(len(task.classes), int(vals.max()) + 1 if len(vals) else 0)
    return np.where(valid, raw, 0).astype(int), valid, k, None


def _summarise(kind: str, name: str, y, pred, label, groups, ref_pred, n_classes, params=None,
               note: str | None = None) -> dict:
    ok = np.isfinite(pred)
    res = {"status": "ok", "metric": PRIMARY_METRIC[kind]}
    res["n_windows"] = int(ok.sum())
    res["n_subjects"] = int(len(np.unique(groups[ok])))
    res["coverage"] = float(ok.mean()) if len(ok) else 0.0
    if ok.sum() == 0:
        res.update(status="failed: the method produced no value on any window", value=None)
        return res
    if kind != "regression" and len(np.unique(y[ok])) < 2:
        res.update(status="degenerate: the covered windows hold one class only", value=None)
        return res
    m = P.metrics(kind, y[ok], pred[ok], max(n_classes, 2), None if label is None else label[ok])
    res["value"] = m[res["metric"]]
    res["metrics"] = m
    ref_val = P.primary_metric(kind, y[ok], ref_pred[ok], max(n_classes, 2)) if ref_pred is not None else None
    res["skill"] = P.skill(kind, res["value"], ref_val)
    if params:
        res["params"] = params
    if res["coverage"] < 1:
        cov = ">99.9%" if res["coverage"] >= 0.999 else f"{res['coverage']:.1%}"
        res["note"] = (f"scored on the {cov} of windows where it produced a value; "
                       f"failed on {int((~ok).sum())}")
    if note:
        res["note"] = (res.get("note", "") + "; " if res.get("note") else "") + note
    return res


def run_task(task: Task, sd: StoreData, embedders: list, opts) -> tuple[dict, dict]:
    """Result dict of one task and the arrays for its plot / predictions file."""
    t0 = time.perf_counter()
    out: dict = {"task": task.to_dict(), "metric": task.metric, "store": str(sd.path),
                 "store_source": sd.index.get("source"), "store_input": sd.index.get("input"),
                 "encoders": {}, "baselines": {}}
    if task.label not in sd.store.label_names:
        out["status"] = (f"skipped: label {task.label!r} not in the store "
                         f"(labels: {', '.join(sd.store.label_names)})")
        return out, {}
    y_all, valid, n_classes, problem = _labels(task, sd.store.column(task.label))
    out["n_windows_labelled"] = int(valid.sum())
    out["n_windows_total"] = int(len(valid))
    if problem:
        out["status"] = problem
        return out, {}

    # Seen-subject exclusion: the union over all encoders, so every method shares the windows.
    from .embedders import seen_subjects_in_store
    excluded: set[str] = set()
    per_encoder = {}
    for emb in embedders:
        ex, reasons = seen_subjects_in_store(getattr(emb, "seen", []) or [], sd.index, sd.store.subjects)
        per_encoder[emb.name] = {"n_subjects": len(ex), "reasons": reasons,
                                 "seen_known": bool(getattr(emb, "seen_known", True))}
        excluded |= ex
    keep = valid & ~np.isin(sd.subjects, sorted(excluded))
    out["excluded_seen_subjects"] = len(excluded)
    out["excluded_seen_windows"] = int((valid & np.isin(sd.subjects, sorted(excluded))).sum())
    out["excluded_by_encoder"] = per_encoder
    rows = np.flatnonzero(keep)
    y = y_all[rows]
    groups = sd.subjects[rows]
    out["n_windows"] = int(len(rows))
    out["n_subjects"] = int(len(np.unique(groups)))
    if task.kind != "regression":
        out["class_counts"] = np.bincount(y, minlength=max(n_classes, 2)).tolist()
        out["class_subjects"] = [int(len(np.unique(groups[y == c]))) for c in range(max(n_classes, 2))]

    folds = None
    try:
        folds = P.outer_folds(y, groups, task.kind, opts.folds, opts.seed) if len(rows) else None
    except ValueError:
        pass
    reason = P.degenerate_reason(y, groups, task.kind, folds)
    if reason is None and folds is None:
        reason = "degenerate: cannot form grouped folds"
    if reason:
        out["status"] = reason
        return out, {}
    out["n_folds"] = len(folds)

    ref = P.subject_mean_predict(y, groups, task.kind, folds, max(n_classes, 2))
    ref_name = "subject-mean" if task.kind == "regression" else "prior"
    ref_for_skill = ref.pred if task.kind != "binary" else None
    preds: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}

    out["baselines"][ref_name] = _summarise(task.kind, ref_name, y, ref.pred, ref.label, groups,
                                            ref_for_skill, n_classes,
                                            note=("AUROC 0.5 by construction" if task.kind == "binary" else None))
    preds[ref_name], kinds[ref_name] = ref.pred, "baseline"
    if ref.label is not None:
        labels[ref_name] = ref.label

    for emb in embedders:
        mis = spec_mismatch(emb, sd.store.spec)
        if mis:
            out["encoders"][emb.name] = {"status": mis}
            continue
        t = time.perf_counter()
        try:
            Z = sd.embedding(emb)[rows]
            pr = P.cross_val_predict(Z, y, groups, task.kind, folds, opts.inner_folds, opts.seed,
                                     n_classes=max(n_classes, 2))
        except ValueError as e:      # NaN embeddings, wrong input length: this encoder only
            out["encoders"][emb.name] = {"status": f"error: {str(e).splitlines()[0]}"}
            continue
        res = _summarise(task.kind, emb.name, y, pr.pred, pr.label, groups, ref_for_skill, n_classes, pr.params)
        res["embed_dim"] = int(Z.shape[1])
        res["fit_s"] = round(time.perf_counter() - t, 2)
        out["encoders"][emb.name] = res
        preds[emb.name], kinds[emb.name] = pr.pred, "encoder"
        if pr.label is not None:
            labels[emb.name] = pr.label

    if "features" in opts.baselines:
        F = sd.features()[rows]
        pr = P.cross_val_predict(F, y, groups, task.kind, folds, opts.inner_folds, opts.seed,
                                 impute=True, n_classes=max(n_classes, 2))
        out["baselines"]["features"] = _summarise(task.kind, "features", y, pr.pred, pr.label, groups,
                                                  ref_for_skill, n_classes, pr.params)
        preds["features"], kinds["features"] = pr.pred, "baseline"
        if pr.label is not None:
            labels["features"] = pr.label
    if task.kind == "regression":
        for fam in task.baselines:
            if fam not in opts.baselines:
                continue
            for name, est in sd.direct(fam).items():
                p = est[rows].astype(float)
                out["baselines"][name] = _summarise(task.kind, name, y, p, None, groups, ref.pred,
                                                    n_classes, note="direct estimate, no training")
                preds[name], kinds[name] = p, "baseline"

    # One bootstrap for all methods: identical subject resamples.
    ok_methods = {m: p for m, p in preds.items()
                  if (out["encoders"].get(m) or out["baselines"].get(m) or {}).get("status") == "ok"}
    boot_preds = ok_methods
    reference = {m: ref_for_skill for m in ok_methods} if ref_for_skill is not None else None
    extra = {m: labels[m] for m in ok_methods if m in labels} if task.kind == "binary" else None
    bs = P.bootstrap(task.kind, y, groups, boot_preds, reference, opts.bootstrap, opts.seed,
                     max(n_classes, 2), extra)
    for m, b in bs.items():
        res = out["encoders"].get(m) or out["baselines"][m]
        res["ci"] = b["ci"]
        res["skill_ci"] = b["skill_ci"]
        if "f1_ci" in b:
            res["f1_ci"] = b["f1_ci"]
        res["bootstrap_rounds"] = b["rounds"]
    out["status"] = "ok"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    arrays = {"y": y, "subject": groups, "preds": preds, "kinds": kinds,
              "proba": None}
    return out, arrays


# --------------------------------------------------------------------------- reports
def _finite(o):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (a metric is a number or absent)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    return o


def _fmt(v, metric):
    if v is None:
        return "-"
    return f"{v:.3f}" if metric in ("auroc", "macro_f1", "f1") else f"{v:.2f}"


def _cell(res: dict | None, metric: str) -> str:
    if not res:
        return ""
    st = res.get("status", "")
    if st != "ok":
        return st.split(":")[0]
    s = _fmt(res.get("value"), metric)
    if res.get("ci"):
        s += f" [{_fmt(res['ci'][0], metric)}, {_fmt(res['ci'][1], metric)}]"
    cov = res.get("coverage", 1)
    if cov < 1:
        s += f" (cov. {'>99.9%' if cov >= 0.999 else f'{cov:.1%}'})"
    return s


def _skill_cell(res: dict | None) -> str:
    if not res or res.get("status") != "ok" or res.get("skill") is None:
        return ""
    s = f"{res['skill']:+.2f}"
    if res.get("skill_ci"):
        s += f" [{res['skill_ci'][0]:+.2f}, {res['skill_ci'][1]:+.2f}]"
    return s


def render_markdown(report: dict) -> str:
    tasks = report["tasks"]
    enc_names = [e["name"] for e in report["encoders"]]
    base_order = ["subject-mean", "prior", "features", *DIRECT["hr"], *DIRECT["rr"]]
    present = {b for t in tasks.values() for b in t.get("baselines", {})}
    base_names = [b for b in base_order if b in present]
    # subject-mean and prior share one column
    cols = enc_names + (["trivial"] if {"subject-mean", "prior"} & present else []) + \
        [b for b in base_names if b not in ("subject-mean", "prior")]

    def get(t, c):
        if c in t.get("encoders", {}):
            return t["encoders"][c]
        if c == "trivial":
            return t.get("baselines", {}).get("subject-mean") or t.get("baselines", {}).get("prior")
        return t.get("baselines", {}).get(c)

    head = ["task", "metric", "subjects (windows)"] + [
        (f"`{c}`" if c in enc_names else "subject mean / prior" if c == "trivial" else DISPLAY.get(c, c))
        for c in cols]
    lines = ["# Probe results", "",
             f"Protocol: frozen embeddings -> StandardScaler -> ridge / logistic regression, "
             f"hyper-parameter by inner grouped CV, {report['protocol']['folds']}-fold grouped CV by subject, "
             f"metrics on pooled out-of-fold predictions, 95% CI by subject bootstrap "
             f"({report['protocol']['bootstrap']} rounds, seed {report['protocol']['seed']}). "
             "MAE: lower is better; AUROC / macro-F1: higher is better. Classical baselines run on "
             "the same preprocessed windows (0.5-8 Hz band-passed, z-scored).", "",
             "## Metric [95% CI]", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, t in tasks.items():
        metric = t.get("metric", "")
        n = f"{t['n_subjects']} ({t['n_windows']})" if "n_subjects" in t else ""
        if t.get("status") != "ok":
            lines.append(f"| {name} | {metric} | {n} | " + t.get("status", "") + " |" + " |" * (len(cols) - 1))
            continue
        lines.append(f"| {name} | {metric} | {n} | " + " | ".join(_cell(get(t, c), metric) for c in cols) + " |")
    lines += ["", "## Skill [95% CI]", "",
              "Regression: 1 - MAE / MAE(subject mean) on the same windows; binary: (AUROC - 0.5) / 0.5; "
              "multi-class: (macro-F1 - F1 of the majority class) / (1 - that). 0 = no better than "
              "the trivial predictor.", "",
              "| task | " + " | ".join(h for h in head[3:] if h != "subject mean / prior") + " |"]
    skill_cols = [c for c in cols if c != "trivial"]
    lines.append("|" + "---|" * (len(skill_cols) + 1))
    for name, t in tasks.items():
        if t.get("status") != "ok":
            continue
        lines.append(f"| {name} | " + " | ".join(_skill_cell(get(t, c)) for c in skill_cols) + " |")
    extra_rows = []
    for name, t in tasks.items():
        if t.get("status") == "ok" and t["task"]["kind"] == "binary":
            for c in enc_names + ["features"]:
                r = get(t, c)
                if r and r.get("status") == "ok":
                    f1ci = r.get("f1_ci")
                    extra_rows.append(f"| {name} | {c} | {r['metrics']['f1']:.3f}"
                                      + (f" [{f1ci[0]:.3f}, {f1ci[1]:.3f}]" if f1ci else "")
                                      + f" | {r['metrics']['auprc']:.3f} | {r['metrics']['prevalence']:.3f} |")
    if extra_rows:
        lines += ["", "## Binary tasks: F1 at p >= 0.5 (class-balanced logistic)", "",
                  "| task | method | F1 [95% CI] | AUPRC | prevalence |", "|---|---|---|---|---|"] + extra_rows
    notes = []
    for name, t in tasks.items():
        if t.get("excluded_seen_subjects"):
            who = ", ".join(f"`{e}` {v['n_subjects']}" for e, v in t.get("excluded_by_encoder", {}).items()
                            if v.get("n_subjects"))
            notes.append(f"- {name}: excluded {t['excluded_seen_subjects']} subjects "
                         f"({t['excluded_seen_windows']} windows) that an encoder was trained on ({who}); "
                         "every method is scored on the remaining subjects.")
        if t.get("status", "ok") != "ok":
            notes.append(f"- {name}: {t['status']}")
        for grp in ("encoders", "baselines"):
            for m, r in t.get(grp, {}).items():
                if r.get("status", "ok") != "ok":
                    notes.append(f"- {name} / {m}: {r['status']}")
                elif r.get("coverage", 1) < 1:
                    notes.append(f"- {name} / {DISPLAY.get(m, m)}: {r.get('note', '')}")
    for e in report["encoders"]:
        if e.get("info", {}).get("seen_caveat"):
            notes.append(f"- CAVEAT `{e['name']}`: {e['info']['seen_caveat']}")
        if not e.get("seen_known", True):
            notes.append(f"- WARNING `{e['name']}`: no run manifest says what it was trained on, so no "
                         "seen subjects could be excluded; where it was trained on one of these datasets "
                         "its results are leaked (re-run with --seen RUN).")
    if any(b.startswith("rr-") for b in present):
        notes.append("- RR baselines: RIIV is weak by design here (the 0.5 Hz high-pass of the model "
                     "input removes most of the respiratory baseline), and a 10 s window holds only "
                     "1-5 breaths, so every spectral RR estimate is coarse (0.1 Hz = 6 /min resolution).")
    if any(t.get("store_source") == "ppg-bp" for t in tasks.values()):
        notes.append("- PPG-BP windows are 2.1 s segments tiled to 10 s; classical methods analyse "
                     "one tile; labels are one value per subject (3 windows each).")
    if any(b.startswith(("hr-", "rr-")) for b in present):
        notes.append("- Direct estimators are scored where they produced a value; their skill uses the "
                     "subject-mean MAE on those same windows.")
    lines += ["", "## Notes", ""] + notes
    lines += ["", "## Encoders", ""] + [f"- `{e['name']}`: {json.dumps(e['info'], default=str)}"
                                        for e in report["encoders"]]
    return "\n".join(lines) + "\n"


def _plot(task: Task, arrays: dict, outdir: Path) -> str | None:
    from . import plots
    if not arrays or not task.plot:
        return None
    y, preds, kinds = arrays["y"], arrays["preds"], arrays["kinds"]
    show = {m: p for m, p in preds.items() if kinds[m] == "encoder"}
    order = ["features", *DIRECT["hr"], "rr-fusion", "rr-rifv", "prior"]
    for m in order:
        if m in preds and len(show) < plots.MAX_PANELS:
            show[DISPLAY.get(m, m) if m != "prior" else "prior"] = preds[m]
    path = outdir / f"{task.name}.png"
    title = f"{task.name} ({task.label}, {len(np.unique(arrays['subject']))} subjects, {len(y)} windows)"
    if task.plot in ("bland-altman", "scatter"):
        plots.plot_regression(title, task.unit, y, show, path, style=task.plot)
    elif task.plot == "roc":
        plots.plot_roc(title, y, show, path)
    elif task.plot == "confusion":
        classes = list(task.classes) or [str(i) for i in range(int(max(y)) + 1)]
        plots.plot_confusion(title, y, {m: p for m, p in show.items() if m != "prior"}, classes, path)
    return path.name


def _save_predictions(path: Path, arrays: dict) -> None:
    if not arrays:
        return
    data = {"y": arrays["y"], "subject": np.asarray(arrays["subject"]).astype(str)}
    for m, p in arrays["preds"].items():
        data[f"pred:{m}"] = p
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **data)


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="anyppg probe", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Frozen-embedding linear probes of PPG encoders on downstream tasks, with "
                    "classical baselines, grouped CV by subject and subject-bootstrap CIs.",
        epilog="tasks:\n" + describe_tasks() + "\n\ngroups: real, synthetic, all\n\n"
               "custom tasks on your own data (one per --task; also allowed in --tasks when the\n"
               "input has no comma):\n"
               "  custom:<source>:<input>:<label>:<kind>[:<threshold>]\n"
               "  source: a `anyppg data prepare --source`; kind: regression|binary|multiclass;\n"
               "  threshold: binary label = (label >= threshold)\n"
               "  e.g. --task custom:csv:/data/my_ppg:hr:regression --reader-opt fs=100\n\n"
               "encoders: a run folder (manifest.json + checkpoints/latest.pt), a .pt/.pth\n"
               "checkpoint ('ppg_encoder' + 'model_config', or a raw state dict with --model), or\n"
               "random:<model>[:seed] (the same architecture untrained: the control).\n"
               "Subjects an encoder was trained on (its manifest's 'trained_on_subjects', same\n"
               "dataset) are removed from every method of that task.\n\n"
               f"real datasets are read from $ANYPPG_SHARED_DATA or {shared_data_dir()}")
    p.add_argument("--encoder", action="append", default=[], help="encoder to probe (repeatable)")
    p.add_argument("--model", default=None, help="registry model of a raw state-dict checkpoint")
    p.add_argument("--seen", action="append", default=[],
                   help="a run folder or manifest.json whose 'store' + 'trained_on_subjects' count as "
                        "seen by every encoder (for bare checkpoints without a manifest; repeatable)")
    p.add_argument("--tasks", default="", help="comma-separated task names or groups (real, synthetic, all)")
    p.add_argument("--task", action="append", default=[], help="one more task (e.g. a custom: task)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--stores", default="stores", help="cache folder of prepared stores (default: stores)")
    p.add_argument("--reader-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option for the stores of custom tasks (data prepare --opt), e.g. "
                        "fs=100, ppg_column=pleth (repeatable)")
    p.add_argument("--spec", default="small", choices=sorted(SPECS), help="signal spec of the stores")
    p.add_argument("--synthetic-input", default=None,
                   help=f"generator parameters of the synthetic tasks (default {SYNTHETIC_DEFAULT})")
    p.add_argument("--baselines", default="all",
                   help="'all', 'none' or a comma list of features,hr,rr (the subject-mean / prior "
                        "reference is always computed)")
    p.add_argument("--folds", type=int, default=P.DEFAULT_FOLDS, help="outer grouped folds (default 5)")
    p.add_argument("--inner-folds", type=int, default=P.DEFAULT_FOLDS, help="inner grouped folds (default 5)")
    p.add_argument("--bootstrap", type=int, default=P.DEFAULT_BOOTSTRAP, help="bootstrap rounds (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="store preparation workers")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--list-tasks", action="store_true", help="print the task registry and exit")
    return p


def _parse_baselines(s: str) -> set[str]:
    known = {"features", "hr", "rr"}
    if s in ("all", ""):
        return known
    if s == "none":
        return set()
    got = {b.strip() for b in s.split(",") if b.strip()}
    bad = got - known
    if bad:
        raise ValueError(f"--baselines: unknown {sorted(bad)}; known: all, none, {', '.join(sorted(known))}")
    return got


def run(args) -> tuple[dict, int]:
    from .embedders import check_embedder_spec, load_embedder, seen_from_manifest
    tasks = resolve_tasks(args.tasks, args.task, args.synthetic_input)
    if not tasks:
        raise ValueError("no tasks: give --tasks (e.g. synthetic, real, bidmc-hr) or --task")
    args.baselines = _parse_baselines(args.baselines)
    for e in args.encoder:
        check_embedder_spec(e)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stores_dir = Path(args.stores)

    # Stores first (multiprocessing preparation before torch spins up its threads).
    store_of: dict[str, tuple[Path | None, str | None]] = {}
    for t in tasks:
        store_of[t.name] = ensure_store(t, stores_dir, args.spec, args.workers, args.reader_opt)

    embedders = []
    for e in args.encoder:
        emb = load_embedder(e, model=args.model, batch_size=args.batch_size, threads=args.threads,
                            device=args.device)
        reserved = {"subject-mean", "prior", "features", *DIRECT["hr"], *DIRECT["rr"]}
        if emb.name in reserved:
            emb.name = f"encoder:{emb.name}"
        base, k = emb.name, 2
        while any(x.name == emb.name for x in embedders):
            emb.name, k = f"{base}#{k}", k + 1
        embedders.append(emb)
        for sp in args.seen:
            mp = Path(sp) / "manifest.json" if Path(sp).is_dir() else Path(sp)
            if not mp.is_file():
                raise ValueError(f"--seen {sp}: no manifest.json")
            emb.seen = list(emb.seen) + seen_from_manifest(mp)
            emb.seen_known = True
        if not getattr(emb, "seen_known", True):
            log(f"WARNING: {emb.name}: no run manifest says what it was trained on; no subjects can be "
                "excluded (pass --seen RUN); results on its training data would be leaked")
        log(f"encoder {emb.name}: {emb.info}")

    report = {
        "probe_version": PROBE_VERSION, "stage": "probe",
        "protocol": {"folds": args.folds, "inner_folds": args.inner_folds, "bootstrap": args.bootstrap,
                     "seed": args.seed, "ridge_alphas": list(P.RIDGE_ALPHAS), "logistic_Cs": list(P.LOGISTIC_CS),
                     "ci": "95% percentile bootstrap over subjects",
                     "outer_cv": "GroupKFold (regression) / StratifiedGroupKFold (classification) by subject",
                     "classifier": "LogisticRegression(class_weight='balanced'), F1 at p >= 0.5",
                     "seen_subjects": "subjects any encoder was trained on (same dataset) are dropped for all methods",
                     "skill": {"regression": "1 - MAE/MAE_subject_mean", "binary": "(AUROC-0.5)/0.5",
                               "multiclass": "(macroF1 - F1_majority)/(1 - F1_majority)"}},
        "encoders": [{"name": e.name, "info": getattr(e, "info", {}),
                      "seen_known": bool(getattr(e, "seen_known", True)),
                      "seen": [s.to_dict() for s in (getattr(e, "seen", []) or [])]} for e in embedders],
        "baselines": sorted(args.baselines),
        "tasks": {},
    }
    cache: dict[Path, StoreData] = {}
    rc = 0
    for t in tasks:
        path, reason = store_of[t.name]
        log(f"task {t.name}")
        if path is None:
            report["tasks"][t.name] = {"task": t.to_dict(), "metric": t.metric, "status": reason,
                                       "encoders": {}, "baselines": {}}
            log(f"  {reason}")
            continue
        try:
            if path not in cache:
                cache[path] = StoreData(path)
            res, arrays = run_task(t, cache[path], embedders, args)
            if not args.no_plots and res.get("status") == "ok":
                res["plot"] = _plot(t, arrays, out)
            if arrays:
                (out / "predictions").mkdir(exist_ok=True)
                _save_predictions(out / "predictions" / f"{t.name}.npz", arrays)
        except Exception as e:   # one broken task must not hide the others' results
            import traceback
            traceback.print_exc()
            res = {"task": t.to_dict(), "metric": t.metric, "status": f"error: {type(e).__name__}: {e}",
                   "encoders": {}, "baselines": {}}
            rc = 1
        report["tasks"][t.name] = res
        log(f"  {res.get('status')}" + "".join(
            f"; {m} {r.get('value'):.3f}" for grp in ("encoders", "baselines")
            for m, r in res.get(grp, {}).items() if r.get("value") is not None))
    report["timings"] = {str(p): sd.timings for p, sd in cache.items()}
    report = _finite(report)
    atomic_write_json(out / "probe.json", report)
    atomic_write_text(out / "probe.md", render_markdown(report))
    metrics = {n: {m: r.get("value") for grp in ("encoders", "baselines") for m, r in t.get(grp, {}).items()}
               | {"status": t.get("status")} for n, t in report["tasks"].items()}
    inputs = {f"store:{n}": str(Path(t["store"]) / "index.json") for n, t in report["tasks"].items() if t.get("store")}
    for e in embedders:
        ck = getattr(e, "info", {}).get("checkpoint")
        if ck:
            inputs[f"encoder:{e.name}"] = ck
    cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()}
    write_manifest(out, "probe", cfg, inputs, metrics, extra={"probe": "probe.json", "report": "probe.md"})
    return report, rc


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_tasks:
        print(describe_tasks())
        return 0
    if not args.out:
        parser.error("--out is required")
    try:
        report, rc = run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"anyppg probe: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(render_markdown(report).split("## Skill")[0].rstrip())
    print(f"\nwrote {Path(args.out) / 'probe.json'}, probe.md and plots")
    return rc


if __name__ == "__main__":
    sys.exit(main())
