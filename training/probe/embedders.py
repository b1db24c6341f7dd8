"""Frozen encoders as embedders: windows (N, L) float32 -> embeddings (N, D) float32.

    emb = load_embedder("runs/bidmc/pretrain")          # a run folder (manifest + checkpoint)
    emb = load_embedder("runs/x/checkpoints/latest.pt") # a checkpoint file
    emb = load_embedder("weights.pth", model="anyppg-net1d")   # a raw state dict
    emb = load_embedder("random:net1d-small:0")         # same architecture, random init (control)
    emb = load_embedder("features")                     # classical PPG features (feature_encoder)
    Z = emb.embed(store.column("ppg"))

An embedder is anything with

    name:  str                      label in tables
    spec:  SignalSpec | None        input contract (checked against the store's), None = any
    seen:  list[SeenData]           the data it was trained on (empty: none / unknown)
    embed(x: (N, L) float32) -> (N, D) float32

so a distilled student or an int8 TFLite model plugs in by registering a loader for its file
kind: `register_loader(kind, matches, load)` where `matches(spec) -> bool` looks at the
encoder string and `load(spec, **opts) -> Embedder`. Loaders are tried in registration order
after the built-in 'random:' prefix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from anyppg.runs import CHECKPOINT, manifest_trained_on
from edge_runtime.spec import SignalSpec


@dataclass
class SeenData:
    """Recordings an encoder was trained on: the store and the subjects it held.

    store:    absolute path of the store (from the run manifest)
    source:   the store's source ('bidmc', 'synthetic', ...), None if its index is unreadable
    input:    the store's input as recorded in its index.json
    subjects: subject ids of the windows it trained on
    origin:   the manifest this came from
    """

    store: str | None
    source: str | None
    input: str | None
    subjects: list[str]
    origin: str
    store_dir: str | None = None     # the folder the index was read from (to resolve 'input')

    def to_dict(self) -> dict:
        return {"store": self.store, "source": self.source, "input": self.input,
                "n_subjects": len(self.subjects), "origin": self.origin}


@dataclass
class FunctionEmbedder:
    """An embedder from a plain function (tests, classical features, foreign runtimes)."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    spec: SignalSpec | None = None
    seen: list[SeenData] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    seen_known: bool = True

    def embed(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(self.fn(np.asarray(x, np.float32)), np.float32)
        if z.ndim == 1:
            z = z[:, None]
        return z


class TorchEmbedder:
    """A registry encoder (training.models) run frozen: eval mode, no_grad, batched on CPU/GPU."""

    def __init__(self, name: str, entry, seen: list[SeenData] | None = None, batch_size: int = 256,
                 threads: int | None = None, device: str = "cpu", info: dict | None = None,
                 seen_known: bool = True):
        import torch
        if entry.input_kind != "ppg":
            raise ValueError(f"{name}: model {entry.name!r} eats {entry.input_kind.upper()}, probes feed PPG")
        self.name = name
        self.entry = entry
        self.spec: SignalSpec = entry.spec
        self.seen = list(seen or [])
        # False: no manifest says what it was trained on (a bare checkpoint), so nothing can be
        # excluded automatically; the report warns (pass --seen to name the training run).
        self.seen_known = bool(seen_known)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.threads = threads
        self.info = dict(info or {})
        self.info.setdefault("model", entry.name)
        self.info.setdefault("embed_dim", entry.embed_dim)
        self.model = entry.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def embed(self, x: np.ndarray) -> np.ndarray:
        import torch
        if self.threads:
            torch.set_num_threads(int(self.threads))
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.entry.input_len:
            raise ValueError(f"{self.name}: expected windows (N, {self.entry.input_len}), got {x.shape}")
        out = np.zeros((len(x), self.entry.embed_dim), np.float32)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + self.batch_size]))[:, None, :]
                z = self.model(xb.to(self.device)).embedding
                out[i:i + len(xb)] = z.float().cpu().numpy()
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{self.name}: the encoder produced NaN/inf embeddings")
        return out


