"""`anyppg distill`: distil a frozen PPG teacher into a watch-sized student with task heads.

    anyppg distill --config student-s --teacher runs/bidmc/pretrain --data stores/bidmc \\
        --out runs/bidmc/distill
    anyppg distill --config student-s --set teacher_checkpoint=anyppg_ckpt.pth \\
        --set teacher_model=anyppg-net1d --data stores/x --out runs/x/distill   # published weights
    anyppg distill --config student-s --from-scratch --data stores/bidmc --out runs/bidmc/scratch
    torchrun --nproc_per_node 8 -m training.distill --config student-m --teacher ... (DDP)

Loss per step, on a batch of training windows (WindowDataset split='train'):

    distill_weight * [w_cos * (1 - cos(A s, t)) + w_mse * MSE(A s, t)]
  + head_weight * sum_h heads.h * masked_loss_h

s is the student embedding of the *augmented* window, A a learned linear adapter (student dim ->
teacher dim, thrown away after training), t the teacher embedding of the *clean* window,
standardised per dimension with training-split statistics. Distilling the augmented view
against the clean view's teacher features teaches invariance to wrist artefacts, and it is what
makes caching valid: the frozen teacher sees each clean window exactly once (a feature cache
beside the store, `<store>/teacher_features/<key>.npy`, keyed by teacher name and weights).
Head losses are MSE on standardised targets (hr, rr, sbp, dbp) and BCE on logits (af, quality),
on the windows where that label exists; a head whose label the store lacks is not trained (its
output stays the prior mean; `label_norm[h]['trained']` is false in the checkpoint).

Not implemented: the optional CLIP term against ECG embeddings. With the adapter matching the
teacher's PPG embedding, a contrastive term through the teacher's projection heads adds little
for the cost of a second (ECG) pipeline; the store's ECG is not used here.

`--from-scratch` (= `--set distill_weight=0`) trains the same student on the labels alone with
the same data, augmentation and steps: the comparison that shows what distillation buys.

Writes checkpoints/latest.pt (atomic; 'model' is the student's state dict, heads and
de-normalisation buffers included), metrics.jsonl and manifest.json ('trained_on_subjects' =
this run's training subjects plus the teacher's, so probes exclude every subject either saw).
`--resume` continues from latest.pt to the same result: batches and augmentations are functions
of (seed, step).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from anyppg.config import ConfigError, load_config, to_dict
from anyppg.runs import atomic_path, atomic_write_json, write_manifest
from training.data.augment import AugmentConfig, augment
from training.data.dataset import WindowDataset
from training.ecg_cache import load_cache, weights_key
from training.models import build_model, count_macs, count_params, list_models, load_encoder_checkpoint
from training.models import student as student_lib   # registers the student-* models
from training.models.student import BINARY_HEADS, HEAD_NAMES, REGRESSION_HEADS
from training.pretrain import (_Dist, epoch_batches, lr_at, make_optimizer, total_steps,
                               truncate_metrics)
from training.data.store import WindowStore


@dataclass
class HeadLabels:
    """Store label column(s) behind each head: the first name the store has wins."""
    hr: tuple[str, ...] = ("hr",)
    # BIDMC: 'rr_breaths' (annotated breaths, what the bidmc-rr probe scores) before the
    # monitor's impedance 'rr'; synthetic stores only have 'rr'.
    rr: tuple[str, ...] = ("rr_breaths", "rr")
    af: tuple[str, ...] = ("af",)
    quality: tuple[str, ...] = ("quality",)
    sbp: tuple[str, ...] = ("sbp",)
    dbp: tuple[str, ...] = ("dbp",)


@dataclass
class HeadWeights:
    hr: float = 1.0
    rr: float = 1.0
    af: float = 0.5
    quality: float = 0.5
    sbp: float = 0.5
    dbp: float = 0.5


@dataclass
class DistillConfig:
    student_model: str = "student-s"
    # Teacher: a pretrain run folder or checkpoint (--teacher), or a published checkpoint
    # (teacher_checkpoint) whose architecture teacher_model names (raw state dicts do not).
    teacher: str = ""
    teacher_checkpoint: str = ""
    teacher_model: str = "anyppg-net1d"
    cache_teacher_features: bool = True
    distill_weight: float = 1.0         # 0: labels only (--from-scratch); no teacher is loaded
    w_cos: float = 1.0
    w_mse: float = 1.0
    head_weight: float = 1.0
    heads: HeadWeights = field(default_factory=HeadWeights)
    labels: HeadLabels = field(default_factory=HeadLabels)
    augment: bool = True
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 64                # per rank
    epochs: int = 50
    max_steps: int = 0                  # > 0: stop after this many steps
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 0
    threads: int = 0                    # torch CPU threads (0: leave as is)
    log_every: int = 10
    ckpt_every: int = 100
    eval_every: int = 0                 # > 0: also score val every that many steps
    stats_windows: int = 2048           # live teacher: windows for its feature statistics


# ----------------------------------------------------------------------------- teacher
@dataclass
class Teacher:
    entry: object                       # ModelEntry (model frozen, eval)
    info: dict                          # where it came from (manifest / checkpoint 'teacher')
    seen: list[dict]                    # [{'store', 'subjects'}] the teacher was trained on


def _one_line(e: Exception) -> str:
    s = str(e)
    return s.splitlines()[0] if s else type(e).__name__


def _teacher_manifest_seen(run: Path | None) -> list[dict]:
    if run is None or not (run / "manifest.json").is_file():
        return []
    try:
        m = json.loads((run / "manifest.json").read_text())
    except ValueError:
        return []
    if isinstance(m.get("trained_on"), list):       # a distilled teacher: per-store subjects
        return [{"store": s.get("store"), "subjects": list(s.get("subjects") or [])}
                for s in m["trained_on"] if isinstance(s, dict)]
    stores = m.get("store")
    subjects = list(m.get("trained_on_subjects") or [])
    return [{"store": st, "subjects": subjects} for st in (stores if isinstance(stores, list) else [stores])
            if st]


def _same_ppg_contract(a: dict, b: dict) -> list[str]:
    keys = ("ppg_fs", "window_s", "ppg_band_hz", "ppg_filter_order")
    return [f"{k} {a.get(k)} vs {b.get(k)}" for k in keys
            if k in a and k in b and (list(a[k]) if isinstance(a[k], (list, tuple)) else a[k])
            != (list(b[k]) if isinstance(b[k], (list, tuple)) else b[k])]


def load_teacher(cfg: DistillConfig, store_spec) -> Teacher:
    """The frozen teacher named by cfg.teacher / cfg.teacher_checkpoint. One-line ValueError or
    FileNotFoundError for anything that is not a PPG encoder checkpoint of a known architecture."""
    src = cfg.teacher or cfg.teacher_checkpoint
    if not src:
        raise ConfigError("no teacher: pass --teacher <pretrain run folder | checkpoint>, "
                          "--set teacher_checkpoint=<published weights>, or --from-scratch")
    p = Path(src)
    run = None
    if p.is_dir():
        ckpt = p / "checkpoints" / "latest.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"teacher {p}: not a run folder (no checkpoints/latest.pt)")
        run, kind = p, "run"
    elif p.is_file():
        ckpt = p
        if p.parent.name == "checkpoints" and (p.parent.parent / "manifest.json").is_file():
            run = p.parent.parent
        kind = "published" if (cfg.teacher_checkpoint and not cfg.teacher) else "checkpoint"
    else:
        raise FileNotFoundError(f"teacher {src}: no such file or run folder")
    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:   # noqa: BLE001 — pickles, corrupt files, non-torch files
        raise ValueError(f"teacher {ckpt}: not a torch checkpoint readable with "
                         f"weights_only=True ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"teacher {ckpt}: not a checkpoint (a {type(obj).__name__}, not a dict)")
    mc = obj.get("model_config") if isinstance(obj.get("model_config"), dict) else {}
    name = mc.get("ppg_model") or mc.get("model") or cfg.teacher_model
    if name not in list_models():
        raise ValueError(f"teacher {ckpt}: unknown architecture {name!r}; known: {', '.join(list_models())}")
    overrides = {}
    saved = mc.get("ppg_config") if mc.get("ppg_model") == name or mc.get("model") == name else None
    entry = build_model(name)
    if isinstance(saved, dict):     # a non-default config of a registered architecture
        for k, v in saved.items():
            if k in entry.config and entry.config[k] != v and not (
                    isinstance(v, list) and tuple(v) == tuple(entry.config[k] or ())):
                overrides[k] = tuple(v) if isinstance(v, list) else v
        if overrides:
            entry = build_model(name, **overrides)
    if entry.input_kind != "ppg":
        raise ValueError(f"teacher {ckpt}: {name} is an {entry.input_kind.upper()} encoder; the "
                         "teacher must be a PPG encoder")
    state = obj.get("ppg_encoder", obj)
    try:
        res = load_encoder_checkpoint(entry, state)
    except ValueError as e:
        hint = "" if mc.get("ppg_model") or mc.get("model") else \
            " (it names no model; set teacher_model=<registry name> for raw weights)"
        raise ValueError(f"teacher {ckpt}: does not hold {name} PPG encoder weights{hint}: "
                         f"{_one_line(e)}") from None
    if isinstance(obj.get("spec"), dict):
        bad = _same_ppg_contract(obj["spec"], store_spec.to_dict())
        if bad:
            raise ValueError(f"teacher {ckpt}: trained on a different PPG contract than the store "
                             f"({'; '.join(bad)})")
    entry.model.eval()
    for prm in entry.model.parameters():
        prm.requires_grad_(False)
    info = {"kind": kind, "run": str(run.resolve()) if run else None, "checkpoint": str(ckpt.resolve()),
            "model": name, "embed_dim": entry.embed_dim, "step": obj.get("step"),
            "loaded_tensors": res.loaded}
    return Teacher(entry, info, _teacher_manifest_seen(run))


def teacher_cache_path(store: str | Path, key: str) -> Path:
    return Path(store) / "teacher_features" / f"{key}.npy"


@torch.no_grad()
def build_teacher_cache(store: str | Path, model: nn.Module, key: str, batch_size: int = 64,
                        device="cpu", quiet: bool = False) -> Path:
    """Teacher embeddings of every (clean) window of the store, in store row order, float16;
    written atomically beside the store (same layout as training.ecg_cache, so its
    `load_cache` reads it). Returns at once if it exists."""
    path = teacher_cache_path(store, key)
    if path.is_file():
        return path
    ws = WindowStore(store, split=None)
    model.eval()
    out = None
    for i0 in tqdm(range(0, len(ws), batch_size), desc="cache teacher features", disable=quiet,
                   file=sys.stderr):
        idx = range(i0, min(i0 + batch_size, len(ws)))
        x = torch.from_numpy(np.stack([ws.ppg(i) for i in idx])).unsqueeze(1).to(device)
        f = model(x).embedding.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(ws), f.shape[1]), np.float16)
        out[i0:i0 + len(f)] = f
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, out)
    atomic_write_json(path.with_suffix(".json"), {"key": key, "rows": len(ws), "dim": int(out.shape[1])})
    return path


# ----------------------------------------------------------------------------- model
class DistillNet(nn.Module):
    """Student + adapter in one module, so DDP sees one forward. Returns (embedding (B, D),
    standardised head outputs (B, 6) in HEAD_NAMES order, adapted embedding (B, Dt) or None)."""

    def __init__(self, student: nn.Module, teacher_dim: int | None):
        super().__init__()
        self.student = student
        self.adapter = nn.Linear(student.embed_dim, teacher_dim) if teacher_dim else None

    def forward(self, x: torch.Tensor):
        e = self.student.encode(x)
        z = self.student.head_z(e)
        return e, z, (self.adapter(e) if self.adapter is not None else None)


def resolve_head_labels(cfg: DistillConfig, label_names: list[str]) -> dict[str, str | None]:
    """{head: store label name or None (no such label: head untrained)}."""
    out = {}
    for h in HEAD_NAMES:
        cands = getattr(cfg.labels, h)
        out[h] = next((c for c in cands if c in label_names), None)
    return out


def label_stats(store: WindowStore, head_labels: dict[str, str | None]) -> dict[str, dict]:
    """Per head: label, mean/std of the training labels (regression) or (0, 1), count."""
    norm = {}
    for h in HEAD_NAMES:
        lbl = head_labels[h]
        vals = store.column(lbl) if lbl else np.zeros(0, np.float32)
        vals = vals[np.isfinite(vals)]
        if h in REGRESSION_HEADS and len(vals) >= 2 and float(vals.std()) > 1e-6:
            m, s = float(vals.mean()), float(vals.std())
        elif h in REGRESSION_HEADS:
            m, s = student_lib.DEFAULT_LABEL_NORM[h]
            if len(vals):
                m = float(vals.mean())
        else:
            m, s = 0.0, 1.0
        norm[h] = {"label": lbl, "mean": m, "std": s, "n_train": int(len(vals)),
                   "trained": bool(lbl) and len(vals) > 0}
    return norm


def head_losses(z: torch.Tensor, y: torch.Tensor, norm: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Masked per-head losses. z (B, 6) standardised outputs; y (B, 6) labels in label units
    (NaN = unknown), both in HEAD_NAMES order. A head with no label in the batch gives 0 (still
    in the graph, so DDP sees every parameter used)."""
    out = {}
    for i, h in enumerate(HEAD_NAMES):
        yi = y[:, i]
        mask = torch.isfinite(yi)
        n = mask.sum().clamp_min(1)
        yt = torch.where(mask, yi, torch.zeros_like(yi))
        if h in BINARY_HEADS:
            el = F.binary_cross_entropy_with_logits(z[:, i], yt.clamp(0, 1), reduction="none")
        else:
            el = (z[:, i] - (yt - norm[h]["mean"]) / norm[h]["std"]) ** 2
        out[h] = (el * mask).sum() / n
    return out


