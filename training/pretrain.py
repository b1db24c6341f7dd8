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

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from anyppg.config import ConfigError, to_dict
from anyppg.runs import selection_record, write_manifest
from anyppg.stage import add_run_io, one_line, run_stage, stage_config, stage_parser
from training import loop
from training.clip_model import PPGECGClip
from training.data.dataset import WindowDataset
from training.data.store import WindowStore
from training.features import build_cache, cache_path, load_cache, weights_key
from training.loop import make_optimizer
from training.losses import ClipLoss
from training.retrieval import retrieval_report
from training.models import build_model, load_encoder_checkpoint


@dataclass
class PretrainConfig(loop.LoopConfig):
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
    # > 0: build each batch from groups of this many windows of one subject. Negatives from the
    # same person can't be told apart by who they are, only by what changed (rate, rhythm,
    # breathing), which is what downstream tasks need; with few subjects, uniform batches let
    # the model win by recognising patients and it does not generalise to new ones.
    windows_per_subject: int = 0
    bf16: bool = True                   # autocast on CUDA only
    compile: bool = False
    activation_checkpointing: bool = True   # trainable ECG tower only
    eval_batch: int = 64                # retrieval is scored within batches of this size
    # The split whose subjects chose this config's settings ("val"; "" none). Its subjects are
    # recorded in the manifest as selection subjects, and probes exclude them like training
    # subjects, so figures are reported on patients that neither trained nor tuned the model.
    selection_split: str = ""
    kill_at_step: int = 0               # test hook: SIGKILL this process after that step


# ----------------------------------------------------------------------------- model
def build_towers(cfg: PretrainConfig, spec, what: str = "the store"):
    """The CLIP model of a PPG and an ECG tower; each tower's input length and rate must be the
    store's (`what` names the store in the error)."""
    ppg = build_model(cfg.ppg_model, **({"dropout": cfg.ppg_encoder_dropout} if cfg.ppg_encoder_dropout >= 0 else {}))
    ecg = build_model(cfg.ecg_model)
    if ppg.input_kind != "ppg" or ecg.input_kind != "ecg":
        raise ConfigError(f"ppg_model must be a PPG encoder and ecg_model an ECG encoder "
                          f"(got {ppg.input_kind}, {ecg.input_kind})")
    ppg.spec.check_compatible(spec, f"{what} (for {cfg.ppg_model})", fields=("ppg_fs", "window_s"))
    ecg.spec.check_compatible(spec, f"{what} (for {cfg.ecg_model}; prepare it with --spec full for "
                                    "500 Hz ECG)", fields=("ecg_fs", "window_s"))
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
    """PPG->ECG top-1 within shuffled batches of `batch` pairs of `split` (chance 1/batch).
    Frozen-ECG runs (features cached) only; a trainable ECG tower gets `retrieval_report`.
    A split with fewer windows than one batch is reported as not measured, never as NaN."""
    ds = WindowDataset(store_path, split=split, with_ecg=cache is None)
    n = len(ds)
    if n < batch:
        return {"status": f"not measured: split {split!r} has {n} windows, fewer than one batch of {batch}",
                "n_batches": 0, "chance": 1.0 / batch}
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
    return {"status": "ok", "top1": float(np.mean(hits)), "n_batches": len(hits), "chance": 1.0 / batch}


def split_retrieval(model: PPGECGClip, data: Path, split: str, batch: int, device, cache, seed: int) -> dict:
    """Retrieval on one split: with a live ECG tower, top-1 beside chance, the patient-matching
    oracle and within-patient retrieval, with subject-bootstrap CIs (training.retrieval);
    with cached frozen-ECG features, top-1 in shuffled batches."""
    if cache is not None:
        return retrieval_top1(model, data, split, batch, device, cache, seed=seed)
    model.cpu()
    try:
        return retrieval_report(model, data, split=split, batch=batch, seed=seed)
    finally:
        model.to(device)


# ----------------------------------------------------------------------------- one step
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


# ----------------------------------------------------------------------------- training
def _ecg_cache(cfg: PretrainConfig, model: PPGECGClip, data: Path, d: loop.Dist, quiet: bool):
    """Frozen ECG tower: its features of every window, cached beside the store (the tower is
    then dropped: the cache is all it gives). None when the ECG tower trains."""
    key = weights_key(cfg.ecg_model, model.ecg_encoder)
    if d.main:
        build_cache(data, model.ecg_encoder, key, kind="ecg", device=d.device, quiet=quiet)
    d.barrier()
    cache = load_cache(cache_path(data, key, "ecg"), WindowStore(data, split=None))
    model.ecg_encoder = None
    return cache


def _checkpoint(cfg, model, frozen, ppg_entry, store, step, opt) -> dict:
    return {"model": _state_without_frozen(model, frozen),
            "ppg_encoder": {k: v for k, v in model.ppg_encoder.state_dict().items()},
            "model_config": {"ppg_model": cfg.ppg_model, "ppg_config": ppg_entry.config,
                             "embed_dim": ppg_entry.embed_dim, "ecg_model": cfg.ecg_model,
                             "ecg_frozen": frozen},
            "config": to_dict(cfg), "spec": store.spec.to_dict(), "step": step,
            "optimizer": opt.state_dict()}