# --------------------------------------------------------------------------- seen data
def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def seen_from_manifest(manifest_path: Path, _depth: int = 0) -> list[SeenData]:
    """The stores (and subjects) a run was trained on, from its manifest.json.

    Reads 'store' + 'trained_on_subjects'; a manifest may also name upstream runs (a distilled
    student's teacher) under 'teacher' / 'teacher_run' / 'parent_run' (a run folder): their
    seen data counts too, because the student inherits what the teacher learned.
    """
    m = _read_json(manifest_path)
    if m is None or _depth > 4:
        return []
    out = []
    for ent in manifest_trained_on(m):
        st = ent["store"]
        idx = _read_json(Path(st) / "index.json") if st else None
        out.append(SeenData(st, (idx or {}).get("source"), (idx or {}).get("input"), ent["subjects"],
                            str(manifest_path), str(Path(st).resolve()) if idx is not None else None))
    for key in ("teacher", "teacher_run", "parent_run"):
        up = m.get(key)
        if isinstance(up, dict):
            up = up.get("run") or up.get("path")
        if isinstance(up, str):
            p = Path(up)
            if p.is_file() and p.name != "manifest.json":
                p = p.parent.parent if p.parent.name == "checkpoints" else p.parent
            mp = p / "manifest.json" if p.is_dir() else p
            if mp.is_file():
                out += seen_from_manifest(mp, _depth + 1)
    return out


# --------------------------------------------------------------------------- loaders
def _register_optional_models() -> None:
    """Students register themselves in the model registry when their module is imported."""
    try:
        import training.models.student  # noqa: F401
    except ImportError:
        pass


_LOADERS: list[tuple[str, Callable[[str], bool], Callable[..., Any]]] = []


def register_loader(kind: str, matches: Callable[[str], bool], load: Callable[..., Any]) -> None:
    """Plug in an encoder kind (e.g. 'tflite': matches=lambda s: s.endswith('.tflite'))."""
    _LOADERS.append((kind, matches, load))


def _torch_load(path: Path):
    from training.checkpoint import read_torch
    return read_torch(path)


def _student_entry(obj: dict, origin: str):
    """A distilled student (distill/QAT checkpoint: 'model', 'model_name', 'model_config')
    rebuilt by `training.checkpoint.build_student`, wrapped as a ModelEntry."""
    import torch
    from training.checkpoint import build_student
    from training.models import ModelEntry
    st = build_student(obj, Path(origin), "float_model" if isinstance(obj.get("float_model"), dict) else "model")
    with torch.no_grad():
        d = int(st.model.eval()(torch.zeros(1, 1, st.spec.ppg_len)).embedding.shape[1])
    return ModelEntry(st.name, st.model, st.spec, "ppg", d, st.config)


def _from_checkpoint_obj(name: str, obj: Any, origin: str, model: str | None, seen, opts,
                         seen_known: bool = True) -> TorchEmbedder:
    from training.models import load_encoder_checkpoint
    if isinstance(obj, dict) and "ppg_encoder" not in obj and obj.get("model_name") \
            and isinstance(obj.get("model"), dict) and not model:
        entry = _student_entry(obj, origin)
        info = {"kind": "student", "checkpoint": origin, "model": entry.name, "step": obj.get("step")}
        return TorchEmbedder(name, entry, seen, info=info, seen_known=seen_known, **opts)
    mc = obj.get("model_config") if isinstance(obj, dict) else None
    model_name = model or (mc or {}).get("ppg_model") or (mc or {}).get("model") or (mc or {}).get("student_model")
    if not model_name:
        raise ValueError(f"{origin}: checkpoint names no model (no 'model_config.ppg_model'); "
                         "pass --model NAME for a raw state dict")
    config = (mc or {}).get("ppg_config") if not model else None
    from training.checkpoint import build_from_config
    _register_optional_models()
    entry = build_from_config(model_name, config)
    state = obj.get("ppg_encoder", obj) if isinstance(obj, dict) else obj
    res = load_encoder_checkpoint(entry, state)
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if isinstance(spec, dict):
        try:
            entry.spec = SignalSpec.from_dict(spec)
        except ValueError:
            pass
    info = {"kind": "checkpoint", "checkpoint": origin, "model": model_name, "loaded_tensors": res.loaded,
            "step": obj.get("step") if isinstance(obj, dict) else None}
    return TorchEmbedder(name, entry, seen, info=info, seen_known=seen_known, **opts)