def distill_losses(a: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - cos) and MSE between adapted student features a and standardised teacher t (B, Dt)."""
    cos = F.cosine_similarity(a, t, dim=1, eps=1e-6)
    return (1 - cos).mean(), F.mse_loss(a, t)


# ----------------------------------------------------------------------------- evaluation
def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@torch.no_grad()
def evaluate(model: DistillNet, data: Path, split: str, norm: dict, device, teacher_feats=None,
             t_mean=None, t_std=None, batch: int = 256) -> dict:
    """Scores of the student on clean windows of `split`: MAE per regression head (label units),
    AUROC per binary head, and the adapted-feature cosine to the teacher (if any)."""
    st = WindowStore(data, split=split)
    if len(st) == 0:
        return {"skipped": f"no {split} windows"}
    model.eval()
    preds, cos_all = [], []
    for i0 in range(0, len(st), batch):
        idx = list(range(i0, min(i0 + batch, len(st))))
        x = torch.from_numpy(np.stack([st.ppg(i) for i in idx])).unsqueeze(1).to(device)
        out = model.student(x)
        preds.append(torch.stack([getattr(out, student_lib.HEAD_FIELDS[h]) for h in HEAD_NAMES], 1).cpu())
        if teacher_feats is not None and model.adapter is not None:
            rows = st.rows[idx]
            t = torch.from_numpy(np.asarray(teacher_feats[rows], np.float32)).to(device)
            a = model.adapter(out.embedding)
            cos_all.append(F.cosine_similarity(a, (t - t_mean) / t_std, dim=1).cpu())
    pred = torch.cat(preds).numpy()
    res: dict = {"n_windows": len(st), "n_subjects": int(len(set(st.subject_codes.tolist())))}
    for j, h in enumerate(HEAD_NAMES):
        if not norm[h]["label"]:
            continue
        y = st.column(norm[h]["label"])
        m = np.isfinite(y)
        if not m.any():
            continue
        if h in BINARY_HEADS:      # window labels may be fractions (share of the window): >= 0.5
            auc = _auroc((y[m] >= 0.5).astype(int), pred[m, j])
            res[f"{h}_auroc"] = auc if math.isfinite(auc) else None     # None: one class only
        else:
            res[f"{h}_mae"] = float(np.abs(pred[m, j] - y[m]).mean())
            res[f"{h}_mae_mean_predictor"] = float(np.abs(norm[h]["mean"] - y[m]).mean())
        res[f"{h}_n"] = int(m.sum())
    if cos_all:
        res["teacher_cos"] = float(torch.cat(cos_all).mean())
    model.train()
    return res


# ----------------------------------------------------------------------------- training
def _teacher_stats(feats: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    f = np.asarray(feats[np.sort(rows)], np.float64)
    return (torch.tensor(f.mean(0), dtype=torch.float32),
            torch.tensor(np.maximum(f.std(0), 1e-6), dtype=torch.float32))


def _teacher_seen_note(teacher: Teacher | None) -> str | None:
    """A caveat for probes when the teacher's training data is not on record (None if it is)."""
    if teacher is None or teacher.seen:
        return None
    if teacher.info["kind"] == "published":
        return "unknown (published weights: assume it saw public datasets)"
    return (f"unknown: teacher checkpoint {teacher.info['checkpoint']} has no run manifest naming "
            "its training subjects")


