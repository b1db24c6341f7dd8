"""Extra training stores mixed into each batch: `--set mix=[stores/bidmc:0.1,stores/ppg-bp:0.1]`.

A distillation run has one primary store (its teacher targets, label statistics, validation and
test splits). A mix store adds the *training-split* windows of another store (same signal spec)
to every batch: round(fraction x batch_size) windows drawn at random, labelled with the primary
store's label names (NaN where the mix store lacks one). They train the heads only; the teacher
term stays on the primary windows, whose targets are cached per store.

    mixes = load_mixes(["stores/bidmc:0.1"], label_names=["hr", "quality"], spec=store.spec)
    x, y = mixes[0].draw(64, generator)        # (n, 1, L) float32, (n, K) float32
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_runtime.spec import SignalSpec
from training.data.store import WindowStore


@dataclass
class MixStore:
    """The training windows of one extra store, held in memory. ppg (N, L), labels (N, K)."""
    path: str
    fraction: float
    ppg: np.ndarray
    labels: np.ndarray

    def count(self, batch_size: int) -> int:
        return int(round(self.fraction * batch_size))

    def draw(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n random windows (with replacement): x (n, 1, L), labels (n, K)."""
        idx = torch.randint(0, len(self.ppg), (n,), generator=g).numpy()
        return torch.from_numpy(self.ppg[idx]).unsqueeze(1), torch.from_numpy(self.labels[idx])


def parse_mix(entry: str) -> tuple[str, float]:
    """'path:fraction' -> (path, fraction), fraction in (0, 1)."""
    path, sep, frac = str(entry).rpartition(":")
    try:
        f = float(frac) if sep else float("nan")
    except ValueError:
        f = float("nan")
    if not path or not 0.0 < f < 1.0:
        raise ValueError(f"mix entry {entry!r}: expected 'store_path:fraction' with 0 < fraction < 1")
    return path, f


def load_mixes(entries, label_names: list[str], spec: SignalSpec) -> list[MixStore]:
    """The mix stores of `entries` ('path:fraction'), checked against the primary's spec."""
    mixes = []
    for e in entries or ():
        path, frac = parse_mix(e)
        st = WindowStore(path, split="train")
        spec.check_compatible(st.spec, f"mix store {path}")
        if len(st) == 0:
            raise ValueError(f"mix store {path}: no training windows")
        _, ppg = st.sample_ppg(None, 0)
        cols = [st.column(n) if n in st.label_names else np.full(len(st), np.nan, np.float32)
                for n in label_names]
        labels = np.stack(cols, 1).astype(np.float32) if cols else np.zeros((len(st), 0), np.float32)
        mixes.append(MixStore(str(Path(path)), frac, ppg.astype(np.float32), labels))
    if sum(m.fraction for m in mixes) >= 1.0:
        raise ValueError(f"mix fractions sum to {sum(m.fraction for m in mixes):.2f}; must be < 1")
    return mixes
