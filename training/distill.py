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
beside the store, `<store>/teacher_features/<key>.npy`, keyed by teacher name and weights:
`training.features`).
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

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from anyppg.config import to_dict
from anyppg.runs import write_manifest
from anyppg.stage import add_run_io, one_line, run_stage, stage_config, stage_parser
from training import loop
from training.data.augment import AugmentConfig, augment
from training.data.dataset import WindowDataset
from training.data.mix import load_mixes
from training.data.store import WindowStore
from training.features import build_cache, cache_path, load_cache, mean_std, standardisation, weights_key
from training.heads import HeadLabels, HeadWeights, label_stats, resolve_head_labels
from training.losses import distill_losses, head_losses
from training.metrics import auroc
from training.models import build_model, count_macs, count_params
from training.models import student as student_lib   # registers the student-* models
from training.models.student import BINARY_HEADS, HEAD_FIELDS, HEAD_NAMES, REGRESSION_HEADS
from training.teacher import Teacher, load_teacher


@dataclass
class DistillConfig(loop.LoopConfig):
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
    # extra training stores 'path:fraction' (training.data.mix): heads only, no teacher term
    mix: list[str] = field(default_factory=list)
    labels: HeadLabels = field(default_factory=HeadLabels)
    augment: bool = True
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    # True: windows labelled AF (af >= 0.5) train the af head, the embedding and the other heads
    # but not hr / hr_confidence (their HR label is treated as unknown). The wrist student's
    # setting: learning HR during AF cost sinus HR accuracy, AF itself did not (README, AF wearers)
    hr_not_in_af: bool = False
    epochs: int = 50                    # (the other loop settings: training.loop.LoopConfig)
    lr: float = 3e-3
    warmup_steps: int = 50
    eval_every: int = 0                 # > 0: also score val every that many steps
    stats_windows: int = 2048           # live teacher: windows for its feature statistics


# ----------------------------------------------------------------------------- model
class DistillNet(nn.Module):
    """Student + adapter in one module, so DDP sees one forward. Returns (embedding (B, D),
    standardised head outputs (B, 6) in HEAD_NAMES order, adapted embedding (B, Dt) or None)."""

    def __init__(self, student: nn.Module, teacher_dim: int | None):
        super().__init__()
        self.student = student
        self.adapter = nn.Linear(student.embed_dim, teacher_dim) if teacher_dim else None

    def forward(self, x: torch.Tensor, accel: torch.Tensor | None = None):
        e = self.student.encode(x, accel)
        z = self.student.head_z(e)
        return e, z, (self.adapter(e) if self.adapter is not None else None)


@dataclass
class TeacherTargets:
    """What the student is distilled towards: the frozen teacher, its cached features (or None:
    run it live) and the per-dimension standardisation of its features on training windows."""
    teacher: Teacher
    feats: np.ndarray | None
    mean: torch.Tensor
    std: torch.Tensor

    def batch(self, batch: dict, clean: torch.Tensor, device) -> torch.Tensor:
        """Standardised teacher embeddings of a batch's clean windows (B, Dt)."""
        if self.feats is not None:
            t = torch.from_numpy(np.asarray(self.feats[batch["row"].numpy()], np.float32)).to(device)
        else:
            with torch.no_grad():
                t = self.teacher.entry.model(clean).embedding.float()
        return (t - self.mean) / self.std


