"""The training losses: contrastive PPG-ECG (CLIP, negatives from every rank), feature
distillation (cosine + MSE) and the masked per-head label losses of a student."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from edge_runtime.contract import HR_CONFIDENT_WITHIN_BPM
from training.models.student import BINARY_HEADS, HEAD_NAMES, HR_BINS

# The HR distribution's training recipe (issue 11 prototype): Gaussian soft label, a small L1 on
# the expectation, and the confidence head's BCE weight.
HR_SOFT_LABEL_SIGMA_BPM = 3.0
HR_L1_WEIGHT = 0.02
HR_CONF_WEIGHT = 0.5


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (B, D) from all ranks along the batch, keeping gradients for every rank.

    `torch.distributed.nn.functional.all_gather` backpropagates the gradient of each gathered
    slice to the rank that produced it, so negatives from other GPUs train this rank's encoder
    too (the plain `dist.all_gather` would cut them off the graph).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x), dim=0)


@dataclass
class ClipLossOutput:
    loss: torch.Tensor          # () symmetric InfoNCE
    logits: torch.Tensor        # (B_local, B_global) PPG -> ECG similarities * scale
    top1_ppg_to_ecg: torch.Tensor   # () fraction of local PPG whose best ECG is its own pair


class ClipLoss(nn.Module):
    """Symmetric CLIP/InfoNCE between L2-normalised PPG and ECG embeddings.

    With `gather=True` each rank scores its B local PPG windows against the ECG windows of all
    ranks (B * world negatives) and vice versa, so the effective batch grows with the GPUs; the
    loss of one rank with batch 2B equals the mean of two ranks with batch B each. The paper
    used per-GPU negatives (`gather=False`).
    """

    def __init__(self, gather: bool = True):
        super().__init__()
        self.gather = gather

    def forward(self, ppg: torch.Tensor, ecg: torch.Tensor, logit_scale: torch.Tensor) -> ClipLossOutput:
        """ppg, ecg: (B, D) normalised; logit_scale: () log of the inverse temperature."""
        scale = logit_scale.exp()
        b = ppg.shape[0]
        if self.gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            all_ppg, all_ecg = gather_with_grad(ppg), gather_with_grad(ecg)
            offset = dist.get_rank() * b
        else:
            all_ppg, all_ecg, offset = ppg, ecg, 0
        logits_p = scale * ppg @ all_ecg.T            # (B, B_global)
        logits_e = scale * ecg @ all_ppg.T            # (B, B_global)
        target = torch.arange(b, device=ppg.device) + offset
        loss = 0.5 * (F.cross_entropy(logits_p, target) + F.cross_entropy(logits_e, target))
        with torch.no_grad():
            top1 = (logits_p.argmax(dim=1) == target).float().mean()
        return ClipLossOutput(loss=loss, logits=logits_p, top1_ppg_to_ecg=top1)


def distill_losses(a: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - cos) and MSE between adapted student features a and standardised teacher t (B, Dt)."""
    cos = F.cosine_similarity(a, t, dim=1, eps=1e-6)
    return (1 - cos).mean(), F.mse_loss(a, t)


def hr_bin_losses(hr_logits: torch.Tensor, conf_logit: torch.Tensor, bins: torch.Tensor,
                  y: torch.Tensor, sigma: float = HR_SOFT_LABEL_SIGMA_BPM,
                  l1_weight: float = HR_L1_WEIGHT, conf_weight: float = HR_CONF_WEIGHT
                  ) -> torch.Tensor:
    """HR as a distribution: cross-entropy against a Gaussian soft label (sigma bpm) over the
    bins + l1_weight x L1 (bpm) of the expectation, + conf_weight x BCE of the confidence logit
    against |error of the detached expectation| <= HR_CONFIDENT_WITHIN_BPM. hr_logits (B, K),
    conf_logit (B,), bins (K,) bpm, y (B,) bpm with NaN unknown. 0 with no label in the batch."""
    mask = torch.isfinite(y)
    n = mask.sum().clamp_min(1)
    yt = torch.where(mask, y, torch.zeros_like(y))
    target = torch.exp(-0.5 * ((bins[None] - yt[:, None]) / sigma) ** 2)
    target = target / target.sum(1, keepdim=True).clamp_min(1e-12)
    logp = hr_logits.log_softmax(1)
    ce = -(target * logp).sum(1)
    ev = (logp.exp() * bins).sum(1)
    conf_t = ((ev.detach() - yt).abs() <= HR_CONFIDENT_WITHIN_BPM).float()
    bce = F.binary_cross_entropy_with_logits(conf_logit, conf_t, reduction="none")
    el = ce + l1_weight * (ev - yt).abs() + conf_weight * bce
    return (el * mask).sum() / n


def head_losses(z, y: torch.Tensor, norm: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Masked per-head losses. z: (B, H) standardised outputs in HEAD_NAMES order, or a
    student's HeadZ (then hr is trained as a distribution, `hr_bin_losses`); y (B, H) labels in
    label units (NaN = unknown), HEAD_NAMES order; norm[h] has 'mean' and 'std'. MSE on
    standardised targets (regression heads), BCE on logits (binary heads). A head with no label
    in the batch gives 0 (still in the graph, so DDP sees every parameter used)."""
    out = {}
    hz = None if isinstance(z, torch.Tensor) else z
    if hz is not None:
        z = hz.z
    for i, h in enumerate(HEAD_NAMES):
        yi = y[:, i]
        if h == "hr" and hz is not None:
            bins = torch.tensor(HR_BINS, dtype=hz.hr_logits.dtype, device=hz.hr_logits.device)
            out[h] = hr_bin_losses(hz.hr_logits, hz.hr_conf_logit, bins, yi)
            continue
        mask = torch.isfinite(yi)
        n = mask.sum().clamp_min(1)
        yt = torch.where(mask, yi, torch.zeros_like(yi))
        if h in BINARY_HEADS:
            el = F.binary_cross_entropy_with_logits(z[:, i], yt.clamp(0, 1), reduction="none")
        else:
            el = (z[:, i] - (yt - norm[h]["mean"]) / norm[h]["std"]) ** 2
        out[h] = (el * mask).sum() / n
    return out