def train(cfg: PretrainConfig, data: Path, out: Path, resume: bool, quiet: bool = False) -> dict:
    d = loop.Dist()
    loop.set_threads(cfg.threads)
    store = WindowStore(data, split="train")
    if not store.has_ecg:
        raise ValueError(f"{data}: store has no ECG windows; CLIP pretraining needs paired ECG")
    torch.manual_seed(cfg.seed + d.rank)
    model, ppg_entry, ecg_entry, frozen = build_towers(cfg, store.spec, f"store {data}")
    model.to(d.device)
    use_cache = frozen and cfg.cache_ecg_features
    cache = _ecg_cache(cfg, model, data, d, quiet) if use_cache else None
    if cfg.compile:
        model.ppg_encoder = torch.compile(model.ppg_encoder)
    ddp = DistributedDataParallel(model) if d.world > 1 else model
    opt, params = make_optimizer(model, cfg)
    loss_fn = ClipLoss(gather=cfg.gather_negatives)

    ds = WindowDataset(data, split="train", with_ecg=not use_cache)
    batches_of = lambda epoch: loop.epoch_batches(len(ds), cfg.batch_size, epoch, cfg.seed, d.rank, d.world,
                                                  ds.subject_codes, cfg.windows_per_subject)
    steps_per_epoch = len(batches_of(0))
    loop.check_steps(steps_per_epoch, len(ds), data, cfg.batch_size, d.world)
    total = loop.total_steps(steps_per_epoch, cfg.epochs, cfg.max_steps)
    run = loop.RunLog(out, d)
    ck = run.start(resume, store.spec)
    step = 0
    if ck:
        model.load_state_dict(ck["model"], strict=not frozen)
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])

    autocast = loop.autocast_for(d, cfg.bf16)
    last, meter, done = {}, loop.RateMeter(), step
    bar = run.progress(total, step, "pretrain", quiet)
    model.train()
    for step, epoch, batch in loop.batch_stream(ds, batches_of, steps_per_epoch, step, total, cfg.seed,
                                                cfg.num_workers):
        loop.set_lr(opt, loop.lr_at(step, cfg.lr, cfg.warmup_steps, total))
        ppg = batch["ppg"].to(d.device, non_blocking=True)
        feats = ecg = None
        if use_cache:
            feats = torch.from_numpy(np.asarray(cache[batch["row"].numpy()], np.float32)).to(d.device)
        else:
            ecg = batch["ecg"].to(d.device, non_blocking=True)
        res = train_step(ddp, model, loss_fn, opt, params, cfg.grad_clip, ppg, ecg=ecg,
                         ecg_features=feats, autocast=autocast, reduce=d.mean)
        if res.grad_norm is None:
            run.fail_if_not_finite(step, res.loss)
        done = step + 1
        meter.add(len(ppg) * d.world)
        bar.update(1)
        if loop.due(done, cfg.log_every, total):
            last = {"step": done, "epoch": epoch, "loss": res.loss,
                    "temperature": float(1 / model.logit_scale.detach().exp()),
                    "batch_top1": d.mean(float(res.out.top1_ppg_to_ecg)), "grad_norm": float(res.grad_norm),
                    "lr": loop.lr_at(done - 1, cfg.lr, cfg.warmup_steps, total), "windows_per_s": meter.rate()}
            run.log(last)
            bar.set_postfix(loss=f"{res.loss:.3f}", top1=f"{last['batch_top1']:.2f}")
        if loop.due(done, cfg.ckpt_every, total):
            run.save(_checkpoint(cfg, model, frozen, ppg_entry, store, done, opt))
        if cfg.kill_at_step and done == cfg.kill_at_step:
            os.kill(os.getpid(), 9)
    bar.close()
    metrics = {"steps": done, "train": last}
    if d.main:
        _finish(cfg, data, out, store, model, cache, run, d, metrics)
    d.barrier()
    return metrics


def _split_subjects(data: Path, split: str) -> list[str]:
    return sorted(set(WindowStore(data, split=split).subject_ids())) if split else []


def _finish(cfg, data, out, store, model, cache, run, d, metrics) -> None:
    """Retrieval on val/test and the manifest."""
    for split in ("val", "test"):
        try:
            metrics[f"{split}_retrieval"] = split_retrieval(model, data, split, cfg.eval_batch,
                                                            d.device, cache, cfg.seed)
        except ValueError as e:
            metrics[f"{split}_retrieval"] = {"status": f"not measured: {one_line(e)}"}
    ck_inputs = {"store_index": str(Path(data) / "index.json")}
    if cfg.ecg_checkpoint:
        ck_inputs["ecg_checkpoint"] = cfg.ecg_checkpoint
    write_manifest(out, "pretrain", to_dict(cfg), ck_inputs, metrics, extra={
        "store": str(Path(data).resolve()),
        "trained_on_subjects": sorted(set(store.subject_ids())),
        **selection_record(data, cfg.selection_split, _split_subjects(data, cfg.selection_split)),
        "checkpoint": str(run.ckpt_path),
        "world_size": d.world,
        "spec": store.spec.to_dict(),
    })


def main(argv=None) -> int:
    p = stage_parser("anyppg pretrain", __doc__, config_stage="pretrain", default_config="cpu-small")
    add_run_io(p, data="window store with paired ECG", out="run folder", resume=True)
    args = p.parse_args(argv)
    return run_stage("anyppg pretrain", lambda: train(stage_config(PretrainConfig(), "pretrain", args),
                                                      Path(args.data), Path(args.out), args.resume, args.quiet),
                     quiet=args.quiet or not loop.is_main_process(), cleanup=loop.end_distributed)


if __name__ == "__main__":
    sys.exit(main())
