"""One probe task: the same windows and grouped folds for every encoder and baseline, scored
with the protocol's metrics and one shared subject bootstrap."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from anyppg.stage import one_line
from edge_runtime.spec import SpecMismatch

from . import protocol as P
from .stores import StoreData
from .baselines import IMPUTED
from .tasks import PRIMARY_METRIC, Task


def spec_mismatch(emb, store_spec) -> str | None:
    """A skip status when the encoder's signal spec is not the store's (None: compatible)."""
    s = getattr(emb, "spec", None)
    if s is None:
        return None
    try:
        s.check_compatible(store_spec, "the store")
    except SpecMismatch as e:
        return f"skipped: {e} than the encoder"
    return None


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


@dataclass
class _Scores:
    """Every method's pooled out-of-fold predictions of one task, for the plot, the predictions
    file and the shared bootstrap."""
    preds: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=dict)

    def add(self, name: str, kind: str, pred, label=None) -> None:
        self.preds[name], self.kinds[name] = pred, kind
        if label is not None:
            self.labels[name] = label


def _exclude_seen(out: dict, sd: StoreData, embedders: list, valid: np.ndarray) -> np.ndarray:
    """Rows to score: labelled windows of subjects no encoder was trained on (the union over
    all encoders, so every method shares the windows)."""
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
    return np.flatnonzero(keep)


def _folds(task: Task, y, groups, opts) -> tuple[list | None, str | None]:
    folds = None
    try:
        folds = P.outer_folds(y, groups, task.kind, opts.folds, opts.seed) if len(y) else None
    except ValueError:
        pass
    reason = P.degenerate_reason(y, groups, task.kind, folds)
    if reason is None and folds is None:
        reason = "degenerate: cannot form grouped folds"
    return folds, reason


def _score_encoders(out, task, sd, embedders, rows, y, groups, folds, opts, n_classes, ref_skill, sc):
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
            out["encoders"][emb.name] = {"status": f"error: {one_line(e)}"}
            continue
        res = _summarise(task.kind, emb.name, y, pr.pred, pr.label, groups, ref_skill, n_classes, pr.params)
        res["embed_dim"] = int(Z.shape[1])
        res["fit_s"] = round(time.perf_counter() - t, 2)
        out["encoders"][emb.name] = res
        sc.add(emb.name, "encoder", pr.pred, pr.label)


def _score_baselines(out, task, sd, rows, y, groups, folds, opts, n_classes, ref, ref_skill, sc):
    if "features" in opts.baselines:
        F = sd.features()[rows]
        pr = P.cross_val_predict(F, y, groups, task.kind, folds, opts.inner_folds, opts.seed,
                                 impute=True, n_classes=max(n_classes, 2))
        out["baselines"]["features"] = _summarise(task.kind, "features", y, pr.pred, pr.label, groups,
                                                  ref_skill, n_classes, pr.params)
        sc.add("features", "baseline", pr.pred, pr.label)
    if task.kind != "regression":
        return
    for fam in task.baselines:
        if fam not in opts.baselines:
            continue
        for name, est in sd.direct(fam).items():
            p = est[rows].astype(float)
            out["baselines"][name] = _summarise(task.kind, name, y, p, None, groups, ref.pred,
                                                n_classes, note="direct estimate, no training")
            sc.add(name, "baseline", p)
            # the same estimator with its failures counted: where it gave no value, the
            # training-fold mean (the subject-mean predictor), so it is scored on every window
            imp = np.where(np.isfinite(p), p, ref.pred)
            out["baselines"][name + IMPUTED] = _summarise(
                task.kind, name + IMPUTED, y, imp, None, groups, ref.pred, n_classes,
                note=f"failures ({int((~np.isfinite(p)).sum())}) imputed with the training mean")
            sc.add(name + IMPUTED, "baseline", imp)


def _bootstrap(out, task, y, groups, sc: _Scores, ref_skill, opts, n_classes) -> None:
    """One bootstrap for all methods: identical subject resamples."""
    ok_methods = {m: p for m, p in sc.preds.items()
                  if (out["encoders"].get(m) or out["baselines"].get(m) or {}).get("status") == "ok"}
    reference = {m: ref_skill for m in ok_methods} if ref_skill is not None else None
    extra = {m: sc.labels[m] for m in ok_methods if m in sc.labels} if task.kind == "binary" else None
    bs = P.bootstrap(task.kind, y, groups, ok_methods, reference, opts.bootstrap, opts.seed,
                     max(n_classes, 2), extra)
    for m, b in bs.items():
        res = out["encoders"].get(m) or out["baselines"][m]
        res["ci"] = b["ci"]
        res["skill_ci"] = b["skill_ci"]
        if "f1_ci" in b:
            res["f1_ci"] = b["f1_ci"]
        res["bootstrap_rounds"] = b["rounds"]
    out["paired"] = P.paired_bootstrap(task.kind, y, groups, ok_methods, _pairs(out, ok_methods),
                                       opts.bootstrap, opts.seed, max(n_classes, 2))


def _pairs(out: dict, methods: dict) -> list[tuple[str, str]]:
    """(method, reference) pairs for paired differences: every method against every encoder
    and against the trivial predictor."""
    refs = [m for m in out["encoders"] if m in methods] + \
        [m for m in ("subject-mean", "prior") if m in methods]
    return [(m, r) for r in refs for m in methods if m != r]


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
    rows = _exclude_seen(out, sd, embedders, valid)
    y = y_all[rows]
    groups = sd.subjects[rows]
    out["n_windows"] = int(len(rows))
    out["n_subjects"] = int(len(np.unique(groups)))
    if task.kind != "regression":
        out["class_counts"] = np.bincount(y, minlength=max(n_classes, 2)).tolist()
        out["class_subjects"] = [int(len(np.unique(groups[y == c]))) for c in range(max(n_classes, 2))]
    folds, reason = _folds(task, y, groups, opts)
    if reason:
        out["status"] = reason
        return out, {}
    out["n_folds"] = len(folds)

    ref = P.subject_mean_predict(y, groups, task.kind, folds, max(n_classes, 2))
    ref_name = "subject-mean" if task.kind == "regression" else "prior"
    ref_skill = ref.pred if task.kind != "binary" else None
    sc = _Scores()
    out["baselines"][ref_name] = _summarise(task.kind, ref_name, y, ref.pred, ref.label, groups,
                                            ref_skill, n_classes,
                                            note=("AUROC 0.5 by construction" if task.kind == "binary" else None))
    sc.add(ref_name, "baseline", ref.pred, ref.label)
    _score_encoders(out, task, sd, embedders, rows, y, groups, folds, opts, n_classes, ref_skill, sc)
    _score_baselines(out, task, sd, rows, y, groups, folds, opts, n_classes, ref, ref_skill, sc)
    _bootstrap(out, task, y, groups, sc, ref_skill, opts, n_classes)
    out["status"] = "ok"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out, {"y": y, "subject": groups, "preds": sc.preds, "kinds": sc.kinds, "proba": None}