def teacher_targets(cfg: DistillConfig, teacher: Teacher, data: Path, store: WindowStore,
                    d: loop.Dist, quiet: bool) -> TeacherTargets:
    tmodel = teacher.entry.model.to(d.device)
    feats = None
    if cfg.cache_teacher_features:
        key = weights_key(teacher.info["model"], tmodel)
        if d.main:
            build_cache(data, tmodel, key, kind="teacher", device=d.device, quiet=quiet)
        d.barrier()
        feats = load_cache(cache_path(data, key, "teacher"), WindowStore(data, split=None))
        t_mean, t_std = standardisation(feats, store.rows)
    else:
        ws = WindowStore(data, split=None)
        rows = np.sort(store.rows)[: cfg.stats_windows]
        with torch.no_grad():
            f = np.concatenate([tmodel(torch.from_numpy(np.stack([ws.ppg(int(r)) for r in rows[i:i + 64]]))
                                       .unsqueeze(1).to(d.device)).embedding.float().cpu().numpy()
                                for i in range(0, len(rows), 64)])
        t_mean, t_std = mean_std(f)
    return TeacherTargets(teacher, feats, t_mean.to(d.device), t_std.to(d.device))


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: DistillNet, data: Path, split: str, norm: dict, device,
             targets: TeacherTargets | None = None, batch: int = 256) -> dict:
    """Scores of the student on clean windows of `split`: MAE per regression head (label units),
    AUROC per binary head, and the adapted-feature cosine to the teacher (if any)."""
    st = WindowStore(data, split=split)
    if len(st) == 0:
        return {"skipped": f"no {split} windows"}
    model.eval()
    preds, cos_all = [], []
    cached = targets is not None and targets.feats is not None and model.adapter is not None
    for i0 in range(0, len(st), batch):
        idx = list(range(i0, min(i0 + batch, len(st))))
        x = torch.from_numpy(np.stack([st.ppg(i) for i in idx])).unsqueeze(1).to(device)
        acc = (torch.from_numpy(np.stack([st.accel(i) for i in idx])).to(device)
               if st.has_accel and getattr(model.student, "takes_accel", False) else None)
        out = model.student(x, acc)
        nan = torch.full_like(out.hr, float("nan"))     # heads this student does not output
        preds.append(torch.stack([getattr(out, HEAD_FIELDS[h], nan) for h in HEAD_NAMES], 1).cpu())
        if cached:
            t = torch.from_numpy(np.asarray(targets.feats[st.rows[idx]], np.float32)).to(device)
            a = model.adapter(out.embedding)
            cos_all.append(F.cosine_similarity(a, (t - targets.mean) / targets.std, dim=1).cpu())
    res = {"n_windows": len(st), "n_subjects": int(len(set(st.subject_codes.tolist()))),
           **head_scores(st, torch.cat(preds).numpy(), norm)}
    if cos_all:
        res["teacher_cos"] = float(torch.cat(cos_all).mean())
    model.train()
    return res


def head_scores(st: WindowStore, pred: np.ndarray, norm: dict) -> dict:
    """MAE (and the training-mean predictor's MAE) per regression head, AUROC per binary head,
    on the windows of `st` that have the head's label. pred (N, H) in HEAD_NAMES order."""
    res: dict = {}
    for j, h in enumerate(HEAD_NAMES):
        if not norm[h]["label"] or np.isnan(pred[:, j]).all():   # no label, or no such output
            continue
        y = st.column(norm[h]["label"])
        m = np.isfinite(y)
        if not m.any():
            continue
        if h in BINARY_HEADS:      # window labels may be fractions (share of the window): >= 0.5
            auc = auroc((y[m] >= 0.5).astype(int), pred[m, j])
            res[f"{h}_auroc"] = auc if np.isfinite(auc) else None     # None: one class only
        else:
            res[f"{h}_mae"] = float(np.abs(pred[m, j] - y[m]).mean())
            res[f"{h}_mae_mean_predictor"] = float(np.abs(norm[h]["mean"] - y[m]).mean())
        res[f"{h}_n"] = int(m.sum())
    return res


# ----------------------------------------------------------------------------- training
@dataclass
class HeadPlan:
    """Which store label trains which head, and how they are standardised."""
    norm: dict                          # per head: label, mean, std, n_train, trained
    label_names: list[str]              # store labels the dataset loads, store order
    cols: list[int]                     # per head: column in the batch's label vector, -1 none
    hr_mask_col: int = -1               # >= 0: hr unknown where this column (af) is >= 0.5

    def targets(self, lab: torch.Tensor, device) -> torch.Tensor:
        """(B, H) labels in head order, NaN where a head has no label."""
        y = torch.full((len(lab), len(HEAD_NAMES)), float("nan"), device=device)
        for i, c in enumerate(self.cols):
            if c >= 0:
                y[:, i] = lab[:, c]
        if self.hr_mask_col >= 0:
            y[lab[:, self.hr_mask_col].to(device) >= 0.5, HEAD_NAMES.index("hr")] = float("nan")
        return y