def train(cfg: DistillConfig, data: Path, out: Path, resume: bool, quiet: bool = False) -> dict:
    d = _Dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    store = WindowStore(data, split="train")
    if len(store) == 0:
        raise ValueError(f"{data}: no training windows")
    if cfg.student_model not in student_lib.STUDENT_MODELS:
        raise ConfigError(f"student_model must be one of {', '.join(student_lib.STUDENT_MODELS)}, "
                          f"got {cfg.student_model!r}")
    distill = cfg.distill_weight > 0
    teacher = load_teacher(cfg, store.spec) if distill else None

    head_labels = resolve_head_labels(cfg, store.label_names)
    norm = label_stats(store, head_labels)
    trained_heads = [h for h in HEAD_NAMES if norm[h]["trained"] and getattr(cfg.heads, h) > 0]
    if not distill and (cfg.head_weight <= 0 or not trained_heads):
        raise ConfigError(f"nothing to train: no teacher (distill_weight=0) and no head has labels "
                          f"in {data} (store labels: {store.label_names})")
    label_names = sorted({lbl for lbl in head_labels.values() if lbl}, key=store.label_names.index)
    # column of each head in the batch's label vector (-1: none)
    head_cols = [label_names.index(head_labels[h]) if head_labels[h] else -1 for h in HEAD_NAMES]

    torch.manual_seed(cfg.seed)      # same init on every rank (DDP broadcasts rank 0's anyway)
    s_entry = build_model(cfg.student_model, spec=store.spec)
    student = s_entry.model
    student.set_label_norm({h: (norm[h]["mean"], norm[h]["std"]) for h in REGRESSION_HEADS})
    model = DistillNet(student, teacher.entry.embed_dim if teacher else None).to(d.device)

    feats = t_mean = t_std = None
    if teacher is not None:
        tmodel = teacher.entry.model.to(d.device)
        if cfg.cache_teacher_features:
            key = weights_key(teacher.info["model"], tmodel)
            if d.main:
                build_teacher_cache(data, tmodel, key, device=d.device, quiet=quiet)
            d.barrier()
            feats = load_cache(teacher_cache_path(data, key), WindowStore(data, split=None))
            t_mean, t_std = _teacher_stats(feats, store.rows)
        else:
            ws = WindowStore(data, split=None)
            rows = np.sort(store.rows)[: cfg.stats_windows]
            with torch.no_grad():
                f = np.concatenate([tmodel(torch.from_numpy(np.stack([ws.ppg(int(r)) for r in rows[i:i + 64]]))
                                           .unsqueeze(1).to(d.device)).embedding.float().cpu().numpy()
                                    for i in range(0, len(rows), 64)])
            t_mean = torch.tensor(f.mean(0), dtype=torch.float32)
            t_std = torch.tensor(np.maximum(f.std(0), 1e-6), dtype=torch.float32)
        t_mean, t_std = t_mean.to(d.device), t_std.to(d.device)

    ddp = DistributedDataParallel(model) if d.world > 1 else model
    opt, params = make_optimizer(model, cfg)

    ds = WindowDataset(data, split="train", label_names=label_names)
    steps_per_epoch = len(ds) // (cfg.batch_size * d.world)
    if steps_per_epoch == 0:
        raise ValueError(f"{data}: {len(ds)} training windows are fewer than one global batch "
                         f"({cfg.batch_size} x {d.world} ranks)")
    total = total_steps(steps_per_epoch, cfg.epochs, cfg.max_steps)
    ckpt_path = out / "checkpoints" / "latest.pt"
    metrics_path = out / "metrics.jsonl"
    step = 0
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume from")
        ck = torch.load(ckpt_path, map_location=d.device, weights_only=True)
        student.load_state_dict(ck["model"])
        if model.adapter is not None:
            if not ck.get("adapter"):
                raise ValueError(f"{ckpt_path}: was trained without a teacher; resume it with --from-scratch")
            model.adapter.load_state_dict(ck["adapter"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        torch.set_rng_state(ck["rng"][d.rank % len(ck["rng"])].cpu())
        if d.main:
            truncate_metrics(metrics_path, step)
    elif d.main:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")

    model_config = {"model": cfg.student_model, "ppg_model": cfg.student_model,
                    "student_model": cfg.student_model, "ppg_config": s_entry.config,
                    "embed_dim": s_entry.embed_dim, "heads": list(HEAD_NAMES),
                    "outputs": list(student_lib.StudentOutput._fields)}

    def save(step: int):
        rng = [torch.get_rng_state()]
        if d.world > 1:
            rng = [torch.zeros_like(rng[0]) for _ in range(d.world)]
            dist.all_gather_object(rng, torch.get_rng_state())
        if not d.main:
            return
        ckpt = {"model": {k: v.detach().cpu() for k, v in student.state_dict().items()},
                "model_name": cfg.student_model, "model_config": model_config,
                "spec": store.spec.to_dict(), "label_norm": norm, "step": step, "config": to_dict(cfg),
                "optimizer": opt.state_dict(),
                "adapter": model.adapter.state_dict() if model.adapter is not None else None,
                "teacher_norm": ({"mean": t_mean.cpu(), "std": t_std.cpu()} if t_mean is not None else None),
                "teacher": teacher.info if teacher else None, "rng": rng}
        with atomic_path(ckpt_path) as tmp:
            torch.save(ckpt, tmp)

    aug_cfg = cfg.aug
    last: dict = {}
    t_log, n_log = time.perf_counter(), 0
    bar = tqdm(total=total, initial=step, desc="distill", disable=quiet or not d.main, file=sys.stderr)
    model.train()
    w_heads = torch.tensor([getattr(cfg.heads, h) if norm[h]["trained"] else 0.0 for h in HEAD_NAMES],
                           device=d.device)
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        batches = epoch_batches(len(ds), cfg.batch_size, epoch, cfg.seed, d.rank, d.world)[offset:]
        loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed))
        for batch in loader:
            if step >= total:
                break
            lr = lr_at(step, cfg, total)
            for gr in opt.param_groups:
                gr["lr"] = lr
            clean = batch["ppg"].to(d.device, non_blocking=True)
            x = clean
            if cfg.augment:
                g = torch.Generator(device=d.device).manual_seed(
                    (cfg.seed * 1_000_003 + step) * 64 + d.rank)
                x = augment(clean, g, aug_cfg, fs=store.spec.ppg_fs)
            lab = batch["labels"].to(d.device)
            y = torch.full((len(x), len(HEAD_NAMES)), float("nan"), device=d.device)
            for i, c in enumerate(head_cols):
                if c >= 0:
                    y[:, i] = lab[:, c]

            e, z, a = ddp(x)
            hl = head_losses(z, y, norm)
            loss_heads = sum(w_heads[i] * hl[h] for i, h in enumerate(HEAD_NAMES))
            loss = cfg.head_weight * loss_heads
            l_cos = l_mse = None
            if teacher is not None:
                if feats is not None:
                    t = torch.from_numpy(np.asarray(feats[batch["row"].numpy()], np.float32)).to(d.device)
                else:
                    with torch.no_grad():
                        t = teacher.entry.model(clean).embedding.float()
                t = (t - t_mean) / t_std
                l_cos, l_mse = distill_losses(a, t)
                loss = loss + cfg.distill_weight * (cfg.w_cos * l_cos + cfg.w_mse * l_mse)
            loss_val = d.mean(float(loss.detach()))
            if not math.isfinite(loss_val):
                done = int(torch.load(ckpt_path, weights_only=True)["step"]) if ckpt_path.is_file() else 0
                raise FloatingPointError(f"step {step + 1}: loss is {loss_val}; stopped, last good "
                                         f"checkpoint (step {done}) kept at {ckpt_path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            step += 1
            n_log += len(x) * d.world
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:
                dt = time.perf_counter() - t_log
                last = {"step": step, "epoch": epoch, "loss": loss_val,
                        "loss_heads": d.mean(float(loss_heads.detach())),
                        **{f"loss_{h}": d.mean(float(hl[h].detach())) for h in HEAD_NAMES if norm[h]["trained"]},
                        "lr": lr, "grad_norm": gnorm, "windows_per_s": n_log / dt}
                if l_cos is not None:
                    last["loss_cos"] = d.mean(float(l_cos.detach()))
                    last["loss_mse"] = d.mean(float(l_mse.detach()))
                    last["loss_distill"] = cfg.w_cos * last["loss_cos"] + cfg.w_mse * last["loss_mse"]
                t_log, n_log = time.perf_counter(), 0
                if cfg.eval_every and step % cfg.eval_every == 0 and d.main:
                    last["val"] = evaluate(model, data, "val", norm, d.device, feats, t_mean, t_std)
                if d.main:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(last) + "\n")
                    bar.set_postfix(loss=f"{loss_val:.3f}")
            if step % cfg.ckpt_every == 0 or step == total:
                save(step)
    bar.close()

    metrics: dict = {"steps": step, "train": last}
    if d.main:
        for split in ("val", "test"):
            try:
                metrics[split] = evaluate(model, data, split, norm, d.device, feats, t_mean, t_std)
            except ValueError as e:
                metrics[split] = {"skipped": _one_line(e)}
        metrics["params"] = count_params(student)
        metrics["macs_per_window"] = count_macs(student, (1, 1, store.spec.ppg_len))
        this_store = str(Path(data).resolve())
        seen = [{"store": this_store, "subjects": sorted(set(store.subject_ids())), "role": "distill"}]
        if teacher is not None:
            seen += [{**s, "role": "teacher"} for s in teacher.seen]
        stores = list(dict.fromkeys(s["store"] for s in seen if s.get("store")))
        inputs = {"store_index": str(Path(data) / "index.json")}
        if teacher is not None:
            inputs["teacher_checkpoint"] = teacher.info["checkpoint"]
        write_manifest(out, "distill", to_dict(cfg), inputs, metrics, extra={
            "store": stores,
            "trained_on_subjects": sorted({x for s in seen for x in s["subjects"]}),
            "trained_on": seen,
            "teacher": teacher.info if teacher else None,
            "teacher_seen": _teacher_seen_note(teacher),
            "model_name": cfg.student_model,
            "model_config": model_config,
            "label_norm": norm,
            "checkpoint": str(ckpt_path),
            "world_size": d.world,
            "spec": store.spec.to_dict(),
        })
    d.barrier()
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="student-s", help="configs/distill/<name>.yaml or a path")
    p.add_argument("--teacher", default=None,
                   help="pretrain run folder or checkpoint (= --set teacher=...)")
    p.add_argument("--data", required=True, help="window store")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--from-scratch", action="store_true",
                   help="no teacher: train the same student on labels only (distill_weight=0)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        sets = list(args.set)
        if args.teacher is not None:
            sets.append(f"teacher={args.teacher}")
        if args.from_scratch:
            sets.append("distill_weight=0")
        cfg = load_config(DistillConfig(), "distill", args.config, sets)
        metrics = train(cfg, Path(args.data), Path(args.out), args.resume, args.quiet)
    except (ConfigError, ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"anyppg distill: error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:
        print(json.dumps(metrics, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
