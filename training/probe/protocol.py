"""The probe protocol: grouped cross-validated linear probes and subject-bootstrap CIs.

AnyPPG's downstream protocol (frozen, standardised embeddings; ridge with alpha chosen by CV
on MAE; logistic regression with C chosen by CV on AUROC; 500 bootstrap rounds), made stricter:

* Outer evaluation by subject: `outer_folds` puts every subject in exactly one test fold
  (GroupKFold for regression, StratifiedGroupKFold for classification, both shuffled with a
  seed; 5 folds or as many as there are subjects). Every window is predicted by a model fitted
  on other subjects only; the out-of-fold predictions are pooled and the metric is computed on
  the pooled predictions.
* Hyper-parameters are chosen *inside* each outer training fold by an inner grouped CV over the
  training subjects (`inner_select`), never on the test subjects.
* Scaling (and, for hand-made features, median imputation) is fitted on the training fold
  only (a sklearn Pipeline).
* 95% CIs by bootstrap over subjects (`bootstrap`): resample subjects with replacement, take
  all their windows, recompute the metric on the pooled predictions; the same subject draws are
  used for every method of a task, so methods are compared on identical resamples.
* Degenerate targets (one class overall, one class in a training fold, fewer than 2 subjects)
  are reported as a status string, never as a NaN metric.

Kinds: 'regression' (MAE), 'binary' (AUROC; F1 at p >= 0.5), 'multiclass' (macro-F1).
Classifiers use class_weight='balanced' so that a 0.5 threshold / argmax is meaningful under
the strong class imbalance of AF and rhythm data.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from training.metrics import auroc, mae  # noqa: F401  (the probe protocol's metrics)

RIDGE_ALPHAS = tuple(10.0 ** np.arange(-2, 6))      # 0.01 .. 1e5
LOGISTIC_CS = tuple(10.0 ** np.arange(-4, 3))       # 1e-4 .. 100
DEFAULT_FOLDS = 5
DEFAULT_BOOTSTRAP = 500

HIGHER_IS_BETTER = {"mae": False, "rmse": False, "auroc": True, "f1": True, "macro_f1": True,
                    "accuracy": True, "balanced_accuracy": True, "auprc": True}


# --------------------------------------------------------------------------- fast metrics
def binary_f1(y, yhat) -> float:
    y = np.asarray(y).astype(bool)
    yhat = np.asarray(yhat).astype(bool)
    tp = np.sum(y & yhat)
    denom = 2 * tp + np.sum(~y & yhat) + np.sum(y & ~yhat)
    return float(2 * tp / denom) if denom else 0.0


def confusion(y, yhat, k: int) -> np.ndarray:
    return np.bincount(np.asarray(y, int) * k + np.asarray(yhat, int), minlength=k * k).reshape(k, k)


def macro_f1(y, yhat, k: int) -> float:
    """Macro-F1 over the classes present in y or yhat (as sklearn's f1_score(average='macro'))."""
    cm = confusion(y, yhat, k)
    tp = np.diag(cm).astype(float)
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    present = (cm.sum(0) + cm.sum(1)) > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def primary_metric(kind: str, y, pred, k: int = 2) -> float:
    """The task's metric of predictions `pred` (regression values, binary scores, class ids)."""
    if kind == "regression":
        return mae(y, pred)
    if kind == "binary":
        return auroc(y, pred)
    return macro_f1(y, pred, k)


def metrics(kind: str, y, pred, n_classes: int = 2, label=None) -> dict:
    """All reported metrics of pooled predictions.

    regression: pred = values. binary: pred = score of class 1, label = 0/1 decisions.
    multiclass: pred = class ids.
    """
    y = np.asarray(y)
    out: dict = {"n": int(len(y))}
    if kind == "regression":
        d = np.asarray(pred, float) - y.astype(float)
        out.update(mae=float(np.mean(np.abs(d))), rmse=float(np.sqrt(np.mean(d ** 2))),
                   bias=float(d.mean()), sd_diff=float(d.std(ddof=1)) if len(d) > 1 else 0.0)
        out["loa"] = [out["bias"] - 1.96 * out["sd_diff"], out["bias"] + 1.96 * out["sd_diff"]]
        sp = np.std(pred)
        out["pearson_r"] = (float(np.corrcoef(pred, y)[0, 1]) if sp > 0 and np.std(y) > 0 else None)
    elif kind == "binary":
        lab = (np.asarray(pred) >= 0.5) if label is None else np.asarray(label).astype(bool)
        yb = y.astype(bool)
        out.update(auroc=auroc(y, pred), f1=binary_f1(y, lab),
                   sensitivity=float(lab[yb].mean()) if yb.any() else None,
                   specificity=float((~lab[~yb]).mean()) if (~yb).any() else None,
                   prevalence=float(yb.mean()))
        from sklearn.metrics import average_precision_score
        out["auprc"] = float(average_precision_score(yb, pred))
    else:
        yhat = np.asarray(pred, int)
        cm = confusion(y, yhat, n_classes)
        tp = np.diag(cm).astype(float)
        denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
        f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
        recall = np.divide(tp, cm.sum(1), out=np.zeros(n_classes), where=cm.sum(1) > 0)
        present = cm.sum(1) > 0
        out.update(macro_f1=macro_f1(y, yhat, n_classes), accuracy=float((yhat == y).mean()),
                   balanced_accuracy=float(recall[present].mean()),
                   per_class_f1=[float(v) for v in f1], class_counts=[int(c) for c in cm.sum(1)],
                   confusion=cm.tolist())
    return out


# --------------------------------------------------------------------------- folds
def n_folds_for(groups, n_folds: int = DEFAULT_FOLDS) -> int:
    return int(min(n_folds, len(np.unique(groups))))


def outer_folds(y, groups, kind: str, n_folds: int = DEFAULT_FOLDS, seed: int = 0):
    """[(train_idx, test_idx)] grouped by subject; every window is in exactly one test fold."""
    groups = np.asarray(groups)
    k = n_folds_for(groups, n_folds)
    if k < 2:
        raise ValueError("grouped CV needs at least 2 subjects")
    X0 = np.zeros((len(groups), 1))
    if kind == "regression":
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in splitter.split(X0, y, groups)]
    # Stratify on the class (multi-class ids as they are), still grouped by subject.
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # "least populated class" warnings
        return [(tr, te) for tr, te in splitter.split(X0, np.asarray(y, int), groups)]