def head_plan(cfg: DistillConfig, store: WindowStore, data: Path, distill: bool) -> HeadPlan:
    head_labels = resolve_head_labels(cfg.labels, store.label_names)
    norm = label_stats(store, head_labels)
    trained_heads = [h for h in HEAD_NAMES if norm[h]["trained"] and getattr(cfg.heads, h) > 0]
    if not distill and (cfg.head_weight <= 0 or not trained_heads):
        raise ValueError(f"nothing to train: no teacher (distill_weight=0) and no head has labels "
                         f"in {data} (store labels: {store.label_names})")
    label_names = sorted({lbl for lbl in head_labels.values() if lbl}, key=store.label_names.index)
    cols = [label_names.index(head_labels[h]) if head_labels[h] else -1 for h in HEAD_NAMES]
    mask = -1
    if cfg.hr_not_in_af:
        if not head_labels.get("af"):
            raise ValueError(f"hr_not_in_af: {data} has no af label to mask hr by")
        mask = label_names.index(head_labels["af"])
    return HeadPlan(norm, label_names, cols, mask)


def _model_config(cfg: DistillConfig, s_entry) -> dict:
    return {"model": cfg.student_model, "ppg_model": cfg.student_model,
            "student_model": cfg.student_model, "ppg_config": s_entry.config,
            "embed_dim": s_entry.embed_dim, "heads": list(HEAD_NAMES),
            "outputs": list(s_entry.model.output_fields)}


def _resume(ck: dict, model: DistillNet, opt, path: Path) -> int:
    model.student.load_state_dict(ck["model"])
    if model.adapter is not None:
        if not ck.get("adapter"):
            raise ValueError(f"{path}: was trained without a teacher; resume it with --from-scratch")
        model.adapter.load_state_dict(ck["adapter"])
    opt.load_state_dict(ck["optimizer"])
    return int(ck["step"])


def _step_loss(cfg: DistillConfig, ddp, x, clean, y, batch, plan: HeadPlan, w_heads, targets, d,
               accel=None):
    """Total loss of one step and its parts: (loss, per-head losses, heads sum, cos, mse)."""
    e, z, a = ddp(x, accel)
    hl = head_losses(z, y, plan.norm)
    loss_heads = sum(w_heads[i] * hl[h] for i, h in enumerate(HEAD_NAMES))
    loss = cfg.head_weight * loss_heads
    l_cos = l_mse = None
    if targets is not None:
        # the primary store's windows come first (mix windows have no teacher targets)
        l_cos, l_mse = distill_losses(a[: len(clean)], targets.batch(batch, clean, d.device))
        loss = loss + cfg.distill_weight * (cfg.w_cos * l_cos + cfg.w_mse * l_mse)
    return loss, hl, loss_heads, l_cos, l_mse


def _log_record(cfg, d, step, epoch, loss_val, parts, norm, lr, gnorm, rate) -> dict:
    _, hl, loss_heads, l_cos, l_mse = parts
    rec = {"step": step, "epoch": epoch, "loss": loss_val,
           "loss_heads": d.mean(float(loss_heads.detach())),
           **{f"loss_{h}": d.mean(float(hl[h].detach())) for h in HEAD_NAMES if norm[h]["trained"]},
           "lr": lr, "grad_norm": gnorm, "windows_per_s": rate}
    if l_cos is not None:
        rec["loss_cos"] = d.mean(float(l_cos.detach()))
        rec["loss_mse"] = d.mean(float(l_mse.detach()))
        rec["loss_distill"] = cfg.w_cos * rec["loss_cos"] + cfg.w_mse * rec["loss_mse"]
    return rec