def _declares_training_data(manifest_path: Path) -> bool:
    m = _read_json(manifest_path) or {}
    return any(k in m for k in ("trained_on_subjects", "trained_on", "store", "teacher", "teacher_run",
                                "parent_run"))


def _seen_caveat(manifest_path: Path) -> str | None:
    """A manifest's own warning about unknowable training data (a published teacher)."""
    m = _read_json(manifest_path) or {}
    c = m.get("teacher_seen")
    return f"teacher_seen: {c}" if isinstance(c, str) and c else None


def _load_random(spec: str, model: str | None = None, **opts) -> TorchEmbedder:
    import torch
    from training.models import build_model
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ValueError(f"{spec!r}: expected random:<model>[:<seed>]")
    seed = int(parts[2]) if len(parts) == 3 else 0
    _register_optional_models()
    torch.manual_seed(seed)
    entry = build_model(parts[1])
    return TorchEmbedder(spec if len(parts) == 3 else f"random:{parts[1]}", entry, [],
                         info={"kind": "random", "model": parts[1], "seed": seed}, **opts)


def _display_name(p: Path) -> str:
    p = p.resolve()
    if p.name in ("pretrain", "distill", "qat", "student", "teacher") and p.parent.name:
        return f"{p.parent.name}/{p.name}"
    return p.name


def _load_run(spec: str, model: str | None = None, **opts) -> TorchEmbedder:
    run = Path(spec)
    ckpt = None
    for cand in (str(CHECKPOINT), "checkpoints/best.pt", "checkpoint.pt", "model.pt"):
        if (run / cand).is_file():
            ckpt = run / cand
            break
    if ckpt is None:
        raise ValueError(f"{run}: run folder without checkpoints/latest.pt")
    seen = seen_from_manifest(run / "manifest.json")
    emb = _from_checkpoint_obj(_display_name(run), _torch_load(ckpt), str(ckpt), model, seen, opts,
                               seen_known=_declares_training_data(run / "manifest.json"))
    caveat = _seen_caveat(run / "manifest.json")
    if caveat:
        emb.info["seen_caveat"] = caveat
    emb.info["run"] = str(run.resolve())
    return emb


def _load_ckpt(spec: str, model: str | None = None, **opts) -> TorchEmbedder:
    p = Path(spec)
    seen, known = [], False
    # A checkpoint inside a run folder: the run's manifest says what it saw.
    for mp in (p.parent / "manifest.json", p.parent.parent / "manifest.json"):
        if mp.is_file():
            seen, known = seen_from_manifest(mp), _declares_training_data(mp)
            break
    name = _display_name(p.parent.parent) if p.parent.name == "checkpoints" else p.stem
    return _from_checkpoint_obj(name, _torch_load(p), str(p), model, seen, opts, seen_known=known)


def _load_features(spec: str, model: str | None = None, **opts):
    from .feature_encoder import load_feature_embedder
    return load_feature_embedder(spec)


register_loader("run", lambda s: Path(s).is_dir() and (Path(s) / "manifest.json").is_file(), _load_run)
register_loader("checkpoint", lambda s: Path(s).suffix in (".pt", ".pth") and Path(s).is_file(), _load_ckpt)
register_loader("features", lambda s: s == "features" or s.startswith("features:"), _load_features)


