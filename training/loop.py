"""The training-loop skeleton every training stage shares: DDP setup, the LR schedule, seeded
batches, the step loop over them, resume with RNG state, checkpoint cadence and the metrics log.

A run is a pure function of (config, seed, step): batches come from `epoch_batches(seed,
epoch)`, the LR from `lr_at(step)`, and the RNG state travels in the checkpoint, so a run
killed and `--resume`d ends where an uninterrupted run ends.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from anyppg.runs import CHECKPOINT, METRICS, atomic_path
from edge_runtime.spec import SignalSpec


@dataclass
class LoopConfig:
    """What every training loop reads; a stage's config extends it (and may change defaults)."""
    batch_size: int = 64                # per rank
    epochs: int = 5
    max_steps: int = 0                  # > 0: stop after this many steps
    lr: float = 4e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    num_workers: int = 0
    threads: int = 0                    # torch CPU threads (0: leave as is)
    log_every: int = 10
    ckpt_every: int = 100


class Dist:
    """This process's place in a torchrun job (world 1 without torchrun) and its device."""

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


def end_distributed() -> None:
    """Tear down the process group a stage's Dist created (a no-op without torchrun)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------- schedule
def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero; a pure function of the step (resume-safe).
    base=1.0 gives the factor a stage multiplies its own per-group rates by."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, t)))


def total_steps(steps_per_epoch: int, epochs: int, max_steps: int) -> int:
    """Steps of a run: `epochs` epochs, capped by `max_steps` (which alone counts if epochs=0)."""
    total = steps_per_epoch * epochs
    if max_steps:
        total = min(total, max_steps) if epochs else max_steps
    return total


def make_optimizer(model: torch.nn.Module, cfg):
    """AdamW without weight decay on biases, norms and the temperature. cfg: .lr, .weight_decay"""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)
    return opt, params


def set_lr(opt, lr: float) -> None:
    for gr in opt.param_groups:
        gr["lr"] = lr


# ----------------------------------------------------------------------------- batches
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


def batch_stream(ds, batches_of, steps_per_epoch: int, start: int, total: int, seed: int,
                 num_workers: int = 0) -> Iterator[tuple[int, int, dict]]:
    """(step, epoch, batch) from `start` to `total`, epoch by epoch: `batches_of(epoch)` gives
    the epoch's index lists, and a resumed run starts inside its epoch where it stopped."""
    step = start
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        # A private generator: creating a DataLoader iterator otherwise draws from the global
        # RNG, and a resumed run creates one at a different step than an uninterrupted run.
        loader = DataLoader(ds, batch_sampler=batches_of(epoch)[offset:], num_workers=num_workers,
                            generator=torch.Generator().manual_seed(seed))
        for batch in loader:
            if step >= total:
                break
            yield step, epoch, batch
            step += 1


def check_steps(steps_per_epoch: int, n_windows: int, data, batch_size: int, world: int) -> None:
    if steps_per_epoch == 0:
        raise ValueError(f"{data}: {n_windows} training windows are fewer than one global batch "
                         f"({batch_size} x {world} ranks)")


# ----------------------------------------------------------------------------- run folder
class RunLog:
    """A training run's checkpoint and metrics log in its run folder (rank 0 writes)."""

    def __init__(self, out: Path, d: Dist):
        self.out, self.d = Path(out), d
        self.ckpt_path = self.out / CHECKPOINT
        self.metrics_path = self.out / METRICS

    def start(self, resume: bool, spec: SignalSpec | None = None) -> dict | None:
        """A fresh run: an empty metrics log, None. Resuming: the checkpoint (made under `spec`,
        the store's; RNG state already restored; log lines of steps the kill undid dropped)."""
        if not resume:
            # every rank looks before rank 0 writes: a fresh run never lands on an old one
            used = self.out.is_dir() and any(self.out.iterdir())
            self.d.barrier()
            if used:
                raise FileExistsError(f"{self.out}: already exists and is not empty (pass --resume to "
                                      f"continue that run, or choose another --out)")
            if self.d.main:
                self.out.mkdir(parents=True, exist_ok=True)
                self.metrics_path.write_text("")
            return None
        if not self.ckpt_path.is_file():
            raise FileNotFoundError(f"{self.ckpt_path}: nothing to resume from")
        ck = torch.load(self.ckpt_path, map_location=self.d.device, weights_only=True)
        if spec is not None and isinstance(ck.get("spec"), dict):
            spec.check_compatible(SignalSpec.from_dict(ck["spec"]), str(self.ckpt_path))
        torch.set_rng_state(ck["rng"][self.d.rank % len(ck["rng"])].cpu())
        if self.d.main:
            truncate_metrics(self.metrics_path, int(ck["step"]))
        return ck

    def save(self, ckpt: dict) -> None:
        """Write `ckpt` plus every rank's RNG state, atomically (all ranks must call it)."""
        rng = [torch.get_rng_state()]
        if self.d.world > 1:
            rng = [torch.zeros_like(rng[0]) for _ in range(self.d.world)]
            dist.all_gather_object(rng, torch.get_rng_state())
        if not self.d.main:
            return
        with atomic_path(self.ckpt_path) as tmp:
            torch.save({**ckpt, "rng": rng}, tmp)

    def log(self, record: dict) -> None:
        if self.d.main:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def fail_if_not_finite(self, step: int, loss_val: float) -> None:
        """Stop on a non-finite loss, naming the last good checkpoint (kept as it was)."""
        if math.isfinite(loss_val):
            return
        done = int(torch.load(self.ckpt_path, weights_only=True)["step"]) if self.ckpt_path.is_file() else 0
        raise FloatingPointError(f"step {step + 1}: loss is {loss_val}; stopped, last good "
                                 f"checkpoint (step {done}) kept at {self.ckpt_path}")

    def progress(self, total: int, start: int, desc: str, quiet: bool):
        return tqdm(total=total, initial=start, desc=desc, disable=quiet or not self.d.main, file=sys.stderr)


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop the log lines of steps that the kill undid (they are redone)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))


def due(step: int, every: int, total: int) -> bool:
    """Log / checkpoint cadence: every `every` steps and at the last one."""
    return step % every == 0 or step == total


def set_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def autocast_for(d: Dist, bf16: bool) -> Any:
    """bf16 autocast on CUDA when asked, a no-op elsewhere."""
    if d.device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)


class RateMeter:
    """Windows per second since the last `rate()` call (the metrics log's throughput)."""

    def __init__(self):
        self.t, self.n = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.n += n

    def rate(self) -> float:
        r = self.n / (time.perf_counter() - self.t)
        self.t, self.n = time.perf_counter(), 0
        return r
