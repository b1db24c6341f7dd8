"""The pretraining arms compared by `benchmarks.bench_teacher_compare`, on one corpus and one loop.

    python -m training.ssl --config arms-small --objective clip --data stores/bidmc --out RUN \
        [--set corpus.synthetic_fraction=0.5] [--set seed=1] [--resume]

objective
  clip        ECG-guided: symmetric InfoNCE between the PPG tower and a jointly trained ECG
              tower (the `anyppg pretrain` model and loss; no ECG weights exist offline)
  simclr      PPG only: NT-Xent between two augmentations of each window (the paper's baseline)
  supervised  the same PPG encoder trained on the labels alone (z-scored, NaN-masked MSE)

Every arm sees the same batches (a function of seed and step; `training.data.corpus`), the same
optimiser, schedule and step count, so an arm differs from another in its objective only.
`corpus.synthetic_fraction` chooses real only (0), synthetic only (1) or a mix. `max_minutes`
stops a long run at a checkpoint; `--resume` continues it to the same weights. Writes
checkpoints/latest.pt (the `ppg_encoder` state and `model_config` that `anyppg probe` reads),
metrics.jsonl and manifest.json (trained_on_subjects: the store's training patients).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from anyppg.config import ConfigError, load_config, to_dict
from anyppg.stage import add_run_io, run_stage, stage_parser
from anyppg.runs import atomic_path, write_manifest
from training.clip_model import PPGECGClip, ProjectionHead
from training.data.augment import augment
from training.data.corpus import CorpusConfig, PairedCorpus
from training import loop
from training.loop import lr_at, make_optimizer
from training.losses import ClipLoss
from training.models import build_model
from training.retrieval import retrieval_report
from training.ssl_losses import masked_mse, nt_xent

OBJECTIVES = ("clip", "simclr", "supervised")


@dataclass
class ArmConfig(loop.LoopConfig):
    objective: str = "clip"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    ppg_model: str = "net1d-small"
    ecg_model: str = "net1d-ecg-small"
    ppg_encoder_dropout: float = 0.0
    proj_dim: int = 128
    ppg_dropout: float = 0.2
    init_temperature: float = 0.07      # clip: learnable
    simclr_temperature: float = 0.1     # simclr: fixed, as SimCLR
    windows_per_subject: int = 16
    # LoopConfig's other defaults hold; these differ for short CPU arms.
    max_steps: int = 200
    lr: float = 1e-3
    warmup_steps: int = 50
    threads: int = 1
    ckpt_every: int = 50
    max_minutes: float = 0.0            # > 0: checkpoint and stop after this much wall time
    eval_split: str = "test"            # retrieval of clip arms on these held-out patients


class SupervisedModel(nn.Module):
    """PPG encoder + one linear head over the z-scored labels."""

    def __init__(self, encoder: nn.Module, dim: int, n_labels: int):
        super().__init__()
        self.ppg_encoder = encoder
        self.head = nn.Linear(dim, n_labels)

    def forward(self, ppg):
        return self.head(self.ppg_encoder(ppg).embedding)


class SimCLRModel(nn.Module):
    def __init__(self, encoder: nn.Module, dim: int, proj_dim: int, dropout: float):
        super().__init__()
        self.ppg_encoder = encoder
        self.proj = ProjectionHead(dim, proj_dim, dropout=dropout)

    def forward(self, ppg):
        return self.proj(self.ppg_encoder(ppg).embedding)


def build_arm(cfg: ArmConfig, n_labels: int):
    """(model, ppg registry entry) of an objective."""
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"objective: {cfg.objective!r} is none of {', '.join(OBJECTIVES)}")
    kw = {"dropout": cfg.ppg_encoder_dropout} if cfg.ppg_encoder_dropout >= 0 else {}
    ppg = build_model(cfg.ppg_model, **kw)
    if cfg.objective == "clip":
        ecg = build_model(cfg.ecg_model)
        model = PPGECGClip(ppg.model, ppg.embed_dim, ecg.model, ecg.embed_dim, cfg.proj_dim, cfg.ppg_dropout,
                           freeze_ecg=False, init_temperature=cfg.init_temperature)
    elif cfg.objective == "simclr":
        model = SimCLRModel(ppg.model, ppg.embed_dim, cfg.proj_dim, cfg.ppg_dropout)
    else:
        model = SupervisedModel(ppg.model, ppg.embed_dim, n_labels)
    return model, ppg


def label_stats(corpus: PairedCorpus, cfg: ArmConfig, n_batches: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (K,) of each label over the first batches (NaN-aware; 0/1 where absent)."""
    lab = np.concatenate([corpus.batch(s, cfg.batch_size, cfg.windows_per_subject, cfg.seed)["labels"].numpy()
                          for s in range(n_batches)])
    mu, sd = np.zeros(lab.shape[1], np.float32), np.ones(lab.shape[1], np.float32)
    for j in range(lab.shape[1]):
        v = lab[np.isfinite(lab[:, j]), j]
        if len(v) > 1:
            mu[j], sd[j] = v.mean(), max(float(v.std()), 1e-6)
    return mu, sd


