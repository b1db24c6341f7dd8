"""A student's task heads against a store's labels: which label column trains which head, the
label statistics that standardise them, and the (N, H) label matrix in head order.

The head facts themselves (names, which are regression and which binary, output fields, units)
are `training.models.student`'s; this module only connects them to store columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.checkpoint import label_norm_simple
from training.models.student import DEFAULT_LABEL_NORM, HEAD_NAMES, REGRESSION_HEADS


@dataclass
class HeadLabels:
    """Store label column(s) behind each head: the first name the store has wins."""
    hr: tuple[str, ...] = ("hr",)
    # BIDMC: 'rr_breaths' (annotated breaths, what the bidmc-rr probe scores) before the
    # monitor's impedance 'rr'; synthetic stores only have 'rr'.
    rr: tuple[str, ...] = ("rr_breaths", "rr")
    af: tuple[str, ...] = ("af",)
    quality: tuple[str, ...] = ("quality",)
    sbp: tuple[str, ...] = ("sbp",)
    dbp: tuple[str, ...] = ("dbp",)


@dataclass
class HeadWeights:
    """Weight of each head's label loss in the head term (0: the head is not trained)."""
    hr: float = 1.0
    rr: float = 1.0
    # half weight: the binary heads and blood pressure
    af: float = 0.5
    quality: float = 0.5
    sbp: float = 0.5
    dbp: float = 0.5


def resolve_head_labels(labels: HeadLabels, label_names: list[str]) -> dict[str, str | None]:
    """{head: store label name or None (no such label: head untrained)}."""
    return {h: next((c for c in getattr(labels, h) if c in label_names), None) for h in HEAD_NAMES}


def label_stats(store, head_labels: dict[str, str | None]) -> dict[str, dict]:
    """Per head: label, mean/std of the training labels (regression) or (0, 1), count."""
    norm = {}
    for h in HEAD_NAMES:
        lbl = head_labels[h]
        vals = store.column(lbl) if lbl else np.zeros(0, np.float32)
        vals = vals[np.isfinite(vals)]
        if h in REGRESSION_HEADS and len(vals) >= 2 and float(vals.std()) > 1e-6:
            m, s = float(vals.mean()), float(vals.std())
        elif h in REGRESSION_HEADS:
            m, s = DEFAULT_LABEL_NORM[h]
            if len(vals):
                m = float(vals.mean())
        else:
            m, s = 0.0, 1.0
        norm[h] = {"label": lbl, "mean": m, "std": s, "n_train": int(len(vals)),
                   "trained": bool(lbl) and len(vals) > 0}
    return norm


def head_norm(label_norm: dict, model) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per head, HEAD_NAMES order: what standardises a student's label-unit outputs
    (the checkpoint's label_norm where it has one, else the model's own buffers)."""
    ln = label_norm_simple(label_norm)
    model_norm = model.label_norm()
    mean, std = [], []
    for h in HEAD_NAMES:
        m, s = model_norm[h]
        if h in ln and "mean" in ln[h]:
            m, s = ln[h]["mean"], ln[h]["std"]
        mean.append(float(m))
        std.append(float(s) if s and s > 0 else 1.0)
    return torch.tensor(mean), torch.tensor(std)


def label_matrix(store, label_norm: dict, model) -> tuple[np.ndarray, dict]:
    """(N, H) labels in label units (NaN unknown) for the store's windows, in head order, and
    the norm dict `training.losses.head_losses` wants, for a trained student."""
    ln = label_norm_simple(label_norm)
    mean, std = head_norm(label_norm, model)
    norm, cols = {}, []
    for i, h in enumerate(HEAD_NAMES):
        lbl = ln.get(h, {}).get("label")
        trained = bool(ln.get(h, {}).get("trained", lbl is not None))
        if lbl is None and h in store.label_names:
            lbl = h
        col = store.column(lbl) if (lbl and lbl in store.label_names) else \
            np.full(len(store), np.nan, np.float32)
        cols.append(col.astype(np.float32))
        norm[h] = {"mean": float(mean[i]), "std": float(std[i]), "label": lbl,
                   "trained": trained and lbl is not None and lbl in store.label_names}
    return np.stack(cols, 1), norm