def degenerate_reason(y, groups, kind: str, folds=None) -> str | None:
    """None if the task can be probed, else 'degenerate: <why>'."""
    y = np.asarray(y)
    n_sub = len(np.unique(groups))
    if len(y) == 0:
        return "degenerate: no windows with a label"
    if n_sub < 2:
        return f"degenerate: only {n_sub} subject (grouped CV needs at least 2)"
    if kind == "regression":
        if np.ptp(y) == 0:
            return f"degenerate: constant label ({y[0]:g}) in all {len(y)} windows"
        return None
    classes = np.unique(y)
    if len(classes) < 2:
        return f"degenerate: only one class ({classes[0]:g}) among {len(y)} windows"
    for i, (tr, _te) in enumerate(folds or []):
        c = np.unique(y[tr])
        if len(c) < 2:
            subj = {int(k): len(np.unique(np.asarray(groups)[y == k])) for k in classes}
            return (f"degenerate: training fold {i + 1} holds only class {c[0]:g} "
                    f"(subjects per class: {subj})")
    return None


# --------------------------------------------------------------------------- models
def make_model(kind: str, param: float, impute: bool = False) -> Pipeline:
    steps = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []
    steps.append(StandardScaler())
    if kind == "regression":
        steps.append(Ridge(alpha=param))
    else:
        steps.append(LogisticRegression(C=param, class_weight="balanced", max_iter=300, tol=1e-3))
    return make_pipeline(*steps)