def arm_loss(cfg: ArmConfig, model, batch: dict, step: int, norm) -> tuple[torch.Tensor, float]:
    """(loss, batch top-1 or NaN) of one batch for the configured objective."""
    ppg = batch["ppg"]
    if cfg.objective == "clip":
        out = model(ppg, ecg=batch["ecg"])
        lo = ClipLoss(gather=False)(out.ppg, out.ecg, out.logit_scale)
        return lo.loss, float(lo.top1_ppg_to_ecg)
    if cfg.objective == "simclr":
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        loss, top1 = nt_xent(model(augment(ppg, g)), model(augment(ppg, g)), cfg.simclr_temperature)
        return loss, float(top1)
    mu, sd = norm
    target = (batch["labels"] - torch.from_numpy(mu)) / torch.from_numpy(sd)
    return masked_mse(model(ppg), target), float("nan")


def train_arm(cfg: ArmConfig, data: Path | None, out: Path, resume: bool, quiet: bool = False) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpus = PairedCorpus(cfg.corpus, store=data)
    norm = label_stats(corpus, cfg) if cfg.objective == "supervised" else None
    torch.manual_seed(cfg.seed)
    model, entry = build_arm(cfg, len(cfg.corpus.labels))
    opt, params = make_optimizer(model, cfg)
    ckpt_path, metrics_path = out / "checkpoints" / "latest.pt", out / "metrics.jsonl"
    step = 0
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume from")
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"])
        step = int(ck["step"])
        keep = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        metrics_path.write_text("".join(ln + "\n" for ln in keep))
    else:
        if ckpt_path.exists():
            raise FileExistsError(f"{out}: already holds a run (pass --resume to continue it)")
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")

    def save(step: int):
        ck = {"model": model.state_dict(), "ppg_encoder": model.ppg_encoder.state_dict(),
              "model_config": {"ppg_model": cfg.ppg_model, "ppg_config": entry.config,
                               "embed_dim": entry.embed_dim, "objective": cfg.objective},
              "config": to_dict(cfg), "spec": corpus.spec.to_dict(), "step": step,
              "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
              "label_norm": None if norm is None else {"mean": norm[0].tolist(), "std": norm[1].tolist()}}
        with atomic_path(ckpt_path) as tmp:
            torch.save(ck, tmp)

    t0 = t_log = time.perf_counter()
    n_log, stopped_early, last = 0, False, {}
    model.train()
    while step < cfg.max_steps:
        batch = corpus.batch(step, cfg.batch_size, cfg.windows_per_subject, cfg.seed)
        for gr in opt.param_groups:
            gr["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        loss, top1 = arm_loss(cfg, model, batch, step, norm)
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"step {step + 1}: loss is {float(loss.detach())}; last checkpoint kept at {ckpt_path}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        opt.step()
        if cfg.objective == "clip":
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
        step += 1
        n_log += len(batch["ppg"])
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            dt = time.perf_counter() - t_log
            last = {"step": step, "loss": float(loss.detach()), "batch_top1": top1, "grad_norm": gnorm,
                    "lr": lr_at(step - 1, cfg.lr, cfg.warmup_steps, cfg.max_steps), "windows_per_s": n_log / dt}
            t_log, n_log = time.perf_counter(), 0
            with open(metrics_path, "a") as f:
                f.write(json.dumps(last) + "\n")
            if not quiet:
                print(json.dumps(last), file=sys.stderr)
        over = cfg.max_minutes > 0 and time.perf_counter() - t0 > 60 * cfg.max_minutes
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or over:
            save(step)
        if over and step < cfg.max_steps:
            stopped_early = True
            break
    return finish(cfg, model, corpus, data, out, step, last, stopped_early, time.perf_counter() - t0)


def finish(cfg: ArmConfig, model, corpus: PairedCorpus, data, out: Path, step: int, last: dict,
           stopped_early: bool, seconds: float) -> dict:
    metrics = {"steps": step, "train": last, "seconds_this_session": round(seconds, 1),
               "complete": not stopped_early}
    if stopped_early:
        metrics["note"] = f"stopped at step {step} of {cfg.max_steps} after max_minutes; --resume continues"
    elif cfg.objective == "clip" and data is not None:
        metrics[f"{cfg.eval_split}_retrieval"] = retrieval_report(model, data, cfg.eval_split, seed=cfg.seed)
    extra = {"store": str(Path(data).resolve()) if data else None,
             "trained_on_subjects": corpus.real_subject_ids() if cfg.corpus.synthetic_fraction < 1 else [],
             "synthetic_corpus": {"generator_seed": cfg.corpus.synthetic_seed + cfg.seed,
                                  "subjects": (step * corpus.groups_per_batch(cfg.batch_size, cfg.windows_per_subject)[0])},
             "checkpoint": str(out / "checkpoints" / "latest.pt"), "spec": corpus.spec.to_dict()}
    inputs = {"store_index": str(Path(data) / "index.json")} if data else {}
    write_manifest(out, "pretrain-arm", to_dict(cfg), inputs, metrics, extra=extra)
    return metrics


def main(argv=None) -> int:
    p = stage_parser("python -m training.ssl", __doc__, config_stage="pretrain", default_config="arms-small")
    p.add_argument("--objective", choices=OBJECTIVES, help="shortcut for --set objective=...")
    p.add_argument("--data", default=None, help="paired window store (not needed at synthetic_fraction=1)")
    add_run_io(p, out="this arm's run folder", resume=True)
    args = p.parse_args(argv)
    sets = args.set + ([f"objective={args.objective}"] if args.objective else [])
    return run_stage("training.ssl", lambda: train_arm(
        load_config(ArmConfig(), "pretrain", args.config, sets), Path(args.data) if args.data else None,
        Path(args.out), args.resume, args.quiet), quiet=args.quiet)

if __name__ == "__main__":
    sys.exit(main())
