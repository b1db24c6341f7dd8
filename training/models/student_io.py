"""Load a student from a distill or QAT run folder (used by probes, benchmarks and quantisation).

A distill run's `checkpoints/latest.pt` holds 'model' (the student's state dict), 'model_name'
(a registered student-*), 'model_config' (its StudentConfig under 'ppg_config', or the config
itself), 'spec' and 'label_norm'. A QAT run's checkpoint additionally holds the brevitas
state ('model') and keeps the float student under 'float_model'.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_runtime.spec import SignalSpec


class StudentLoadError(ValueError):
    pass


def checkpoint_path(run: str | Path) -> Path:
    p = Path(run)
    if p.is_file():
        return p
    c = p / "checkpoints" / "latest.pt"
    if not c.is_file():
        raise FileNotFoundError(f"{p}: no checkpoints/latest.pt (is it a run folder?)")
    return c


def load_checkpoint(run: str | Path) -> tuple[dict, Path]:
    path = checkpoint_path(run)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise StudentLoadError(f"{path}: unreadable checkpoint ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ck, dict):
        raise StudentLoadError(f"{path}: not a self-describing checkpoint (a raw state dict?)")
    return ck, path


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
    missing, unexpected = entry.model.load_state_dict(state, strict=False)
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