def _fit(model: Pipeline, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(X, y)
    return model


def _scores(kind: str, model: Pipeline, X, n_classes: int):
    """Regression: values. Binary: P(class 1). Multiclass: (N, K) probabilities in label order."""
    if kind == "regression":
        return model.predict(X)
    proba = model.predict_proba(X)
    cls = model[-1].classes_.astype(int)
    if kind == "binary":
        return proba[:, list(cls).index(1)] if 1 in cls else np.zeros(len(X))
    full = np.zeros((len(X), n_classes))
    full[:, cls] = proba
    return full


def _score_for_selection(kind, y, s, n_classes):
    if kind == "regression":
        return -mae(y, s)
    if kind == "binary":
        return auroc(y, s)
    return macro_f1(y, np.argmax(s, 1), n_classes)


def inner_select(X, y, groups, kind: str, n_folds: int = DEFAULT_FOLDS, seed: int = 0,
                 grid=None, impute: bool = False, n_classes: int = 2) -> tuple[float, list]:
    """Choose alpha (ridge, on MAE) or C (logistic, on AUROC / macro-F1) by grouped CV over
    the given (training) subjects only. Returns (best, mean score per grid value).

    Ties go to the stronger regularisation. Folds whose training part has one class are
    skipped, and so are validation folds where the score is undefined; if no fold is usable
    the middle of the grid (alpha 1 / C 1... the default) is returned.
    """
    grid = list(grid or (RIDGE_ALPHAS if kind == "regression" else LOGISTIC_CS))
    # Stronger regularisation first: large alpha, small C.
    grid = sorted(grid, reverse=(kind == "regression"))
    default = 1.0
    if len(np.unique(groups)) < 2:
        return default, []
    try:
        folds = outer_folds(y, groups, kind, n_folds, seed + 1)
    except ValueError:
        return default, []
    scores = np.full((len(folds), len(grid)), np.nan)
    for fi, (tr, va) in enumerate(folds):
        if kind != "regression" and len(np.unique(y[tr])) < 2:
            continue
        for j, p in enumerate(grid):
            m = _fit(make_model(kind, p, impute), X[tr], y[tr])
            scores[fi, j] = _score_for_selection(kind, y[va], _scores(kind, m, X[va], n_classes), n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(scores, axis=0)
    if not np.isfinite(mean).any():
        return default, [None] * len(grid)
    best = grid[int(np.nanargmax(mean))]          # first max = strongest regularisation
    return float(best), [None if not np.isfinite(v) else float(v) for v in mean]


@dataclass
class Prediction:
    """Pooled out-of-fold predictions of one method on one task.

    pred:   regression values / binary P(1) / multiclass class ids, (N,); NaN = no prediction
    proba:  multiclass (N, K) probabilities (None otherwise)
    params: the hyper-parameter chosen in each outer fold
    """

    pred: np.ndarray
    proba: np.ndarray | None = None
    params: list = field(default_factory=list)
    label: np.ndarray | None = None     # binary decisions (p >= 0.5)


def cross_val_predict(X, y, groups, kind: str, folds, inner_folds: int = DEFAULT_FOLDS,
                      seed: int = 0, impute: bool = False, n_classes: int = 2,
                      grid=None, blas_threads: int | None = 1) -> Prediction:
    """Out-of-fold predictions of the linear probe on features X (N, D).

    For every outer fold: choose the hyper-parameter by inner grouped CV on the training
    subjects, refit scaler + model on the whole training fold, predict the test fold.
    The caller checks `degenerate_reason` first (a one-class training fold raises here).
    blas_threads: BLAS/OpenMP threads during the fits (None: library default). These problems
    are small; several threads contend (badly so beside torch's pool or other jobs), so 1.
    """
    if blas_threads is None:
        return _cross_val_predict(X, y, groups, kind, folds, inner_folds, seed, impute, n_classes, grid)
    with threadpool_limits(limits=int(blas_threads)):
        return _cross_val_predict(X, y, groups, kind, folds, inner_folds, seed, impute, n_classes, grid)


def _cross_val_predict(X, y, groups, kind, folds, inner_folds, seed, impute, n_classes, grid) -> Prediction:
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    groups = np.asarray(groups)
    if not impute and not np.all(np.isfinite(X)):
        raise ValueError("features contain NaN/inf (an embedder must return finite values)")
    pred = np.full(len(y), np.nan)
    proba = np.zeros((len(y), n_classes)) if kind == "multiclass" else None
    params = []
    yt = y.astype(float) if kind == "regression" else y.astype(int)
    for fi, (tr, te) in enumerate(folds):
        if kind != "regression" and len(np.unique(yt[tr])) < 2:
            raise ValueError(f"training fold {fi + 1} holds one class only")
        best, _ = inner_select(X[tr], yt[tr], groups[tr], kind, inner_folds, seed + 17 * fi,
                               grid, impute, n_classes)
        params.append(best)
        m = _fit(make_model(kind, best, impute), X[tr], yt[tr])
        s = _scores(kind, m, X[te], n_classes)
        if kind == "multiclass":
            proba[te] = s
            pred[te] = np.argmax(s, 1)
        else:
            pred[te] = s
    label = (pred >= 0.5) if kind == "binary" else None
    return Prediction(pred, proba, params, label)


def subject_mean_predict(y, groups, kind: str, folds, n_classes: int = 2) -> Prediction:
    """The demographics-free reference: for each held-out subject, the mean label of the
    training subjects (mean of per-subject means, every subject weighted equally).

    Binary: one constant score for all windows (AUROC 0.5 by construction) and the training
    majority class as decision. Multiclass: the training majority class (windows).
    """
    y = np.asarray(y, float)
    groups = np.asarray(groups)
    pred = np.full(len(y), np.nan)
    label = np.zeros(len(y), bool) if kind == "binary" else None
    for tr, te in folds:
        if kind == "regression":
            subj = np.unique(groups[tr])
            means = [y[tr][groups[tr] == s].mean() for s in subj]
            pred[te] = float(np.mean(means))
        elif kind == "binary":
            # The decision is the training majority; the score is one constant for every
            # window (fold-wise prevalences would anti-correlate with the test folds' labels
            # once pooled and push AUROC below 0.5).
            label[te] = float(np.mean(y[tr])) > 0.5
            pred[te] = 0.5
        else:
            pred[te] = np.argmax(np.bincount(y[tr].astype(int), minlength=n_classes))
    return Prediction(pred, None, [], label)


# --------------------------------------------------------------------------- bootstrap
def skill(kind: str, value: float, reference: float | None) -> float | None:
    """Share of the possible improvement over the trivial predictor that a method achieves.

    regression: 1 - MAE / MAE_subject_mean; binary: (AUROC - 0.5) / 0.5;
    multiclass: (macroF1 - macroF1_majority) / (1 - macroF1_majority).
    """
    if value is None or not np.isfinite(value):
        return None
    if kind == "regression":
        return None if not reference else float(1.0 - value / reference)
    if kind == "binary":
        return float((value - 0.5) / 0.5)
    if reference is None or reference >= 1:
        return None
    return float((value - reference) / (1.0 - reference))


def bootstrap(kind: str, y, groups, preds: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None,
              n_rounds: int = DEFAULT_BOOTSTRAP, seed: int = 0, n_classes: int = 2,
              extra: dict[str, np.ndarray] | None = None, level: float = 0.95) -> dict:
    """Subject-level bootstrap of the primary metric (and skill) of several methods at once.

    preds:     method -> pooled predictions (N,) on the same windows (NaN = none; a method
               that covers only part of the windows is evaluated on its covered windows of each
               resample)
    reference: method -> reference predictions for its skill (regression: subject-mean
               predictions; multiclass: the majority-class predictor); the skill of each round
               uses the same windows as the method
    extra:     method -> binary decisions, to bootstrap F1 as well
    Returns {method: {'ci': [lo, hi], 'skill_ci': [lo, hi] | None, 'f1_ci': ..., 'rounds': n}}.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    subj, inv = np.unique(groups, return_inverse=True)
    by_subject = [np.flatnonzero(inv == i) for i in range(len(subj))]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(subj), size=(n_rounds, len(subj)))
    reference = reference or {}
    extra = extra or {}
    vals = {m: [] for m in preds}
    skills = {m: [] for m in preds}
    f1s = {m: [] for m in extra}
    for r in range(n_rounds):
        idx = np.concatenate([by_subject[i] for i in draws[r]])
        yr = y[idx]
        if kind != "regression" and len(np.unique(yr)) < 2:
            continue
        for m, p in preds.items():
            pr = p[idx]
            ok = np.isfinite(pr)
            if ok.sum() == 0 or (kind != "regression" and len(np.unique(yr[ok])) < 2):
                continue
            v = primary_metric(kind, yr[ok], pr[ok], n_classes)
            vals[m].append(v)
            ref = reference.get(m)
            rv = primary_metric(kind, yr[ok], ref[idx][ok], n_classes) if ref is not None else None
            s = skill(kind, v, rv)
            if s is not None and np.isfinite(s):
                skills[m].append(s)
        for m, lab in extra.items():
            f1s[m].append(binary_f1(yr, lab[idx]))
    a = (1 - level) / 2 * 100
    out = {}
    for m in preds:
        v = np.asarray(vals[m])
        sk = np.asarray(skills[m])
        out[m] = {"ci": [float(np.percentile(v, a)), float(np.percentile(v, 100 - a))] if len(v) else None,
                  "skill_ci": [float(np.percentile(sk, a)), float(np.percentile(sk, 100 - a))] if len(sk) else None,
                  "rounds": int(len(v))}
        if m in f1s and f1s[m]:
            f = np.asarray(f1s[m])
            out[m]["f1_ci"] = [float(np.percentile(f, a)), float(np.percentile(f, 100 - a))]
    return out


def paired_bootstrap(kind: str, y, groups, preds: dict[str, np.ndarray], pairs: list[tuple[str, str]],
                     n_rounds: int = DEFAULT_BOOTSTRAP, seed: int = 0, n_classes: int = 2,
                     level: float = 0.95) -> list[dict]:
    """Paired differences `method - reference` of the primary metric, on the windows both
    covered, with a 95% CI from the same subject resamples as `bootstrap` (same seed, same
    draws). Overlapping per-method CIs say little about a difference; this CI does.

    Returns [{'method', 'reference', 'diff', 'ci', 'n_windows', 'rounds', 'verdict'}], where
    verdict is 'better' / 'worse' (the CI excludes 0, in the metric's good direction) or 'tie'.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    subj, inv = np.unique(groups, return_inverse=True)
    by_subject = [np.flatnonzero(inv == i) for i in range(len(subj))]
    draws = np.random.default_rng(seed).integers(0, len(subj), size=(n_rounds, len(subj)))
    higher = HIGHER_IS_BETTER[{"regression": "mae", "binary": "auroc"}.get(kind, "macro_f1")]
    a = (1 - level) / 2 * 100
    out = []
    for m, r in pairs:
        both = np.isfinite(preds[m]) & np.isfinite(preds[r])
        if both.sum() == 0 or (kind != "regression" and len(np.unique(y[both])) < 2):
            continue
        point = primary_metric(kind, y[both], preds[m][both], n_classes) - \
            primary_metric(kind, y[both], preds[r][both], n_classes)
        diffs = []
        for d in draws:
            idx = np.concatenate([by_subject[i] for i in d])
            idx = idx[both[idx]]
            if len(idx) == 0 or (kind != "regression" and len(np.unique(y[idx])) < 2):
                continue
            diffs.append(primary_metric(kind, y[idx], preds[m][idx], n_classes)
                         - primary_metric(kind, y[idx], preds[r][idx], n_classes))
        if not diffs:
            continue
        lo, hi = float(np.percentile(diffs, a)), float(np.percentile(diffs, 100 - a))
        good_up = lo > 0 if higher else hi < 0
        good_down = hi < 0 if higher else lo > 0
        out.append({"method": m, "reference": r, "diff": float(point), "ci": [lo, hi],
                    "n_windows": int(both.sum()), "rounds": len(diffs),
                    "verdict": "better" if good_up else "worse" if good_down else "tie"})
    return out
