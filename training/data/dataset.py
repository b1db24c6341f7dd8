"""torch `Dataset` over a window store (memory-mapped, random access, worker-safe)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.store import WindowStore


class WindowDataset(Dataset):
    """Items are dicts of tensors:

    ppg (1, Lp) float32, ecg (1, Le) float32 (if `with_ecg`), accel (3, Lp) float32 (if
    `with_accel`), labels (K,) float32 (NaN = unknown), subject () int64, row () int64 (row in
    the whole store, the key of feature caches).

    with_accel: 'require' (a store without accelerometer windows is refused) or 'zeros' (such a
    store reads zeros: a still wrist, what the runtime feeds when a watch has no accelerometer).

    Each DataLoader worker opens its own memory maps lazily (np.load mmap handles must not be
    shared across fork), so the dataset is cheap to pickle.
    """

    def __init__(self, store: str | Path, split: str | None = "train", with_ecg: bool = False,
                 label_names: list[str] | None = None, with_accel: str | None = None):
        self.path = Path(store)
        self.split = split
        self.with_ecg = with_ecg
        if with_accel not in (None, "require", "zeros"):
            raise ValueError(f"with_accel must be None, 'require' or 'zeros', got {with_accel!r}")
        self.with_accel = with_accel
        self._store: WindowStore | None = None
        s = self.store
        if with_ecg and not s.has_ecg:
            raise ValueError(f"{self.path}: store has no ECG windows (needed for ECG-guided training)")
        if with_accel == "require" and not s.has_accel:
            raise ValueError(f"{self.path}: store has no accelerometer windows (the model takes an "
                             f"'accel' input; prepare it from a source with accel_x/y/z)")
        self.label_names = list(label_names) if label_names is not None else list(s.label_names)
        missing = [n for n in self.label_names if n not in s.label_names]
        if missing:
            raise ValueError(f"{self.path}: store has no labels {missing}; it has {s.label_names}")
        self._label_cols = np.array([s.label_names.index(n) for n in self.label_names], np.int64)
        self.subject_codes = s.subject_codes.copy()

    @property
    def store(self) -> WindowStore:
        if self._store is None:
            self._store = WindowStore(self.path, self.split)
        return self._store

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_store"] = None
        return d

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.store
        item = {
            "ppg": torch.from_numpy(s.ppg(i)).unsqueeze(0),
            "labels": torch.from_numpy(s.labels(i)[self._label_cols]),
            "subject": torch.tensor(int(self.subject_codes[i]), dtype=torch.int64),
            "row": torch.tensor(int(s.rows[i]), dtype=torch.int64),
        }
        if self.with_ecg:
            item["ecg"] = torch.from_numpy(s.ecg(i)).unsqueeze(0)
        if self.with_accel:
            item["accel"] = (torch.from_numpy(s.accel(i)) if s.has_accel
                             else torch.zeros(3, s.spec.ppg_len))
        return item
