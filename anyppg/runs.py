"""Run folders: atomic writes and self-describing manifests.

Every stage writes `runs/<name>/<stage>/manifest.json` (stage, resolved config, inputs with
sha256, git commit, metrics, schema version). Nothing is ever half-written: files go to a temp
name in the same folder and are renamed into place when complete (rename is atomic on POSIX).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1

# A training run folder's layout: the checkpoint the next stage reads and the step log.
CHECKPOINT = Path("checkpoints") / "latest.pt"
METRICS = "metrics.jsonl"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, base: int) -> None:
    """mkstemp/mkdtemp make 0600/0700 names; what they become gets the mode a plain open() or
    mkdir() would have given (`base` & ~umask)."""
    if path.exists():
        os.chmod(path, base & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _usual_mode(tmp, 0o666)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


# What marks a folder as this project's own: every folder atomic_dir makes carries OWN_MARKER;
# older runs and stores are known by their manifest or index. --overwrite replaces only such a
# folder (or an empty one), never an arbitrary path a typo in --out names.
OWN_MARKER = ".anyppg-folder"
OWN_FOLDER_MARKERS = (OWN_MARKER, "manifest.json", "index.json", "part.json", "pipeline.json")


def replaceable(path: Path) -> bool:
    """True if `path` is an empty folder or one this project wrote (see OWN_FOLDER_MARKERS)."""
    return path.is_dir() and (not any(path.iterdir()) or any((path / m).is_file() for m in OWN_FOLDER_MARKERS))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temp name beside `path`, then rename it into place.

    If the block raises, the temp folder is removed and `path` is untouched. With `overwrite`,
    an existing `path` is replaced only if it is a run or store of this project (or empty).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass --overwrite to replace it)")
    if path.exists() and not replaceable(path):
        raise FileExistsError(f"{path}: not a run folder or store of this project (no manifest.json or "
                              f"index.json); refusing to replace it with --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        (tmp / OWN_MARKER).write_text("made by anyppg; --overwrite may replace this folder\n")
        _usual_mode(tmp, 0o777)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def git_commit() -> str | None:
    """The commit of the code that produced a run (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_manifest(run_dir: str | os.PathLike, stage: str, config: dict, inputs: dict[str, str],
                   metrics: dict, extra: dict | None = None) -> dict:
    """Write `run_dir/manifest.json`. `inputs` maps a role to a file path (hashed here)."""
    hashed = {}
    for role, p in inputs.items():
        p = Path(p)
        hashed[role] = {"path": str(p), "sha256": sha256_file(p) if p.is_file() else None}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "config": config,
        "inputs": hashed,
        "metrics": metrics,
    }
    if extra:
        manifest.update(extra)
    atomic_write_json(Path(run_dir) / "manifest.json", manifest)
    return manifest


def read_manifest(run_dir: str | os.PathLike) -> dict:
    p = Path(run_dir) / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no manifest (is {run_dir} a run folder?)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: malformed manifest ({e})") from None


def selection_record(store: str | os.PathLike, split: str, subjects: list[str]) -> dict:
    """The manifest entry naming the subjects a run's settings were chosen on (model
    selection), so that evaluations exclude them like training subjects: {'selected_on':
    [{'store', 'split', 'subjects'}]}, or {} when nothing was selected on held-out data."""
    if not split:
        return {"selected_on": []}
    return {"selected_on": [{"store": str(Path(store).resolve()), "split": split,
                             "subjects": sorted(subjects)}]}


def manifest_trained_on(m: dict, selection: bool = True) -> list[dict]:
    """[{'store', 'subjects'}] from a manifest dict: 'trained_on' (per store) or 'store' (one
    or a list) + 'trained_on_subjects'; with `selection`, also the subjects the run's settings
    were chosen on ('selected_on'), which an honest evaluation must not report on either."""
    picked = [{"store": s.get("store"), "subjects": list(s.get("subjects") or []), "role": "selection"}
              for s in (m.get("selected_on") or []) if isinstance(s, dict)] if selection else []
    if isinstance(m.get("trained_on"), list):
        return [{"store": s.get("store"), "subjects": list(s.get("subjects") or [])}
                for s in m["trained_on"] if isinstance(s, dict)] + picked
    stores = m.get("store")
    subjects = list(m.get("trained_on_subjects") or [])
    if stores is None and m.get("trained_on_subjects") is None:
        return picked
    return [{"store": st, "subjects": subjects} for st in (stores if isinstance(stores, list) else [stores])] + picked
