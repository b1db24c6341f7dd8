"""`anyppg pretrain`: ECG-guided contrastive pretraining of a PPG encoder (AnyPPG recipe).

    anyppg pretrain --config cpu-small --data stores/bidmc --out runs/bidmc/pretrain
    torchrun --nproc_per_node 8 -m training.pretrain --config gpu-full --data ... --out ...

One CPU or many GPUs (DDP through torchrun; NCCL on CUDA, gloo on CPU). Writes
`checkpoints/latest.pt` (atomically, every `ckpt_every` steps and at the end),
`metrics.jsonl` and `manifest.json` into --out. `--resume` continues a killed run from its
latest checkpoint to the same result as an uninterrupted run: batches are a function of
(seed, epoch) and the RNG state travels in the checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from anyppg.config import ConfigError, load_config, to_dict
from anyppg.runs import atomic_path, write_manifest
from training.clip_model import PPGECGClip
from training.data.dataset import WindowDataset
from training.ecg_cache import build_cache, cache_path, load_cache, weights_key
from training.losses import ClipLoss
from training.models import build_model, load_encoder_checkpoint
from training.data.store import WindowStore


@dataclass
class PretrainConfig:
    ppg_model: str = "net1d-small"
    ecg_model: str = "net1d-ecg-small"
    # Dropout inside the PPG encoder; < 0 keeps the registry's (0.5 for Net1D). High dropout
    # before batch norm shifts its statistics between train and eval mode on small data.
    ppg_encoder_dropout: float = -1.0
    # Frozen ECG weights (the paper's setting). Empty: no ECG weights, train the ECG tower
    # jointly from scratch.
    ecg_checkpoint: str = ""
    cache_ecg_features: bool = True     # frozen ECG only: encode each window once
    proj_dim: int = 128
    ppg_dropout: float = 0.2
    init_temperature: float = 0.07
    gather_negatives: bool = True       # negatives from all ranks (the paper: per GPU)
    batch_size: int = 64                # per rank
    # > 0: build each batch from groups of this many windows of one subject. Negatives from the
    # same person can't be told apart by who they are, only by what changed (rate, rhythm,
    # breathing), which is what downstream tasks need; with few subjects, uniform batches let
    # the model win by recognising patients and it does not generalise to new ones.
    windows_per_subject: int = 0
    epochs: int = 5
    max_steps: int = 0                  # > 0: stop after this many steps
    lr: float = 4e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    grad_clip: float = 1.0
    bf16: bool = True                   # autocast on CUDA only
    compile: bool = False
    activation_checkpointing: bool = True   # trainable ECG tower only
    seed: int = 0
    num_workers: int = 0
    threads: int = 0                    # torch CPU threads (0: leave as is)
    log_every: int = 10
    ckpt_every: int = 100
    eval_batch: int = 64                # retrieval is scored within batches of this size
    kill_at_step: int = 0               # test hook: SIGKILL this process after that step


# ----------------------------------------------------------------------------- helpers
def lr_at(step: int, cfg: PretrainConfig, total: int) -> float:
    """Linear warm-up then cosine decay to zero; a pure function of the step (resume-safe)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def epoch_batches(n: int, batch: int, epoch: int, seed: int, rank: int, world: int,
                  subjects: np.ndarray | None = None, per_subject: int = 0) -> list[list[int]]:
    """This rank's batches for an epoch: a (seed, epoch) permutation, split across ranks.

    With `subjects` (n,) and per_subject k > 0, the permutation is made of shuffled groups of k
    windows of one subject (leftovers dropped), so each batch holds batch/k such groups.
    """
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    if per_subject > 0 and subjects is not None:
        if batch % per_subject:
            raise ValueError(f"batch_size {batch} must be a multiple of windows_per_subject {per_subject}")
        groups = []
        for s in np.unique(subjects):
            idx = np.flatnonzero(subjects == s)
            idx = idx[torch.randperm(len(idx), generator=g).numpy()]
            groups += [idx[i:i + per_subject].tolist() for i in range(0, len(idx) - per_subject + 1, per_subject)]
        order = torch.randperm(len(groups), generator=g).tolist()
        perm = [i for o in order for i in groups[o]]
    else:
        perm = torch.randperm(n, generator=g).tolist()
    per_step = batch * world
    steps = len(perm) // per_step
    return [perm[s * per_step + rank * batch: s * per_step + (rank + 1) * batch] for s in range(steps)]


