"""The report's PNG figures, each from one stage's output (None when that output is absent).

training_curves.png   loss against step of pretrain, distill and QAT (their metrics.jsonl)
coverage.png          HR absolute error against coverage (least confident windows withheld)
latency.png           latency per window of each engine the bench stage timed
window.png            preprocessed windows of the store with their quality flags
Bland-Altman and ROC plots are the probe stage's own PNGs (probe/<task>.png), shown as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anyppg.runs import atomic_path

from .report_data import read_jsonl


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def training_curves(run: Path, out: Path) -> Path | None:
    logs = {s: read_jsonl(run / s / "metrics.jsonl") for s in ("pretrain", "distill", "qat")}
    logs = {s: [r for r in v if "step" in r and isinstance(r.get("loss"), (int, float))] for s, v in logs.items()}
    logs = {s: v for s, v in logs.items() if v}
    if not logs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(logs), figsize=(4.2 * len(logs), 3.2), squeeze=False)
    for ax, (s, rows) in zip(axes[0], logs.items()):
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.5, color="tab:blue")
        ax.set_title(f"{s}: training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    return _save(fig, out / "training_curves.png")


def coverage(ev: dict[str, Any], out: Path) -> Path | None:
    cur = {k: v for k, v in (ev.get("coverage") or {}).items() if isinstance(v, dict)}
    if not cur:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for eng, c in cur.items():
        ax.plot(np.asarray(c["coverage"]) * 100, c["mae"], marker="o", ms=3, label=f"{eng} student")
    by = ev["coverage"].get("by", "confidence")
    ax.set_xlabel(f"coverage, % of windows kept (ranked by {by})")
    ax.set_ylabel("HR MAE of kept windows, bpm")
    ax.set_title(f"HR error against coverage ({ev.get('split')} split, {ev.get('n_windows')} windows)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out / "coverage.png")


def latency(bench: dict[str, Any], out: Path) -> Path | None:
    """Histogram of the per-window latency samples of every model the bench stage timed."""
    rows = {k: np.asarray(r["samples_us"], float) for k, r in (bench.get("latency") or {}).items()
            if isinstance(r.get("samples_us"), list) and len(r["samples_us"]) >= 5}
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    lo, hi = min(v.min() for v in rows.values()), max(v.max() for v in rows.values())
    bins = np.logspace(np.log10(max(lo, 1e-3)), np.log10(hi), 60)
    for k, v in rows.items():
        ax.hist(v, bins=bins, histtype="step", lw=1.8, label=f"{k} (p50 {np.median(v):,.0f} us)")
    ax.set_xscale("log")
    ax.set_xlabel("latency per window, us (batch 1)")
    ax.set_ylabel("windows")
    ax.set_title("latency distribution (bench stage, same windows)")
    ax.legend(fontsize=7)
    return _save(fig, out / "latency.png")


def window(store: Path, out: Path) -> Path | None:
    """A clean preprocessed window of the store's test split and, if the store kept one, a flagged one."""
    try:
        from edge_runtime.spec import flag_names
        from training.data.store import WindowStore
        ws = WindowStore(store, split="test")
    except (ImportError, FileNotFoundError, ValueError):
        return None
    if len(ws) == 0:
        return None
    flags = ws.column("flags")
    picks = [int(np.flatnonzero(flags == 0)[0]) if (flags == 0).any() else 0]
    if (flags != 0).any():
        picks.append(int(np.flatnonzero(flags != 0)[0]))
    plt = _plt()
    fig, axes = plt.subplots(len(picks), 1, figsize=(8.0, 2.3 * len(picks)), squeeze=False)
    fs = ws.spec.ppg_fs
    for ax, i in zip(axes[:, 0], picks):
        x = ws.ppg(i)
        names = flag_names(int(flags[i])) or ["none"]
        ax.plot(np.arange(len(x)) / fs, x, lw=0.8, color="tab:red" if flags[i] else "tab:green")
        ax.set_title(f"test window {i}, subject {ws.subject_ids()[i]}: quality flags = {', '.join(names)}", fontsize=9)
        ax.set_ylabel("z-score")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(f"s (band-pass {ws.spec.ppg_band_hz[0]}-{ws.spec.ppg_band_hz[1]} Hz per window, "
                           f"z-scored, {fs:g} Hz)")
    return _save(fig, out / "window.png")


def all_figures(run: Path, ev: dict[str, Any], bench: dict[str, Any]) -> dict[str, Path | None]:
    out = run / "figures"
    out.mkdir(parents=True, exist_ok=True)
    return {"training_curves": training_curves(run, out), "coverage": coverage(ev, out),
            "latency": latency(bench, out), "window": window(run / "store", out)}

