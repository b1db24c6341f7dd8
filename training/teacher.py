"""A frozen PPG teacher for distillation: from a pretrain run folder, a checkpoint in one, or
published weights whose architecture a registry name gives (raw state dicts name none)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anyppg.stage import one_line
from edge_runtime.spec import SignalSpec
from training.checkpoint import build_from_config, checkpoint_path, read_torch, run_of, trained_on
from training.models import list_models, load_encoder_checkpoint


@dataclass
class Teacher:
    entry: object                       # ModelEntry (model frozen, eval)
    info: dict                          # where it came from (manifest / checkpoint 'teacher')
    seen: list[dict]                    # [{'store', 'subjects'}] the teacher was trained on

    def seen_note(self) -> str | None:
        """A caveat for probes when the teacher's training data is not on record (None if it is)."""
        if self.seen:
            return None
        if self.info["kind"] == "published":
            return "unknown (published weights: assume it saw public datasets)"
        return (f"unknown: teacher checkpoint {self.info['checkpoint']} has no run manifest naming "
                "its training subjects")


def _locate(src: str, published: bool) -> tuple[Path, Path | None, str]:
    """(checkpoint file, run folder or None, kind 'run' | 'checkpoint' | 'published')."""
    p = Path(src)
    if p.is_dir():
        try:
            return checkpoint_path(p), p, "run"
        except FileNotFoundError:
            raise FileNotFoundError(f"teacher {p}: not a run folder (no checkpoints/latest.pt)") from None
    if p.is_file():
        return p, run_of(p), "published" if published else "checkpoint"
    raise FileNotFoundError(f"teacher {src}: no such file or run folder")


def load_teacher(teacher: str, teacher_checkpoint: str, teacher_model: str, store_spec: SignalSpec) -> Teacher:
    """The frozen teacher named by `teacher` (run folder / checkpoint) or `teacher_checkpoint`
    (published weights of architecture `teacher_model`). One-line ValueError or
    FileNotFoundError for anything that is not a PPG encoder checkpoint of a known architecture
    made under the store's signal spec."""
    src = teacher or teacher_checkpoint
    if not src:
        raise ValueError("no teacher: pass --teacher <pretrain run folder | checkpoint>, "
                         "--set teacher_checkpoint=<published weights>, or --from-scratch")
    ckpt, run, kind = _locate(src, published=bool(teacher_checkpoint and not teacher))
    obj = read_torch(ckpt, what="teacher ")
    if not isinstance(obj, dict):
        raise ValueError(f"teacher {ckpt}: not a checkpoint (a {type(obj).__name__}, not a dict)")
    mc = obj.get("model_config") if isinstance(obj.get("model_config"), dict) else {}
    name = mc.get("ppg_model") or mc.get("model") or teacher_model
    if name not in list_models():
        raise ValueError(f"teacher {ckpt}: unknown architecture {name!r}; known: {', '.join(list_models())}")
    saved = mc.get("ppg_config") if mc.get("ppg_model") == name or mc.get("model") == name else None
    entry = build_from_config(name, saved)
    if entry.input_kind != "ppg":
        raise ValueError(f"teacher {ckpt}: {name} is an {entry.input_kind.upper()} encoder; the "
                         "teacher must be a PPG encoder")
    try:
        res = load_encoder_checkpoint(entry, obj.get("ppg_encoder", obj))
    except ValueError as e:
        hint = "" if mc.get("ppg_model") or mc.get("model") else \
            " (it names no model; set teacher_model=<registry name> for raw weights)"
        raise ValueError(f"teacher {ckpt}: does not hold {name} PPG encoder weights{hint}: "
                         f"{one_line(e)}") from None
    if isinstance(obj.get("spec"), dict):
        store_spec.check_compatible(SignalSpec.from_dict(obj["spec"]), f"teacher {ckpt}")
    entry.model.eval()
    for prm in entry.model.parameters():
        prm.requires_grad_(False)
    info = {"kind": kind, "run": str(run.resolve()) if run else None, "checkpoint": str(ckpt.resolve()),
            "model": name, "embed_dim": entry.embed_dim, "step": obj.get("step"),
            "loaded_tensors": res.loaded}
    return Teacher(entry, info, [s for s in trained_on(run) if s["store"]])