class _Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def mean(self, x: float) -> float:
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world


def build_towers(cfg: PretrainConfig, spec):
    ppg = build_model(cfg.ppg_model, **({"dropout": cfg.ppg_encoder_dropout} if cfg.ppg_encoder_dropout >= 0 else {}))
    ecg = build_model(cfg.ecg_model)
    if ppg.input_kind != "ppg" or ecg.input_kind != "ecg":
        raise ConfigError(f"ppg_model must be a PPG encoder and ecg_model an ECG encoder "
                          f"(got {ppg.input_kind}, {ecg.input_kind})")
    if ppg.spec.ppg_len != spec.ppg_len or ppg.spec.ppg_fs != spec.ppg_fs:
        raise ConfigError(f"{cfg.ppg_model} expects PPG at {ppg.spec.ppg_fs} Hz x {ppg.spec.ppg_len}, "
                          f"the store has {spec.ppg_fs} Hz x {spec.ppg_len}")
    if ecg.spec.ecg_fs != spec.ecg_fs:
        raise ConfigError(f"{cfg.ecg_model} expects ECG at {ecg.spec.ecg_fs} Hz, the store has "
                          f"{spec.ecg_fs} Hz (prepare it with --spec full for 500 Hz ECG)")
    frozen = bool(cfg.ecg_checkpoint)
    if frozen:
        load_encoder_checkpoint(ecg.model, cfg.ecg_checkpoint)
    model = PPGECGClip(ppg.model, ppg.embed_dim, ecg.model, ecg.embed_dim, cfg.proj_dim,
                       cfg.ppg_dropout, freeze_ecg=frozen, init_temperature=cfg.init_temperature,
                       checkpoint_ecg=cfg.activation_checkpointing)
    return model, ppg, ecg, frozen


def _state_without_frozen(model: PPGECGClip, frozen: bool) -> dict:
    sd = model.state_dict()
    if frozen:   # the frozen tower is in its own checkpoint, named in the config
        sd = {k: v for k, v in sd.items() if not k.startswith("ecg_encoder.")}
    return sd


@torch.no_grad()
def retrieval_top1(model: PPGECGClip, store_path: Path, split: str, batch: int, device,
                   cache: np.ndarray | None, seed: int = 0, max_windows: int = 4096) -> dict:
    """PPG->ECG top-1 within shuffled batches of `batch` pairs of `split` (chance 1/batch)."""
    ds = WindowDataset(store_path, split=split, with_ecg=cache is None)
    n = len(ds)
    if n < batch:
        return {"top1": float("nan"), "n_batches": 0, "chance": 1.0 / batch}
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)[: min(n, max_windows) // batch * batch].view(-1, batch)
    model.eval()
    hits = []
    for idx in perm:
        items = [ds[int(i)] for i in idx]
        ppg = torch.stack([it["ppg"] for it in items]).to(device)
        if cache is not None:
            feats = torch.from_numpy(np.asarray(cache[[int(it["row"]) for it in items]], np.float32)).to(device)
            out = model(ppg, ecg_features=feats)
        else:
            out = model(ppg, ecg=torch.stack([it["ecg"] for it in items]).to(device))
        sim = out.ppg @ out.ecg.T
        hits.append((sim.argmax(1) == torch.arange(batch, device=device)).float().mean().item())
    return {"top1": float(np.mean(hits)), "n_batches": len(hits), "chance": 1.0 / batch}


# ----------------------------------------------------------------------------- training
@dataclass
class StepResult:
    loss: float                     # mean over ranks
    out: object                     # ClipLossOutput of this rank
    grad_norm: float | None         # None: the loss was not finite and nothing was updated


def train_step(net, model: PPGECGClip, loss_fn: ClipLoss, opt, params, grad_clip: float,
               ppg: torch.Tensor, ecg: torch.Tensor | None = None,
               ecg_features: torch.Tensor | None = None, autocast=None,
               reduce=lambda x: x) -> StepResult:
    """One optimisation step. `net` is `model` or its DDP wrapper; ppg (B, 1, Lp), ecg
    (B, 1, Le) or cached ecg_features (B, D). A non-finite loss updates nothing."""
    with autocast if autocast is not None else contextlib.nullcontext():
        o = net(ppg, ecg=ecg, ecg_features=ecg_features)
        lo = loss_fn(o.ppg.float(), o.ecg.float(), o.logit_scale.float())
    loss_val = reduce(float(lo.loss.detach()))
    if not math.isfinite(loss_val):
        return StepResult(loss_val, lo, None)
    opt.zero_grad(set_to_none=True)
    lo.loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    opt.step()
    with torch.no_grad():   # CLIP's clamp: temperature never below 0.01
        model.logit_scale.clamp_(0, math.log(100))
    return StepResult(loss_val, lo, gnorm)


def make_optimizer(model: torch.nn.Module, cfg):
    """AdamW without weight decay on biases, norms and the temperature. cfg: .lr, .weight_decay"""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)
    return opt, params