def embed_windows(emb, x: np.ndarray, flags: np.ndarray | None = None, spec: SignalSpec | None = None) -> np.ndarray:
    """emb.embed(x) (N, L) -> (N, D); embedders with `uses_store_context` (the classical-features
    encoder) also get the windows' quality flags (N,) and the store's PPG rate."""
    if getattr(emb, "uses_store_context", False):
        return emb.embed(x, flags=flags, fs=spec.ppg_fs if spec is not None else None)
    return emb.embed(x)


def check_embedder_spec(spec: str) -> str:
    """Cheap validity check of an --encoder string, without loading torch. Returns its kind."""
    if spec.startswith("random:"):
        return "random"
    for kind, matches, _ in _LOADERS:
        if matches(spec):
            return kind
    p = Path(spec)
    if not p.exists():
        raise ValueError(f"encoder {spec!r}: no such file or folder (or use random:<model>)")
    raise ValueError(f"encoder {spec!r}: not a run folder (manifest.json + checkpoints/latest.pt), "
                     f"a .pt/.pth checkpoint or random:<model>; known kinds: "
                     + ", ".join(["random"] + [k for k, _, _ in _LOADERS]))


def load_embedder(spec: str, model: str | None = None, batch_size: int = 256,
                  threads: int | None = None, device: str = "cpu"):
    """Embedder from an --encoder string (see module docstring). `model` names the registry
    architecture of a raw state dict (or overrides the checkpoint's)."""
    opts = {"batch_size": batch_size, "threads": threads, "device": device}
    if spec.startswith("random:"):
        return _load_random(spec, model, **opts)
    for kind, matches, load in _LOADERS:
        if matches(spec):
            return load(spec, model=model, **opts)
    check_embedder_spec(spec)   # raises the explanatory error
    raise ValueError(f"encoder {spec!r}: no loader")


# --------------------------------------------------------------------------- seen matching
def _synthetic_seed(inp: str | None) -> str:
    kv = dict(p.split("=", 1) for p in (inp or "").replace(":", ",").split(",") if "=" in p)
    return kv.get("seed", "0").strip()


def _resolve_candidates(inp: str | None, store_dir: str | None) -> set[str]:
    if not inp:
        return set()
    p = Path(inp).expanduser()
    if p.is_absolute():
        return {str(p.resolve())}
    from training.probe.tasks import REPO_ROOT
    bases = [Path.cwd(), REPO_ROOT] + ([Path(store_dir).parent] if store_dir else [])
    return {str((b / p).resolve()) for b in bases if (b / p).exists()}


def seen_subjects_in_store(seen: list[SeenData], store_index: dict, store_subjects) -> tuple[set[str], list[str]]:
    """Subjects of a probe store that an encoder has seen, and why they count as the same.

    Same dataset: same source, and
      synthetic: the same generator seed (subjects are a function of seed and index only);
      otherwise: inputs that resolve to the same path, or (conservatively) any overlap of
      subject ids with the encoder's training subjects. If the encoder's store index cannot be
      read at all, overlap of subject ids alone decides.
    """
    subs = set(store_subjects)
    src = store_index.get("source")
    excluded: set[str] = set()
    reasons: list[str] = []
    for s in seen:
        overlap = subs & set(s.subjects)
        if not overlap:
            continue
        if s.source is None:
            excluded |= overlap
            reasons.append(f"{len(overlap)} subjects of {s.origin}: its store index is unreadable, matched by id")
            continue
        if s.source != src:
            continue
        if src == "synthetic":
            if _synthetic_seed(s.input) == _synthetic_seed(store_index.get("input")):
                excluded |= overlap
                reasons.append(f"{len(overlap)} subjects: same synthetic seed as the store of {s.origin}")
            continue
        a = _resolve_candidates(s.input, s.store_dir)
        b = _resolve_candidates(store_index.get("input"), None)
        why = "same input" if a & b else "same source and overlapping subject ids"
        excluded |= overlap
        reasons.append(f"{len(overlap)} subjects: {why} as the store of {s.origin}")
    return excluded, reasons