def _build(cfg: DistillConfig, data: Path, d: loop.Dist, quiet: bool):
    """Store, teacher targets, head plan and the student + adapter, before any step."""
    store = WindowStore(data, split="train")
    if len(store) == 0:
        raise ValueError(f"{data}: no training windows")
    if cfg.student_model not in student_lib.STUDENT_MODELS:
        raise ValueError(f"student_model must be one of {', '.join(student_lib.STUDENT_MODELS)}, "
                         f"got {cfg.student_model!r}")
    distill = cfg.distill_weight > 0
    teacher = load_teacher(cfg.teacher, cfg.teacher_checkpoint, cfg.teacher_model, store.spec) \
        if distill else None
    plan = head_plan(cfg, store, data, distill)
    torch.manual_seed(cfg.seed)      # same init on every rank (DDP broadcasts rank 0's anyway)
    s_entry = build_model(cfg.student_model, spec=store.spec)
    s_entry.model.set_label_norm({h: (plan.norm[h]["mean"], plan.norm[h]["std"]) for h in REGRESSION_HEADS})
    model = DistillNet(s_entry.model, teacher.entry.embed_dim if teacher else None).to(d.device)
    targets = teacher_targets(cfg, teacher, data, store, d, quiet) if teacher is not None else None
    return store, targets, plan, s_entry, model


def train(cfg: DistillConfig, data: Path, out: Path, resume: bool, quiet: bool = False) -> dict:
    d = loop.Dist()
    loop.set_threads(cfg.threads)
    store, targets, plan, s_entry, model = _build(cfg, data, d, quiet)
    ddp = DistributedDataParallel(model) if d.world > 1 else model
    opt, params = loop.make_optimizer(model, cfg)
    # a student with an accel input needs the primary store's accelerometer windows; mix stores
    # (BIDMC, PPG-BP: no accelerometer) feed zeros, a still wrist
    takes_accel = getattr(model.student, "takes_accel", False)
    ds = WindowDataset(data, split="train", label_names=plan.label_names,
                       with_accel="require" if takes_accel else None)
    mixes = load_mixes(cfg.mix, plan.label_names, store.spec)
    steps_per_epoch = len(ds) // (cfg.batch_size * d.world)
    loop.check_steps(steps_per_epoch, len(ds), data, cfg.batch_size, d.world)
    total = loop.total_steps(steps_per_epoch, cfg.epochs, cfg.max_steps)
    run = loop.RunLog(out, d)
    ck = run.start(resume, store.spec)
    step = _resume(ck, model, opt, run.ckpt_path) if ck else 0
    model_config = _model_config(cfg, s_entry)
    teacher = targets.teacher if targets else None

    def save(step: int):
        run.save({"model": {k: v.detach().cpu() for k, v in model.student.state_dict().items()},
                  "model_name": cfg.student_model, "model_config": model_config,
                  "spec": store.spec.to_dict(), "label_norm": plan.norm, "step": step, "config": to_dict(cfg),
                  "optimizer": opt.state_dict(),
                  "adapter": model.adapter.state_dict() if model.adapter is not None else None,
                  "teacher_norm": ({"mean": targets.mean.cpu(), "std": targets.std.cpu()} if targets else None),
                  "teacher": teacher.info if teacher else None})

    last: dict = {}
    meter = loop.RateMeter()
    bar = run.progress(total, step, "distill", quiet)
    model.train()
    done = step
    w_heads = torch.tensor([getattr(cfg.heads, h) if plan.norm[h]["trained"] else 0.0 for h in HEAD_NAMES],
                           device=d.device)
    batches_of = lambda epoch: loop.epoch_batches(len(ds), cfg.batch_size, epoch, cfg.seed, d.rank, d.world)
    for step, epoch, batch in loop.batch_stream(ds, batches_of, steps_per_epoch, step, total, cfg.seed,
                                                cfg.num_workers):
        lr = loop.lr_at(step, cfg.lr, cfg.warmup_steps, total)
        loop.set_lr(opt, lr)
        clean = batch["ppg"].to(d.device, non_blocking=True)
        x = clean
        if cfg.augment:
            g = torch.Generator(device=d.device).manual_seed((cfg.seed * 1_000_003 + step) * 64 + d.rank)
            x = augment(clean, g, cfg.aug, fs=store.spec.ppg_fs)
        lab = batch["labels"]
        accel = batch["accel"].to(d.device) if takes_accel else None
        if mixes:
            gm = torch.Generator().manual_seed(cfg.seed * 7_919 + step * 31 + d.rank)
            drawn = [m.draw(m.count(len(clean)), gm) for m in mixes]
            xm = torch.cat([xb for xb, _ in drawn]).to(d.device)
            if cfg.augment:
                xm = augment(xm, g, cfg.aug, fs=store.spec.ppg_fs)
            x = torch.cat([x, xm])
            lab = torch.cat([lab, *(yb for _, yb in drawn)])
            if accel is not None:
                accel = torch.cat([accel, accel.new_zeros(len(xm), *accel.shape[1:])])
        y = plan.targets(lab.to(d.device), d.device)
        parts = _step_loss(cfg, ddp, x, clean, y, batch, plan, w_heads, targets, d, accel)
        loss_val = d.mean(float(parts[0].detach()))
        run.fail_if_not_finite(step, loss_val)
        opt.zero_grad(set_to_none=True)
        parts[0].backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        opt.step()
        done = step + 1
        meter.add(len(x) * d.world)
        bar.update(1)
        if loop.due(done, cfg.log_every, total):
            last = _log_record(cfg, d, done, epoch, loss_val, parts, plan.norm, lr, gnorm, meter.rate())
            if cfg.eval_every and done % cfg.eval_every == 0 and d.main:
                last["val"] = evaluate(model, data, "val", plan.norm, d.device, targets)
            run.log(last)
            bar.set_postfix(loss=f"{loss_val:.3f}")
        if loop.due(done, cfg.ckpt_every, total):
            save(done)
    bar.close()
    metrics = {"steps": done, "train": last}
    if d.main:
        _finish(cfg, data, out, store, model, plan, targets, model_config, run, d, metrics)
    d.barrier()
    return metrics


