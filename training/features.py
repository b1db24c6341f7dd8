"""Frozen-encoder feature caches: encode every window of a store once, train against the cache.

A frozen encoder is deterministic, so re-encoding the same windows every epoch is wasted work
(ECGFounder costs about 10x the PPG encoder's forward FLOPs per window at 500 Hz; a distillation
teacher sees each clean window once). A cache lives beside the store, one folder per kind
(`<store>/ecg_features/<key>.npy` for a frozen ECG tower, `<store>/teacher_features/<key>.npy`
for a distillation teacher's PPG embeddings), half precision, one row per window of the whole
store in store row order, with a JSON note of its shape. Its key hashes the encoder name and
weights, so a different checkpoint can never read a stale cache.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anyppg.runs import atomic_path, atomic_write_json
from training.data.store import WindowStore

# kind -> (folder beside the store, the store signal the encoder eats)
KINDS = {"ecg": ("ecg_features", "ecg"), "teacher": ("teacher_features", "ppg")}


def weights_key(name: str, module: torch.nn.Module) -> str:
    h = hashlib.sha256(name.encode())
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return f"{name}-{h.hexdigest()[:16]}"


def cache_path(store: str | Path, key: str, kind: str = "ecg") -> Path:
    return Path(store) / KINDS[kind][0] / f"{key}.npy"


@torch.no_grad()
def build_cache(store: str | Path, encoder: torch.nn.Module, key: str, kind: str = "ecg",
                batch_size: int = 64, device: str | torch.device = "cpu", quiet: bool = False) -> Path:
    """Encode every window of `store` (the `kind`'s signal) with `encoder` in eval mode; returns
    the cache path. Returns at once if a complete cache with this key exists.

    The `.json` note and the `.npy` are one unit: the note is written first and the `.npy`
    renamed into place last, so an `.npy` exists only beside its note; a cache whose note is
    missing or disagrees with it (a crash of older code between the two) is rebuilt."""
    path = cache_path(store, key, kind)
    if path.is_file() and cache_complete(path, key):
        return path
    signal = KINDS[kind][1]
    ws = WindowStore(store, split=None)
    if signal == "ecg" and not ws.has_ecg:
        raise ValueError(f"{store}: store has no ECG windows to cache features of")
    window = ws.ecg if signal == "ecg" else ws.ppg
    was_training = encoder.training
    encoder.eval()
    out = None
    for i0 in tqdm(range(0, len(ws), batch_size), desc=f"cache {kind} features", disable=quiet,
                   file=sys.stderr):
        idx = range(i0, min(i0 + batch_size, len(ws)))
        x = torch.from_numpy(np.stack([window(i) for i in idx])).unsqueeze(1).to(device)
        f = encoder(x).embedding.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(ws), f.shape[1]), np.float16)
        out[i0:i0 + len(f)] = f
    encoder.train(was_training)
    if path.exists():
        path.unlink()          # an incomplete cache: its note is rewritten before the data
    atomic_write_json(path.with_suffix(".json"), {"key": key, "rows": len(ws), "dim": int(out.shape[1])})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, out)
    return path


def cache_complete(path: Path, key: str) -> bool:
    """True if the `.npy` at `path` has its `.json` note and agrees with it (key, rows, dim)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return meta.get("key") == key and arr.shape == (meta.get("rows"), meta.get("dim"))


def load_cache(path: Path, store: WindowStore) -> np.ndarray:
    """The cache, memory-mapped, checked against the store's row count. (N_all, D) float16."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable feature cache ({type(e).__name__}); delete it to rebuild") from None
    if arr.shape[0] != meta["rows"] or meta["rows"] != store.index["n_windows"]:
        raise ValueError(f"{path}: cache has {arr.shape[0]} rows, store has {store.index['n_windows']}")
    return arr


def standardisation(feats: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension (mean, std) of cached features over `rows` (a split's store rows)."""
    return mean_std(np.asarray(feats[np.sort(rows)], np.float64))


def mean_std(f: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std floored at 1e-6) per column of f (N, D), as float32 tensors."""
    return (torch.tensor(f.mean(0), dtype=torch.float32),
            torch.tensor(np.maximum(f.std(0), 1e-6), dtype=torch.float32))
