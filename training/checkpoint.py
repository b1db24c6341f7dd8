"""Run folders and self-describing checkpoints: where a stage's output lives, how a checkpoint
becomes a model again, and what data a run saw.

A run folder holds `manifest.json` and `checkpoints/latest.pt`. A checkpoint names its model:
a pretrain run's 'model_config' has 'ppg_model' + 'ppg_config' (the PPG encoder under
'ppg_encoder'); a distill run's has 'model_name' (a registered student-*), 'model_config'
(its StudentConfig under 'ppg_config'), 'model' (the state dict), 'spec' and 'label_norm'; a QAT
run keeps the brevitas state under 'model' and the float student under 'float_model'.
A manifest says which subjects a run trained on: 'trained_on' ([{'store', 'subjects'}] per
store) or 'store' + 'trained_on_subjects'.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyppg.runs import CHECKPOINT, manifest_trained_on, read_manifest
from anyppg.stage import one_line
from edge_runtime.spec import SignalSpec


class StudentLoadError(ValueError):
    pass


def checkpoint_path(run: str | Path) -> Path:
    """A run folder's checkpoints/latest.pt, or the file itself."""
    p = Path(run)
    if p.is_file():
        return p
    c = p / CHECKPOINT
    if not c.is_file():
        raise FileNotFoundError(f"{p}: no {CHECKPOINT} (is it a run folder?)")
    return c


def run_of(ckpt: Path) -> Path | None:
    """The run folder a checkpoint file sits in (None if it is not inside one)."""
    ckpt = Path(ckpt)
    if ckpt.parent.name == CHECKPOINT.parent.name and (ckpt.parent.parent / "manifest.json").is_file():
        return ckpt.parent.parent
    return None


def read_torch(path: Path, error: type[Exception] = ValueError, what: str = "") -> Any:
    """torch.load(weights_only=True) onto the CPU; one-line `error` for anything unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — pickles, corrupt files, non-torch files
        raise error(f"{what}{path}: not a torch checkpoint readable with weights_only=True "
                    f"({type(e).__name__}: {one_line(e)})") from None


def load_checkpoint(run: str | Path) -> tuple[dict, Path]:
    """(checkpoint dict, its path) of a run folder or checkpoint file."""
    path = checkpoint_path(run)
    ck = read_torch(path, StudentLoadError)
    if not isinstance(ck, dict):
        raise StudentLoadError(f"{path}: not a self-describing checkpoint (a raw state dict?)")
    return ck, path


def build_from_config(name: str, saved: dict | None):
    """Registry model `name`, with the fields of a saved config that differ from its defaults
    (a non-default config of a registered architecture)."""
    from training.models import build_model
    entry = build_model(name)
    if isinstance(saved, dict):
        diff = {k: v for k, v in saved.items() if k in entry.config and entry.config[k] != v
                and not (isinstance(v, list) and tuple(v) == tuple(entry.config[k] or ()))}
        if diff:
            entry = build_model(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in diff.items()})
    return entry


def trained_on(run: str | Path | None) -> list[dict]:
    """[{'store', 'subjects'}] a run's manifest says it trained on ([] if none or unreadable)."""
    if run is None:
        return []
    try:
        m = read_manifest(run)
    except (FileNotFoundError, ValueError):
        return []
    return manifest_trained_on(m)


@dataclass
class LoadedStudent:
    name: str
    model: nn.Module                    # float StudentNet, eval mode
    config: dict[str, Any]              # StudentConfig as a dict
    spec: SignalSpec
    label_norm: dict[str, Any]
    checkpoint: dict
    path: Path


def _student_config(ck: dict) -> dict[str, Any]:
    from training.models.student import StudentConfig
    mc = ck.get("model_config") or {}
    cfg = mc.get("ppg_config", mc) if isinstance(mc, dict) else {}
    known = {f.name for f in dataclasses.fields(StudentConfig)}
    return {k: v for k, v in cfg.items() if k in known}


def build_student(ck: dict, path: Path, state_key: str = "model") -> LoadedStudent:
    """Rebuild the float student of a checkpoint from the registry and load its weights."""
    from training.models import build_model
    from training.models import student as student_lib
    name = ck.get("model_name")
    if not name:
        raise StudentLoadError(f"{path}: checkpoint names no model ('model_name' missing)")
    if name not in student_lib.STUDENT_MODELS:
        raise StudentLoadError(f"{path}: model {name!r} is not a student of the registry "
                               f"({', '.join(student_lib.STUDENT_MODELS)}); only students are quantised")
    spec = SignalSpec.from_dict(ck["spec"]) if ck.get("spec") else None
    overrides = _student_config(ck)
    if spec is not None:
        overrides["spec"] = spec
    try:
        entry = build_model(name, **overrides)
    except (ValueError, TypeError) as e:
        raise StudentLoadError(f"{path}: cannot rebuild {name} from its config ({e})") from None
    state = ck.get(state_key)
    if not isinstance(state, dict):
        raise StudentLoadError(f"{path}: no '{state_key}' state dict")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    try:
        missing, unexpected = entry.model.load_state_dict(state, strict=False)
    except RuntimeError as e:     # shape mismatches raise even with strict=False
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e))
        raise StudentLoadError(f"{path}: weights do not fit {name} ({detail}); a checkpoint made "
                               "before the current heads must be retrained") from None
    if missing or unexpected:
        raise StudentLoadError(f"{path}: weights do not fit {name} (missing {list(missing)[:3]}, "
                               f"unexpected {list(unexpected)[:3]})")
    if not student_lib.is_student(entry.model):
        raise StudentLoadError(f"{path}: {name} did not build a StudentNet")
    entry.model.eval()
    return LoadedStudent(name, entry.model, dict(entry.config), entry.spec,
                         dict(ck.get("label_norm") or {}), ck, path)


def label_norm_simple(label_norm: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{head: {'mean', 'std', ...}} whatever the checkpoint's flavour ((m, s) or dicts)."""
    out = {}
    for h, v in (label_norm or {}).items():
        if isinstance(v, dict):
            out[h] = dict(v)
        elif isinstance(v, (list, tuple)) and len(v) == 2:
            out[h] = {"mean": float(v[0]), "std": float(v[1])}
    return out