def _finish(cfg, data, out, store, model, plan, targets, model_config, run, d, metrics) -> None:
    """Final scores on val/test and the manifest ('trained_on_subjects': this run's training
    subjects plus the teacher's, so probes exclude every subject either saw)."""
    for split in ("val", "test"):
        try:
            metrics[split] = evaluate(model, data, split, plan.norm, d.device, targets)
        except ValueError as e:
            metrics[split] = {"skipped": one_line(e)}
    metrics["params"] = count_params(model.student)
    metrics["macs_per_window"] = count_macs(model.student, (1, 1, store.spec.ppg_len))
    teacher = targets.teacher if targets else None
    seen = [{"store": str(Path(data).resolve()), "subjects": sorted(set(store.subject_ids())), "role": "distill"}]
    if teacher is not None:
        seen += [{**s, "role": "teacher"} for s in teacher.seen]
    inputs = {"store_index": str(Path(data) / "index.json")}
    if teacher is not None:
        inputs["teacher_checkpoint"] = teacher.info["checkpoint"]
    write_manifest(out, "distill", to_dict(cfg), inputs, metrics, extra={
        "store": list(dict.fromkeys(s["store"] for s in seen if s.get("store"))),
        "trained_on_subjects": sorted({x for s in seen for x in s["subjects"]}),
        "trained_on": seen,
        "teacher": teacher.info if teacher else None,
        "teacher_seen": teacher.seen_note() if teacher else None,
        "model_name": cfg.student_model,
        "model_config": model_config,
        "label_norm": plan.norm,
        "checkpoint": str(run.ckpt_path),
        "world_size": d.world,
        "spec": store.spec.to_dict(),
    })


def main(argv=None) -> int:
    p = stage_parser("anyppg distill", __doc__, config_stage="distill", default_config="student-s")
    p.add_argument("--teacher", default=None,
                   help="pretrain run folder or checkpoint (= --set teacher=...)")
    add_run_io(p, data="window store", out="run folder", resume=True)
    p.add_argument("--from-scratch", action="store_true",
                   help="no teacher: train the same student on labels only (distill_weight=0)")
    args = p.parse_args(argv)
    sets = ([f"teacher={args.teacher}"] if args.teacher is not None else []) + \
        (["distill_weight=0"] if args.from_scratch else [])
    return run_stage("anyppg distill", lambda: train(stage_config(DistillConfig(), "distill", args, sets),
                                                     Path(args.data), Path(args.out), args.resume, args.quiet),
                     quiet=args.quiet or not loop.is_main_process(), cleanup=loop.end_distributed)


if __name__ == "__main__":
    sys.exit(main())