def total_steps(steps_per_epoch: int, epochs: int, max_steps: int) -> int:
    """Steps of a run: `epochs` epochs, capped by `max_steps` (which alone counts if epochs=0)."""
    total = steps_per_epoch * epochs
    if max_steps:
        total = min(total, max_steps) if epochs else max_steps
    return total


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop the log lines of steps that the kill undid (they are redone)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))


def train(cfg: PretrainConfig, data: Path, out: Path, resume: bool, quiet: bool = False) -> dict:
    d = _Dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    store = WindowStore(data, split="train")
    if not store.has_ecg:
        raise ValueError(f"{data}: store has no ECG windows; CLIP pretraining needs paired ECG")
    torch.manual_seed(cfg.seed + d.rank)
    model, ppg_entry, ecg_entry, frozen = build_towers(cfg, store.spec)
    model.to(d.device)

    cache = None
    use_cache = frozen and cfg.cache_ecg_features
    if use_cache:
        key = weights_key(cfg.ecg_model, model.ecg_encoder)
        if d.main:
            build_cache(data, model.ecg_encoder, key, device=d.device, quiet=quiet)
        d.barrier()
        cache = load_cache(cache_path(data, key), WindowStore(data, split=None))
        model.ecg_encoder = None    # never run again: the cache is all the ECG tower gives

    if cfg.compile:
        model.ppg_encoder = torch.compile(model.ppg_encoder)
    ddp = DistributedDataParallel(model) if d.world > 1 else model
    opt, params = make_optimizer(model, cfg)
    loss_fn = ClipLoss(gather=cfg.gather_negatives)

    ds = WindowDataset(data, split="train", with_ecg=not use_cache)
    batches_of = lambda epoch: epoch_batches(len(ds), cfg.batch_size, epoch, cfg.seed, d.rank, d.world,
                                             ds.subject_codes, cfg.windows_per_subject)
    steps_per_epoch = len(batches_of(0))
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
        model.load_state_dict(ck["model"], strict=not frozen)
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        torch.set_rng_state(ck["rng"][d.rank % len(ck["rng"])].cpu())
        if d.main:
            truncate_metrics(metrics_path, step)
    elif d.main:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")

    def save(step: int):
        rng = [torch.get_rng_state()]
        if d.world > 1:
            rng = [torch.zeros_like(rng[0]) for _ in range(d.world)]
            dist.all_gather_object(rng, torch.get_rng_state())
        if not d.main:
            return
        ckpt = {"model": _state_without_frozen(model, frozen),
                "ppg_encoder": {k: v for k, v in model.ppg_encoder.state_dict().items()},
                "model_config": {"ppg_model": cfg.ppg_model, "ppg_config": ppg_entry.config,
                                 "embed_dim": ppg_entry.embed_dim, "ecg_model": cfg.ecg_model,
                                 "ecg_frozen": frozen},
                "config": to_dict(cfg), "spec": store.spec.to_dict(), "step": step,
                "optimizer": opt.state_dict(), "rng": rng}
        with atomic_path(ckpt_path) as tmp:
            torch.save(ckpt, tmp)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=cfg.bf16 and d.device.type == "cuda")
    last = {}
    t_log, n_log = time.perf_counter(), 0
    bar = tqdm(total=total, initial=step, desc="pretrain", disable=quiet or not d.main, file=sys.stderr)
    model.train()
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        batches = batches_of(epoch)[offset:]
        # A private generator: creating a DataLoader iterator otherwise draws from the global
        # RNG, and a resumed run creates one at a different step than an uninterrupted run.
        loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed))
        for batch in loader:
            if step >= total:
                break
            for gr in opt.param_groups:
                gr["lr"] = lr_at(step, cfg, total)
            ppg = batch["ppg"].to(d.device, non_blocking=True)
            feats = ecg = None
            if use_cache:
                feats = torch.from_numpy(np.asarray(cache[batch["row"].numpy()], np.float32)).to(d.device)
            else:
                ecg = batch["ecg"].to(d.device, non_blocking=True)
            res = train_step(ddp, model, loss_fn, opt, params, cfg.grad_clip, ppg, ecg=ecg,
                             ecg_features=feats, autocast=autocast, reduce=d.mean)
            loss_val, lo, gnorm = res.loss, res.out, res.grad_norm
            if gnorm is None:
                done = int(torch.load(ckpt_path, weights_only=True)["step"]) if ckpt_path.is_file() else 0
                raise FloatingPointError(f"step {step + 1}: loss is {loss_val}; stopped, last good "
                                         f"checkpoint (step {done}) kept at {ckpt_path}")
            step += 1
            n_log += len(ppg) * d.world
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:
                dt = time.perf_counter() - t_log
                last = {"step": step, "epoch": epoch, "loss": loss_val,
                        "temperature": float(1 / model.logit_scale.detach().exp()),
                        "batch_top1": d.mean(float(lo.top1_ppg_to_ecg)), "grad_norm": float(gnorm),
                        "lr": lr_at(step - 1, cfg, total), "windows_per_s": n_log / dt}
                t_log, n_log = time.perf_counter(), 0
                if d.main:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(last) + "\n")
                    bar.set_postfix(loss=f"{loss_val:.3f}", top1=f"{last['batch_top1']:.2f}")
            if step % cfg.ckpt_every == 0 or step == total:
                save(step)
            if cfg.kill_at_step and step == cfg.kill_at_step:
                os.kill(os.getpid(), 9)
    bar.close()

    metrics = {"steps": step, "train": last}
    if d.main:
        for split in ("val", "test"):
            try:
                metrics[f"{split}_retrieval"] = retrieval_top1(model, data, split, cfg.eval_batch,
                                                               d.device, cache, seed=cfg.seed)
            except ValueError as e:
                metrics[f"{split}_retrieval"] = {"skipped": str(e)}
        ck_inputs = {"store_index": str(Path(data) / "index.json")}
        if cfg.ecg_checkpoint:
            ck_inputs["ecg_checkpoint"] = cfg.ecg_checkpoint
        write_manifest(out, "pretrain", to_dict(cfg), ck_inputs, metrics, extra={
            "store": str(Path(data).resolve()),
            "trained_on_subjects": sorted(set(store.subject_ids())),
            "checkpoint": str(ckpt_path),
            "world_size": d.world,
            "spec": store.spec.to_dict(),
        })
    d.barrier()
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="cpu-small", help="configs/pretrain/<name>.yaml or a path")
    p.add_argument("--data", required=True, help="window store with paired ECG")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_config(PretrainConfig(), "pretrain", args.config, args.set)
        metrics = train(cfg, Path(args.data), Path(args.out), args.resume, args.quiet)
    except (ConfigError, ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"anyppg pretrain: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:
        print(json.dumps({k: v for k, v in metrics.items()}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
