"""The probe's window stores: prepared once per (source, input, spec) under --stores through
the data machinery (`training.data.build`), and loaded once per run (`StoreData`)."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from anyppg.stage import one_line
from edge_runtime.spec import SPECS
from training.data.build import BuildOptions, build_store
from training.data.records import ReaderError

from .embedders import embed_windows
from .tasks import Task


def log(msg: str) -> None:
    print(f"[probe] {msg}", file=sys.stderr, flush=True)


def store_key(source: str, inp: str, spec_name: str, reader_opts=()) -> str:
    spec = SPECS[spec_name].to_dict()
    key = {"source": source, "input": inp, "spec": spec}
    if reader_opts:
        key["reader_opts"] = sorted(reader_opts)
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(inp).name if source != "synthetic") \
        or ("synthetic-" + "".join(c if c.isalnum() else "_" for c in inp))[:40]
    return f"{source}-{base[:40]}-{h.hexdigest()[:10]}"


def _store_complete(p: Path) -> bool:
    try:
        return json.loads((p / "index.json").read_text()).get("complete", False)
    except (OSError, ValueError):
        return False


def ensure_store(task: Task, stores_dir: Path, spec_name: str = "small", workers: int = 2,
                 reader_opts=()):
    """(store path, None) or (None, reason). Prepares the store once; reuses it afterwards.

    reader_opts: 'key=value' reader options (prepare --opt) for custom tasks, e.g. 'fs=100'.
    """
    inp = task.resolved_input()
    if task.source != "synthetic" and not Path(inp).exists():
        return None, f"skipped: dataset not found at {inp}"
    reader_opts = tuple(reader_opts) if task.group == "custom" else ()
    path = stores_dir / store_key(task.source, inp, spec_name, reader_opts)
    if _store_complete(path):
        return path, None
    bad = [kv for kv in reader_opts if "=" not in kv]
    if bad:
        return None, f"skipped: reader option {bad[0]!r} is not key=value"
    opts = BuildOptions(task.source, inp, path, SPECS[spec_name], workers=max(1, workers), quiet=True,
                        overwrite=path.exists(),           # an incomplete leftover
                        reader_opts=dict(kv.split("=", 1) for kv in reader_opts))
    log(f"preparing store {path} ({task.source} from {inp})")
    try:
        build_store(opts)
    except (ReaderError, ValueError, OSError) as e:
        if _store_complete(path):           # prepared concurrently by another process
            return path, None
        return None, f"skipped: could not prepare the store: {one_line(e)}"
    return path, None


class StoreData:
    """One store's arrays, loaded once and shared by its tasks, encoders and baselines."""

    def __init__(self, path: Path):
        from training.data.store import WindowStore
        self.path = path
        self.store = WindowStore(path)
        self.index = self.store.index
        self.x = self.store.column("ppg")
        self.flags = self.store.column("flags")
        self.subjects = np.array(self.store.subject_ids())
        self._emb: dict[str, np.ndarray] = {}
        self._direct: dict[str, dict[str, np.ndarray]] = {}
        self._features: np.ndarray | None = None
        self.timings: dict[str, float] = {}

    def embedding(self, emb) -> np.ndarray:
        if emb.name not in self._emb:
            t = time.perf_counter()
            self._emb[emb.name] = embed_windows(emb, self.x, self.flags, self.store.spec)
            self.timings[f"embed:{emb.name}"] = time.perf_counter() - t
            log(f"  embedded {len(self.x)} windows of {self.path.name} with {emb.name} "
                f"({self._emb[emb.name].shape[1]}-d, {self.timings[f'embed:{emb.name}']:.1f} s)")
        return self._emb[emb.name]

    def direct(self, family: str) -> dict[str, np.ndarray]:
        from . import baselines as B
        if family not in self._direct:
            t = time.perf_counter()
            fn = {"hr": B.hr_estimates, "rr": B.rr_estimates}[family]
            self._direct[family] = fn(self.x, self.flags, fs=self.store.spec.ppg_fs)
            self.timings[f"baseline:{family}"] = time.perf_counter() - t
            log(f"  {family} baselines on {len(self.x)} windows ({self.timings[f'baseline:{family}']:.1f} s)")
        return self._direct[family]

    def features(self) -> np.ndarray:
        from . import baselines as B
        if self._features is None:
            t = time.perf_counter()
            self._features = B.features(self.x, self.flags, fs=self.store.spec.ppg_fs)
            self.timings["baseline:features"] = time.perf_counter() - t
            log(f"  hand-made features on {len(self.x)} windows ({self.timings['baseline:features']:.1f} s)")
        return self._features
