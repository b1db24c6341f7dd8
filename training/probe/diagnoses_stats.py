"""Per-code statistics of `anyppg probe --diagnoses`: one subject-level probe per code, its
AUROC with a bootstrap CI, the test of AUROC = 0.5 and false-discovery control across codes.

For one code, subjects are rows: features (S, D) pooled per subject, y (S,) 0/1. Three probes
run on the same outer folds (so they are paired): 'ppg' (the embedding), 'demo' (age and sex,
where known) and 'ppg+demo'; each is the probe protocol's logistic regression with C chosen by
inner cross-validation on the training subjects only (training.probe.protocol).

The test of AUROC = 0.5 uses the Mann-Whitney U statistic of the pooled out-of-fold PPG
scores (AUROC = U / (n1 n0)), but not its textbook null distribution: pooled cross-validated
scores are not independent of the labels (each fold's model was fitted on the other folds'
labels), and on embeddings with a few dominant directions (heart rate, say) the spread of the
pooled AUROC under the null is wider than U's iid null says. On a synthetic cohort of 240
subjects (12% prevalence, random-init net1d-small) the null AUROC's SD was 0.073 against
U's 0.057, so the textbook p-values were too small (a null code reached p = 5e-4). The null is
therefore taken from label permutations pushed through the same folds, refitting the logistic
model with each fold's chosen C (`null_permutations` rounds): p is the normal tail beyond the
permutations' mean and SD, or, with fewer than `permutation_below` positives (where AUROC is far
from normal), the permutation p (1 + #null >= observed) / (1 + rounds). The textbook U p-value is
kept as `p_mwu` for comparison. Benjamini-Hochberg then controls the false-discovery rate across
codes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from . import protocol as P

METHODS = ("ppg", "demo", "ppg+demo")


@dataclass(frozen=True)
class ProbeSettings:
    """What one code's probe needs of the stage config."""

    folds: int = 5
    inner_folds: int = 5
    grid: tuple[float, ...] = P.LOGISTIC_CS
    bootstrap: int = 500
    null_permutations: int = 100
    permutation_below: int = 30
    seed: int = 0


@dataclass
class CodeResult:
    """One code's probe. auroc / ci per method (None where the method did not run)."""

    n_pos: int
    n_neg: int
    status: str = "ok"
    auroc: dict[str, float | None] = field(default_factory=dict)
    ci: dict[str, list[float] | None] = field(default_factory=dict)
    p: float | None = None
    p_method: str = ""
    p_mwu: float | None = None                 # textbook Mann-Whitney p (iid scores assumed)
    null_mean: float | None = None             # permutation null of the pooled CV AUROC
    null_sd: float | None = None
    delta: float | None = None                 # AUROC(ppg+demo) - AUROC(demo)
    delta_ci: list[float] | None = None
    scores: np.ndarray | None = None           # (S,) out-of-fold PPG scores


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of (K,) p; NaN entries stay NaN and do
    not count towards K."""
    p = np.asarray(p, float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def mwu_pvalue(y, s) -> float:
    """Textbook one-sided Mann-Whitney p of AUROC > 0.5 for scores s (S,) of labels y (S,)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, float)
    return float(stats.mannwhitneyu(s[y], s[~y], alternative="greater", method="asymptotic").pvalue)


def null_aurocs(X, y, folds, params, impute: bool, rounds: int, seed: int) -> np.ndarray:
    """(rounds,) pooled out-of-fold AUROCs of the logistic probe on permuted labels, on the
    given folds with each fold's C held fixed (params)."""
    rng = np.random.default_rng(seed + 7919)
    out = np.full(rounds, np.nan)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for b in range(rounds):
            yp = rng.permutation(y)
            s = np.full(len(y), np.nan)
            for (tr, te), c in zip(folds, params):
                if yp[tr].min() == yp[tr].max():
                    continue
                m = P.make_model("binary", c, impute).fit(X[tr], yp[tr])
                s[te] = m.predict_proba(X[te])[:, list(m[-1].classes_).index(1)]
            ok = np.isfinite(s)
            out[b] = P.auroc(yp[ok], s[ok])
    return out[np.isfinite(out)]


def calibrated_pvalue(auc: float, null: np.ndarray, n_pos: int, permutation_below: int) -> tuple[float, str]:
    """(p, method) of AUROC = auc against its permutation null (see the module docstring)."""
    if len(null) < 2:
        return float("nan"), "no null"
    if n_pos < permutation_below:
        return float((1 + np.sum(null >= auc)) / (1 + len(null))), "permutation"
    sd = float(np.std(null, ddof=1))
    return float(stats.norm.sf((auc - float(np.mean(null))) / max(sd, 1e-9))), "permutation-normal"


def paired_delta_ci(y, a, b, rounds: int, seed: int, level: float = 0.95) -> list[float] | None:
    """Bootstrap CI over subjects of AUROC(a) - AUROC(b) on the same resamples."""
    rng = np.random.default_rng(seed)
    n = len(y)
    d = []
    for idx in rng.integers(0, n, size=(rounds, n)):
        yr = y[idx]
        if yr.min() == yr.max():
            continue
        d.append(P.auroc(yr, a[idx]) - P.auroc(yr, b[idx]))
    if not d:
        return None
    lo = (1 - level) / 2 * 100
    return [float(np.percentile(d, lo)), float(np.percentile(d, 100 - lo))]


def probe_code(ppg: np.ndarray, demo: np.ndarray | None, y: np.ndarray,
               st: ProbeSettings) -> CodeResult:
    """Probe one code. ppg (S, D) pooled embeddings, demo (S, 2) age/sex with NaN where
    unknown (None: no demographics at all), y (S,) 0/1."""
    y = np.asarray(y, int)
    groups = np.arange(len(y))              # one row per subject
    res = CodeResult(int(y.sum()), int(len(y) - y.sum()))
    try:
        folds = P.outer_folds(y, groups, "binary", st.folds, st.seed)
    except ValueError as e:
        res.status = f"degenerate: {e}"
        return res
    reason = P.degenerate_reason(y, groups, "binary", folds)
    if reason:
        res.status = reason
        return res
    feats = {"ppg": (ppg, False)}
    if demo is not None and np.isfinite(demo).any():
        feats["demo"] = (demo, True)
        feats["ppg+demo"] = (np.concatenate([ppg, demo], axis=1), True)
    preds = {name: P.cross_val_predict(X, y, groups, "binary", folds, st.inner_folds, st.seed,
                                       impute=impute, grid=st.grid)
             for name, (X, impute) in feats.items()}
    scores = {name: pr.pred for name, pr in preds.items()}
    boot = P.bootstrap("binary", y, groups, scores, n_rounds=st.bootstrap, seed=st.seed)
    for name in METHODS:
        res.auroc[name] = P.auroc(y, scores[name]) if name in scores else None
        res.ci[name] = boot[name]["ci"] if name in scores else None
    res.p_mwu = mwu_pvalue(y, scores["ppg"])
    null = null_aurocs(ppg, y, folds, preds["ppg"].params, False, st.null_permutations, st.seed)
    if len(null) > 1:
        res.null_mean, res.null_sd = float(np.mean(null)), float(np.std(null, ddof=1))
    res.p, res.p_method = calibrated_pvalue(res.auroc["ppg"], null, res.n_pos, st.permutation_below)
    if "demo" in scores:
        res.delta = res.auroc["ppg+demo"] - res.auroc["demo"]
        res.delta_ci = paired_delta_ci(y, scores["ppg+demo"], scores["demo"], st.bootstrap, st.seed)
    res.scores = scores["ppg"]
    return res
