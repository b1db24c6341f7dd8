"""A pretraining corpus that grows: synthetic paired ECG/PPG streamed from the generator, mixed
with the real paired windows of a store at a configurable ratio.

    corpus = PairedCorpus(CorpusConfig(synthetic_fraction=0.5), store="stores/bidmc")
    for batch in corpus.batches(batch_size=64, per_subject=16, seed=0):
        batch["ppg"]   # (B, 1, Lp) float32
        batch["ecg"]   # (B, 1, Le) float32
        batch["labels"]  # (B, K) float32, NaN where a source lacks the label
        batch["subject"]  # (B,) int64: one id per person, synthetic and real disjoint

Synthetic subjects need no store: subject k of generator seed s is simulated on demand for
`per_subject` windows and windowed with the one preprocessing of `edge_runtime.preprocess`,
so the corpus is unbounded (subject indices keep counting). A batch holds groups of
`per_subject` windows of one person (the subject-grouped negatives of the cpu-small
recipe); round(synthetic_fraction x groups) groups come from the generator, the rest from the
store's training split. Everything is a function of (seed, step), so a resumed run sees the
same batches as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from edge_runtime import preprocess as pp
from edge_runtime.spec import SPECS, SignalSpec
from training.data.store import WindowStore
from training.data.synthetic import generate_subject

# Labels a supervised arm can learn from: the union of what BIDMC and the generator provide.
DEFAULT_LABELS = ("hr", "rr", "spo2", "sbp", "dbp", "af")
# Synthetic subject ids: far from the probe tasks' synthetic seeds (0, 1, 11, ...), so a probe
# never mistakes a corpus subject for one of its own.
SYNTHETIC_SEED_BASE = 7_000


@dataclass
class CorpusConfig:
    synthetic_fraction: float = 0.0     # 0: real store only, 1: generator only
    synthetic_seed: int = SYNTHETIC_SEED_BASE
    labels: tuple[str, ...] = DEFAULT_LABELS

    def __post_init__(self):
        if not 0.0 <= self.synthetic_fraction <= 1.0:
            raise ValueError(f"synthetic_fraction must be in [0, 1], got {self.synthetic_fraction}")


def synthetic_group(subject_index: int, n_windows: int, seed: int, spec: SignalSpec,
                    labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """n_windows consecutive non-overlapping windows of one simulated subject.

    ppg (n, Lp) float32, ecg (n, Le) float32, labels (n, K) float32 (NaN: not produced),
    flags (n,) uint8. Windows flagged nan_gap/flat cannot occur in simulated data; clipped and
    artefact windows are kept, as `data prepare --source synthetic` keeps them.
    """
    dur = n_windows * spec.window_s
    rec = generate_subject(int(subject_index), seed=int(seed), duration_s=dur, ppg_fs=spec.ppg_fs,
                           ecg_fs=spec.ecg_fs, mains_hz=spec.mains_hz)
    starts = np.arange(n_windows) * spec.window_s
    p = pp.ppg_windows(rec.ppg.data, rec.ppg.fs, spec, starts_s=starts)
    e = pp.ecg_windows(rec.signals["ecg"].data, rec.signals["ecg"].fs, spec, p["start_s"])
    lab = np.full((len(p["x"]), len(labels)), np.nan, np.float32)
    for j, name in enumerate(labels):
        if name in rec.series:
            s = rec.series[name]
            lab[:, j] = [s.mean_over(t, t + spec.window_s) for t in p["start_s"]]
        elif name in rec.labels and rec.labels[name] is not None:
            lab[:, j] = rec.labels[name]
    if len(p["x"]) != n_windows:
        raise RuntimeError(f"synthetic subject {subject_index}: {len(p['x'])} windows, expected {n_windows}")
    return {"ppg": p["x"], "ecg": e["x"].astype(np.float32), "labels": lab, "flags": p["flags"] | e["flags"]}


class PairedCorpus:
    """Batches of paired PPG/ECG windows from the generator and (optionally) a store."""

    def __init__(self, cfg: CorpusConfig, store: str | Path | None = None, split: str = "train",
                 spec: SignalSpec | None = None):
        self.cfg = cfg
        self.store = WindowStore(store, split=split) if store else None
        if self.store is None and cfg.synthetic_fraction < 1.0:
            raise ValueError("a corpus with real windows (synthetic_fraction < 1) needs a store")
        if self.store is not None:
            if not self.store.has_ecg:
                raise ValueError(f"{store}: store has no ECG windows; the paired corpus needs them")
            if spec is not None and spec.to_dict() != self.store.spec.to_dict():
                raise ValueError(f"{store}: store spec differs from the requested spec")
            spec = self.store.spec
        self.spec = spec or SPECS["small"]
        if self.store is not None:
            cols = self.store.label_names
            self._label_cols = [cols.index(n) if n in cols else -1 for n in cfg.labels]
            codes = self.store.subject_codes
            self._real_subjects = [np.flatnonzero(codes == c) for c in np.unique(codes)]
            self._n_real_subject_codes = int(codes.max()) + 1 if len(codes) else 0

    # ---------------------------------------------------------------------------- real side
    def _real_group(self, rng: np.random.Generator, k: int) -> tuple[dict, int]:
        """k windows of one real subject with at least k training windows (drawn uniformly)."""
        eligible = [g for g in self._real_subjects if len(g) >= k]
        if not eligible:
            raise ValueError(f"no subject of the store has {k} training windows (windows_per_subject)")
        idx = eligible[rng.integers(len(eligible))]
        rows = np.sort(rng.choice(idx, size=k, replace=False))
        s = self.store
        lab = np.stack([s.labels(int(i)) for i in rows])
        labels = np.stack([lab[:, c] if c >= 0 else np.full(k, np.nan, np.float32)
                           for c in self._label_cols], 1).astype(np.float32)
        group = {"ppg": np.stack([s.ppg(int(i)) for i in rows]),
                 "ecg": np.stack([s.ecg(int(i)) for i in rows]).astype(np.float32),
                 "labels": labels}
        return group, int(s.subject_codes[rows[0]])

    def real_subject_ids(self) -> list[str]:
        return sorted(set(self.store.subject_ids())) if self.store is not None else []

    # ---------------------------------------------------------------------------- batches
    def groups_per_batch(self, batch_size: int, per_subject: int) -> tuple[int, int]:
        """(synthetic groups, real groups) of one batch."""
        if per_subject <= 0 or batch_size % per_subject:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of per_subject {per_subject}")
        n = batch_size // per_subject
        n_syn = int(round(self.cfg.synthetic_fraction * n))
        return n_syn, n - n_syn

    def batch(self, step: int, batch_size: int, per_subject: int, seed: int) -> dict[str, torch.Tensor]:
        """Batch number `step` (a pure function of seed and step)."""
        n_syn, n_real = self.groups_per_batch(batch_size, per_subject)
        rng = np.random.default_rng([int(seed), int(step)])
        groups, subj = [], []
        for g in range(n_syn):
            # Every group is a new person: the corpus never repeats a synthetic subject, and
            # each training seed draws its own people (generator seed = base + seed).
            k = int(step) * n_syn + g
            groups.append(synthetic_group(k, per_subject, self.cfg.synthetic_seed + int(seed), self.spec,
                                          self.cfg.labels))
            subj.append(-(k + 1))
        for _ in range(n_real):
            grp, code = self._real_group(rng, per_subject)
            groups.append(grp)
            subj.append(code)
        cat = lambda key: np.concatenate([g[key] for g in groups])
        return {"ppg": torch.from_numpy(cat("ppg")).unsqueeze(1),
                "ecg": torch.from_numpy(cat("ecg")).unsqueeze(1),
                "labels": torch.from_numpy(cat("labels")),
                "subject": torch.from_numpy(np.repeat(np.array(subj, np.int64), per_subject))}

    def batches(self, batch_size: int, per_subject: int, seed: int, start: int = 0,
                stop: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        step = start
        while stop is None or step < stop:
            yield self.batch(step, batch_size, per_subject, seed)
            step += 1
