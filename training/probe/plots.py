"""Probe figures (matplotlib, Agg backend, written atomically).

    bland-altman   HR / RR tasks: mean of (prediction, reference) vs difference, bias and 95%
                   limits of agreement, one panel per method
    scatter        BP and other regression: predicted vs reference with the identity line
    roc            binary tasks: ROC curves of all methods on one axis (AUROC in the legend)
    confusion      multi-class: row-normalised confusion matrix per method
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from anyppg.runs import atomic_path

MAX_PANELS = 6
MAX_POINTS = 4000


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _finish_grid(fig, axes, used: int, title: str, path: Path) -> Path:
    """Blank the unused panels of a grid figure, title it and write it atomically."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    _plt().close(fig)
    return path


def _thin(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_POINTS, replace=False))


def _cov(c: float) -> str:
    return ">99.9%" if c >= 0.999 else f"{c:.1%}"


def _grid(n):
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    return rows, cols


def plot_regression(title: str, unit: str, y: np.ndarray, preds: dict[str, np.ndarray], path: Path,
                    style: str = "scatter") -> Path:
    plt = _plt()
    items = list(preds.items())[:MAX_PANELS]
    rows, cols = _grid(len(items))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    lo, hi = np.nanmin(y), np.nanmax(y)
    for ax, (name, p) in zip(axes.flat, items):
        ok = np.isfinite(p)
        yy, pp = y[ok], p[ok]
        sel = _thin(len(yy))
        if style == "bland-altman":
            m, d = (pp + yy) / 2, pp - yy
            bias, sd = d.mean(), d.std(ddof=1) if len(d) > 1 else 0.0
            ax.scatter(m[sel], d[sel], s=4, alpha=0.35)
            for v, ls in ((bias, "-"), (bias - 1.96 * sd, "--"), (bias + 1.96 * sd, "--")):
                ax.axhline(v, color="k", ls=ls, lw=0.9)
            ax.set_xlabel(f"mean of prediction and reference ({unit})")
            ax.set_ylabel(f"prediction - reference ({unit})")
            ax.set_title(f"{name}\nbias {bias:+.2f}, LoA [{bias - 1.96 * sd:.1f}, {bias + 1.96 * sd:.1f}]"
                         + (f", {_cov(ok.mean())} covered" if not ok.all() else ""), fontsize=9)
        else:
            ax.scatter(yy[sel], pp[sel], s=4, alpha=0.35)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.9)
            mae = np.mean(np.abs(pp - yy)) if len(yy) else np.nan
            ax.set_xlabel(f"reference ({unit})")
            ax.set_ylabel(f"prediction ({unit})")
            ax.set_title(f"{name}\nMAE {mae:.2f}", fontsize=9)
    return _finish_grid(fig, axes, len(items), title, path)


def plot_roc(title: str, y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    from sklearn.metrics import roc_auc_score, roc_curve
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    yb = np.asarray(y).astype(int)
    for name, s in scores.items():
        ok = np.isfinite(s)
        if len(np.unique(yb[ok])) < 2:
            continue
        fpr, tpr, _ = roc_curve(yb[ok], s[ok])
        ax.plot(fpr, tpr, lw=1.4, label=f"{name} (AUROC {roc_auc_score(yb[ok], s[ok]):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_confusion(title: str, y: np.ndarray, preds: dict[str, np.ndarray], classes, path: Path) -> Path:
    plt = _plt()
    k = len(classes)
    items = list(preds.items())[:MAX_PANELS]
    rows, cols = _grid(len(items))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    for ax, (name, p) in zip(axes.flat, items):
        cm = np.bincount(np.asarray(y, int) * k + np.asarray(p, int), minlength=k * k).reshape(k, k)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), classes, fontsize=7, rotation=45)
        ax.set_yticks(range(k), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=9)
    return _finish_grid(fig, axes, len(items), title, path)
