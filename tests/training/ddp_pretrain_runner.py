"""`training.pretrain` with rank-independent layers, optionally with one piece of its DDP
machinery deliberately broken: what tests/training/test_pretrain.py's DDP weights test runs.

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        -m tests.training.ddp_pretrain_runner [--break allreduce|sum|sampler] PRETRAIN_ARGS...
    python -m tests.training.ddp_pretrain_runner PRETRAIN_ARGS...        (the 1-process reference)

Batch norm and dropout are held in eval mode on both sides: per-rank batch statistics (DDP's
default, as in the paper) and rank-seeded dropout masks legitimately differ between 2 ranks of B
windows and 1 process of 2B, and would blur exactly the differences the test looks for.
Everything else (sampler, cross-rank negatives, gradient all-reduce, clipping, AdamW, LR
schedule, checkpoint) is the real stage. The breaks:

  allreduce   no gradient all-reduce: each rank steps on its own half-batch gradient
  sum         gradients summed across ranks instead of averaged
  sampler     every rank is given rank 0's windows
"""
from __future__ import annotations

import sys
import types

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from training import loop, pretrain

BREAKS = ("none", "allreduce", "sum", "sampler")


def _always_eval(module: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
    return torch.nn.Module.train(module, False)


def _freeze_norms(model: torch.nn.Module) -> None:
    """Batch norm and dropout in eval mode for good, whatever `.train()` later asks."""
    for m in model.modules():
        if isinstance(m, (_BatchNorm, torch.nn.Dropout)):
            m.train = types.MethodType(_always_eval, m)
            m.eval()


def _sum_hook(state, bucket):
    # DDP's default hook divides by the world size before the all-reduce; this one does not
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])


def patch(brk: str = "none") -> None:
    """Patch training.pretrain in this process (every rank calls it before `pretrain.main`)."""
    if brk not in BREAKS:
        raise SystemExit(f"--break must be one of {BREAKS}, got {brk!r}")
    build = pretrain.build_towers

    def build_frozen(*a, **kw):
        model, *rest = build(*a, **kw)
        _freeze_norms(model)
        return (model, *rest)

    pretrain.build_towers = build_frozen
    if brk == "allreduce":
        pretrain.DistributedDataParallel = lambda model, **kw: model
    elif brk == "sum":
        ddp_cls = pretrain.DistributedDataParallel

        def ddp_summing(model, **kw):
            net = ddp_cls(model, **kw)
            net.register_comm_hook(None, _sum_hook)
            return net

        pretrain.DistributedDataParallel = ddp_summing
    elif brk == "sampler":
        batches = loop.epoch_batches

        def rank0_batches(n, batch, epoch, seed, rank, world, *a, **kw):
            return batches(n, batch, epoch, seed, 0, world, *a, **kw)

        loop.epoch_batches = rank0_batches


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    brk = "none"
    if argv[:1] == ["--break"]:
        brk, argv = argv[1], argv[2:]
    patch(brk)
    return pretrain.main(argv)


if __name__ == "__main__":
    sys.exit(main())
