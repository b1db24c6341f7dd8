"""Losses of the comparison arms: SimCLR's NT-Xent (PPG-only self-supervision, the paper's own
baseline) and a masked regression loss for the supervised-on-labels arm."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's normalised-temperature cross entropy between two views.

    z1, z2: (B, D) projections of two augmentations of the same B windows (normalised here).
    Each of the 2B views must pick its partner among the other 2B - 1. Returns (loss (),
    top1 () = fraction of views whose nearest other view is their partner).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent expects two (B, D) tensors of one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=-1)                    # (2B, D)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    loss = F.cross_entropy(sim, target)
    with torch.no_grad():
        top1 = (sim.argmax(1) == target).float().mean()
    return loss, top1


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the finite entries of target (B, K); labels a source lacks are
    NaN and do not count. A batch without any label gives a zero loss that still has a graph."""
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
    ok = torch.isfinite(target)
    if not ok.any():
        return pred.sum() * 0.0
    d = pred - torch.where(ok, target, torch.zeros_like(target))
    return (d[ok] ** 2).mean()
