"""The PheWAS-style figure of `anyppg probe --diagnoses` (matplotlib, Agg, written atomically).

One panel per encoder: codes grouped by ICD-10 chapter along x (chapters shaded alternately,
named below), AUROC on y with its 95% bootstrap CI, point area by prevalence, significant codes
(q < fdr) filled, outlined and labelled, the others hollow; reference lines at 0.5, 0.7, 0.8.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from anyppg.runs import atomic_path

from .diagnoses_codes import chapter_order

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _layout(rows: list[dict]) -> tuple[list[str], dict[str, int], list[tuple[str, int, int]]]:
    """Codes in chapter order, their x, and (chapter label, first x, last x) per chapter."""
    info = {r["code"]: r for r in rows}
    codes = sorted(info, key=lambda c: (chapter_order(c, info[c]["system"]), c))
    xs = {c: i for i, c in enumerate(codes)}
    spans: list[tuple[str, int, int]] = []
    for c in codes:
        label = (f"{info[c]['chapter']} {info[c]['chapter_name']}" if info[c]["chapter"]
                 else info[c]["chapter_name"])
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1], xs[c])
        else:
            spans.append((label, xs[c], xs[c]))
    return codes, xs, spans


def _panel(ax, rows: list[dict], xs: dict[str, int], spans, colour_of: dict[str, str], fdr: float) -> None:
    for k, (_, a, b) in enumerate(spans):
        if k % 2:
            ax.axvspan(a - 0.5, b + 0.5, color="0.93", zorder=0)
    for y, style in ((0.5, "-"), (0.7, "--"), (0.8, ":")):
        ax.axhline(y, color="0.5", lw=0.8, ls=style, zorder=1)
    for r in rows:
        if r.get("auroc") is None:
            continue
        x, y = xs[r["code"]], r["auroc"]
        col = colour_of[r["chapter_name"]]
        if r.get("auroc_lo") is not None:
            ax.plot([x, x], [r["auroc_lo"], r["auroc_hi"]], color=col, lw=1, alpha=0.6, zorder=2)
        size = 30 + 900 * (r["prevalence"] or 0.0)
        if r["significant"]:
            ax.scatter([x], [y], s=size, color=col, edgecolor="black", lw=1.2, zorder=4)
            ax.annotate(r["code"], (x, y), xytext=(0, 9), textcoords="offset points", ha="center",
                        fontsize=8, zorder=5)
        else:
            ax.scatter([x], [y], s=size, facecolor="none", edgecolor=col, lw=1.2, zorder=3)


def plot_phewas(rows: list[dict], encoders: list[str], path: Path, fdr: float = 0.05) -> Path:
    """Write the figure for rows of one or more encoders to `path` (PNG)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    codes, xs, spans = _layout(rows)
    chapters = list(dict.fromkeys(r["chapter_name"] for r in sorted(rows, key=lambda r: xs[r["code"]])))
    colour_of = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(chapters)}
    lows = [r["auroc_lo"] for r in rows if r.get("auroc_lo") is not None] + [0.4]
    ymin = max(0.0, min(lows) - 0.03)
    fig, axes = plt.subplots(len(encoders), 1, figsize=(max(6.0, 0.45 * len(codes) + 2.5), 3.6 * len(encoders)),
                             squeeze=False, sharex=True)
    for ax, enc in zip(axes[:, 0], encoders):
        _panel(ax, [r for r in rows if r["encoder"] == enc], xs, spans, colour_of, fdr)
        ax.set_ylim(ymin, 1.02)
        ax.set_ylabel("AUROC (95% CI)")
        ax.set_title(enc, fontsize=10, loc="left")
    ax = axes[-1, 0]
    ax.set_xlim(-0.7, len(codes) - 0.3)
    ax.set_xticks([(a + b) / 2 for _, a, b in spans])
    ax.set_xticklabels([s for s, _, _ in spans], rotation=30, ha="right", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="", color="0.3", markeredgecolor="black", label=f"q < {fdr:g}"),
               Line2D([], [], marker="o", ls="", markerfacecolor="none", color="0.3", label="not significant")]
    for p in (0.05, 0.2, 0.5):
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", color="0.6",
                              markersize=np.sqrt(30 + 900 * p), label=f"prevalence {p:.0%}"))
    axes[0, 0].legend(handles=handles, fontsize=7, loc="upper right", ncol=len(handles), frameon=False,
                      bbox_to_anchor=(1.0, 1.18))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
