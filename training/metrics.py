"""Scores shared by the stages that evaluate (distillation, probes, benchmarks): one AUROC, one
MAE. Plain numpy, so they run on predictions from any runtime."""
from __future__ import annotations

import numpy as np


def mae(y, p) -> float:
    """Mean absolute error of predictions p against labels y (same units)."""
    return float(np.mean(np.abs(np.asarray(p, float) - np.asarray(y, float))))


def auroc(y, s) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties get half credit).
    y: (N,) 0/1 or bool; s: (N,) scores. NaN when y holds one class only."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, float)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s), float)
    # average ranks of ties
    _, first, counts = np.unique(ss, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))
