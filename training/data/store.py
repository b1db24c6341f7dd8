"""The window store: fixed-size preprocessed windows in memory-mappable shards.

Layout of a store folder::

    index.json                       counts, subjects, spec, splits, rejections (all parts)
    parts/part-00003-of-00008/       one `data prepare` shard (a cluster array task)
        part.json                    its subjects, records, label names, rejections, chunks
        chunk-00000/                 at most `chunk_windows` windows, each array (N, ...):
            ppg.npy      (N, Lp) float32   model input, preprocessed by edge_runtime
            ecg.npy      (N, Le) float16   paired ECG, if any record of the part has one
            accel.npy    (N, 3, Lp) float16  accelerometer input (edge_runtime.accel), if any
                                           record of the chunk has one (zeros for the others)
            labels.npy   (N, K)  float32   NaN where a label is unknown
            subject.npy  (N,)    int32     index into part.json "subjects"
            record.npy   (N,)    int32     index into part.json "records"
            start_s.npy  (N,)    float32   window start within its record
            flags.npy    (N,)    uint8     quality bitmask (edge_runtime.spec FLAG_*)
            split.npy    (N,)    uint8     0 train, 1 val, 2 test (by subject)

The split is a function of the subject id alone (a salted hash), so shards prepared
independently agree on it and a subject never straddles two splits.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_write_json
from edge_runtime.spec import SignalSpec

SPLITS = ("train", "val", "test")
STORE_VERSION = 1


def subject_split(subject_id: str, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> int:
    """0/1/2 (train/val/test) for a subject, deterministic and independent of other subjects."""
    h = hashlib.sha256(f"{seed}:{subject_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2.0**64
    return 0 if u < fractions[0] else (1 if u < fractions[0] + fractions[1] else 2)


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"


class PartWriter:
    """Accumulates windows and writes them in chunks into a part folder (already temp)."""

    def __init__(self, folder: Path, spec: SignalSpec, chunk_windows: int = 8192):
        self.folder = Path(folder)
        self.spec = spec
        self.chunk_windows = chunk_windows
        self.subjects: list[str] = []
        self._subject_idx: dict[str, int] = {}
        self.records: list[dict] = []
        self.label_names: list[str] = []
        self.chunks: list[dict] = []
        self._buf: list[dict] = []
        self._buffered = 0
        self.has_ecg = False

    def add(self, record_info: dict, subject_id: str, split: int, ppg: np.ndarray,
            ecg: np.ndarray | None, labels: dict[str, np.ndarray], start_s: np.ndarray,
            flags: np.ndarray, accel: np.ndarray | None = None) -> None:
        n = len(ppg)
        if n == 0:
            return
        if subject_id not in self._subject_idx:
            self._subject_idx[subject_id] = len(self.subjects)
            self.subjects.append(subject_id)
        for k in labels:
            if k not in self.label_names:
                self.label_names.append(k)
        self.records.append(record_info)
        self.has_ecg |= ecg is not None
        self._buf.append(dict(ppg=ppg, ecg=ecg, accel=accel, labels=labels, start_s=start_s, flags=flags,
                              subject=self._subject_idx[subject_id], record=len(self.records) - 1,
                              split=split))
        self._buffered += n
        if self._buffered >= self.chunk_windows:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        name = f"chunk-{len(self.chunks):05d}"
        d = self.folder / name
        d.mkdir(parents=True)
        n = sum(len(b["ppg"]) for b in self._buf)
        np.save(d / "ppg.npy", np.concatenate([b["ppg"] for b in self._buf]).astype(np.float32))
        if self.has_ecg:
            ecg = [b["ecg"] if b["ecg"] is not None
                   else np.zeros((len(b["ppg"]), self.spec.ecg_len), np.float16) for b in self._buf]
            np.save(d / "ecg.npy", np.concatenate(ecg).astype(np.float16))
        has_accel = any(b["accel"] is not None for b in self._buf)
        if has_accel:
            acc = [b["accel"] if b["accel"] is not None
                   else np.zeros((len(b["ppg"]), 3, self.spec.ppg_len), np.float16) for b in self._buf]
            np.save(d / "accel.npy", np.concatenate(acc).astype(np.float16))
        lab = np.full((n, len(self.label_names)), np.nan, np.float32)
        row = 0
        for b in self._buf:
            m = len(b["ppg"])
            for k, v in b["labels"].items():
                lab[row:row + m, self.label_names.index(k)] = v
            row += m
        np.save(d / "labels.npy", lab)
        for key, dtype in (("subject", np.int32), ("record", np.int32), ("split", np.uint8)):
            np.save(d / f"{key}.npy", np.concatenate(
                [np.full(len(b["ppg"]), b[key], dtype) for b in self._buf]))
        np.save(d / "start_s.npy", np.concatenate([b["start_s"] for b in self._buf]).astype(np.float32))
        np.save(d / "flags.npy", np.concatenate([b["flags"] for b in self._buf]).astype(np.uint8))
        self.chunks.append({"name": name, "n": n, "label_names": list(self.label_names),
                            "has_ecg": self.has_ecg, "has_accel": has_accel})
        self._buf, self._buffered = [], 0

    def close(self, extra: dict) -> dict:
        self._flush()
        info = {"subjects": self.subjects, "records": self.records, "chunks": self.chunks,
                "n_windows": sum(c["n"] for c in self.chunks), **extra}
        atomic_write_json(self.folder / "part.json", info)
        return info


def rebuild_index(store: Path, meta: dict) -> dict:
    """(Re)write index.json from every complete part present in `store/parts`."""
    parts = sorted((store / "parts").glob("part-*/part.json"))
    infos = [(p.parent.name, json.loads(p.read_text())) for p in parts]
    label_names: list[str] = []
    subjects: dict[str, dict] = {}
    rejected: dict[str, int] = {}
    errors: list[str] = []
    split_counts = {s: 0 for s in SPLITS}
    n_total = 0
    for name, info in infos:
        for c in info["chunks"]:
            for k in c["label_names"]:
                if k not in label_names:
                    label_names.append(k)
            splits = np.load(store / "parts" / name / c["name"] / "split.npy")
            subj = np.load(store / "parts" / name / c["name"] / "subject.npy")
            for s in range(3):
                split_counts[SPLITS[s]] += int((splits == s).sum())
            for si in np.unique(subj):
                sid = info["subjects"][si]
                entry = subjects.setdefault(sid, {"split": SPLITS[int(splits[subj == si][0])],
                                                  "n_windows": 0})
                entry["n_windows"] += int((subj == si).sum())
        for k, v in info.get("rejected", {}).items():
            rejected[k] = rejected.get(k, 0) + v
        errors += info.get("errors", [])
        n_total += info["n_windows"]
    num_parts = meta.get("num_shards", 1)
    index = {
        "store_version": STORE_VERSION,
        **meta,
        "parts": [n for n, _ in infos],
        "complete": len(infos) == num_parts,
        "n_windows": n_total,
        "n_subjects": len(subjects),
        "label_names": label_names,
        "splits": split_counts,
        "split_subjects": {s: sorted(k for k, v in subjects.items() if v["split"] == s) for s in SPLITS},
        "subjects": subjects,
        "rejected": rejected,
        "errors": errors,
    }
    atomic_write_json(store / "index.json", index)
    return index


@dataclass
class _Chunk:
    path: Path
    n: int
    offset: int
    label_cols: np.ndarray   # chunk label column -> store label column


class WindowStore:
    """Random access to a prepared store, memory-mapped (no torch; see training.data.dataset).

    `split` selects 'train', 'val', 'test' or None (all). Arrays are read lazily per chunk.
    """

    def __init__(self, path: str | Path, split: str | None = None):
        self.path = Path(path)
        idx = self.path / "index.json"
        if not idx.is_file():
            raise FileNotFoundError(f"{self.path}: not a window store (no index.json)")
        self.index = json.loads(idx.read_text())
        if not self.index.get("complete", False):
            raise ValueError(f"{self.path}: store is incomplete ({len(self.index['parts'])} of "
                             f"{self.index.get('num_shards')} parts prepared)")
        self.spec = SignalSpec.from_dict(self.index["spec"])
        self.label_names: list[str] = self.index["label_names"]
        self.subjects: list[str] = sorted(self.index["subjects"])
        self._subject_code = {s: i for i, s in enumerate(self.subjects)}
        self.chunks: list[_Chunk] = []
        self.has_ecg = False
        self.has_accel = False                # windows without an accelerometer read zeros
        off = 0
        for part in self.index["parts"]:
            info = json.loads((self.path / "parts" / part / "part.json").read_text())
            for c in info["chunks"]:
                cols = np.array([self.label_names.index(k) for k in c["label_names"]], np.int64)
                self.chunks.append(_Chunk(self.path / "parts" / part / c["name"], c["n"], off, cols))
                self.has_ecg |= c["has_ecg"]
                self.has_accel |= c.get("has_accel", False)
                off += c["n"]
        self._n_all = off
        self._mm: dict[tuple[int, str], np.ndarray] = {}
        self._starts = np.array([c.offset for c in self.chunks], np.int64)
        # Global subject code and split of every window (small: 5 bytes per window).
        self._subject_all = np.zeros(off, np.int32)
        self._split_all = np.zeros(off, np.uint8)
        for ci, c in enumerate(self.chunks):
            info_subjects = self._part_subjects(c.path.parent)
            local = self._array(ci, "subject")
            self._subject_all[c.offset:c.offset + c.n] = np.array(
                [self._subject_code[s] for s in info_subjects], np.int32)[local]
            self._split_all[c.offset:c.offset + c.n] = self._array(ci, "split")
        if split is None:
            self.rows = np.arange(off, dtype=np.int64)
        else:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            self.rows = np.flatnonzero(self._split_all == SPLITS.index(split)).astype(np.int64)
        self.split = split

    def _part_subjects(self, part_dir: Path) -> list[str]:
        cache = self.__dict__.setdefault("_part_cache", {})
        if part_dir not in cache:
            cache[part_dir] = json.loads((part_dir / "part.json").read_text())["subjects"]
        return cache[part_dir]

    def _array(self, ci: int, name: str) -> np.ndarray:
        key = (ci, name)
        a = self._mm.get(key)
        if a is None:
            a = np.load(self.chunks[ci].path / f"{name}.npy", mmap_mode="r")
            self._mm[key] = a
        return a

    def __len__(self) -> int:
        return len(self.rows)

    def _locate(self, i: int) -> tuple[int, int]:
        g = int(self.rows[i])
        ci = int(np.searchsorted(self._starts, g, side="right") - 1)
        return ci, g - self.chunks[ci].offset

    def ppg(self, i: int) -> np.ndarray:
        """(Lp,) float32 model input of window i of this split."""
        ci, j = self._locate(i)
        return np.array(self._array(ci, "ppg")[j])

    def ecg(self, i: int) -> np.ndarray:
        """(Le,) float32 paired ECG window; raises if the store has no ECG."""
        if not self.has_ecg:
            raise ValueError(f"{self.path}: store has no ECG")
        ci, j = self._locate(i)
        if not self.chunks[ci].path.joinpath("ecg.npy").exists():
            return np.zeros(self.spec.ecg_len, np.float32)
        return np.asarray(self._array(ci, "ecg")[j], dtype=np.float32)

    def accel(self, i: int) -> np.ndarray:
        """(3, Lp) float32 accelerometer input; zeros (a still wrist) where the window's record
        had none; raises if the store has no accelerometer at all."""
        if not self.has_accel:
            raise ValueError(f"{self.path}: store has no accelerometer windows")
        ci, j = self._locate(i)
        if not self.chunks[ci].path.joinpath("accel.npy").exists():
            return np.zeros((3, self.spec.ppg_len), np.float32)
        return np.asarray(self._array(ci, "accel")[j], dtype=np.float32)

    def labels(self, i: int) -> np.ndarray:
        """(K,) float32 labels in the order of `label_names` (NaN = unknown)."""
        ci, j = self._locate(i)
        out = np.full(len(self.label_names), np.nan, np.float32)
        out[self.chunks[ci].label_cols] = self._array(ci, "labels")[j]
        return out

    def flags(self, i: int) -> int:
        ci, j = self._locate(i)
        return int(self._array(ci, "flags")[j])

    @property
    def subject_codes(self) -> np.ndarray:
        """(N,) int32 subject index (into `self.subjects`) of every window of this split."""
        return self._subject_all[self.rows]

    def subject_ids(self) -> list[str]:
        return [self.subjects[c] for c in self.subject_codes]

    def column(self, name: str) -> np.ndarray:
        """A whole per-window array of this split: 'ppg', 'ecg', 'accel', 'flags', 'start_s' or
        a label."""
        if name == "accel" and not self.has_accel:
            raise ValueError(f"{self.path}: store has no accelerometer windows")
        if name in self.label_names:
            k = self.label_names.index(name)
            out = np.full(self._n_all, np.nan, np.float32)
            for ci, c in enumerate(self.chunks):
                cols = list(c.label_cols)
                if k in cols:
                    out[c.offset:c.offset + c.n] = self._array(ci, "labels")[:, cols.index(k)]
            return out[self.rows]
        parts = []
        for ci, c in enumerate(self.chunks):
            if name == "ecg" and not (c.path / "ecg.npy").exists():
                parts.append(np.zeros((c.n, self.spec.ecg_len), np.float16))
            elif name == "accel" and not (c.path / "accel.npy").exists():
                parts.append(np.zeros((c.n, 3, self.spec.ppg_len), np.float16))
            else:
                parts.append(np.asarray(self._array(ci, name)))
        return np.concatenate(parts)[self.rows] if parts else np.zeros(0)

    def sample_ppg(self, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, windows (n, Lp) float32): a seeded choice of n windows of this split, in store
        order (all of them when n is None or the split has fewer). Calibration, parity and QAT
        all draw their windows here, so one seed names one set of windows everywhere."""
        x = self.column("ppg")
        rows = sample_rows(len(x), len(x) if n is None else n, seed)
        return rows, np.ascontiguousarray(x[rows], np.float32)


def sample_rows(n_total: int, n: int, seed: int) -> np.ndarray:
    """A sorted, seeded choice of n rows out of n_total (all of them if fewer)."""
    if n_total > n:
        return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))
    return np.arange(n_total)
