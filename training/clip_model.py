"""PPG encoder + ECG encoder + projection heads: the two towers of ECG-guided pretraining."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class ProjectionHead(nn.Module):
    """Linear(d, d) -> BN -> GELU -> Linear(d, out), as in the AnyPPG recipe.

    (GELU is fine here: the heads are thrown away after pretraining and never reach the watch.)
    """

    def __init__(self, d: int, out: int = 128, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d)
        self.fc2 = nn.Linear(d, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, out)"""
        return self.fc2(F.gelu(self.bn(self.fc1(self.dropout(x)))))


@dataclass
class ClipOutput:
    ppg: torch.Tensor           # (B, P) L2-normalised PPG projection
    ecg: torch.Tensor           # (B, P) L2-normalised ECG projection
    ppg_features: torch.Tensor  # (B, D_ppg) encoder embedding (what probes and students use)
    logit_scale: torch.Tensor   # () log inverse temperature


class PPGECGClip(nn.Module):
    """Two towers. The ECG tower is either a frozen pretrained encoder (paper setting), whose
    features can then be precomputed once and passed as `ecg_features`, or trained jointly."""

    def __init__(self, ppg_encoder: nn.Module, ppg_dim: int, ecg_encoder: nn.Module | None,
                 ecg_dim: int, proj_dim: int = 128, ppg_dropout: float = 0.2,
                 freeze_ecg: bool = True, init_temperature: float = 0.07,
                 checkpoint_ecg: bool = False):
        super().__init__()
        self.ppg_encoder = ppg_encoder
        self.ecg_encoder = ecg_encoder
        self.ppg_proj = ProjectionHead(ppg_dim, proj_dim, dropout=ppg_dropout)
        self.ecg_proj = ProjectionHead(ecg_dim, proj_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.freeze_ecg = freeze_ecg
        self.checkpoint_ecg = checkpoint_ecg
        if freeze_ecg and ecg_encoder is not None:
            for p in ecg_encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen encoder stays in eval mode: its batch-norm statistics must not drift.
        if self.freeze_ecg and self.ecg_encoder is not None:
            self.ecg_encoder.eval()
        return self

    def encode_ecg(self, ecg: torch.Tensor) -> torch.Tensor:
        """(B, 1, Le) -> (B, D_ecg) encoder features."""
        if self.ecg_encoder is None:
            raise ValueError("this model has no ECG encoder: pass cached ecg_features")
        if self.freeze_ecg:
            # No graph at all for a frozen tower: it keeps no activations, which is what the
            # paper's activation checkpointing of this branch was for.
            with torch.no_grad():
                return self.ecg_encoder(ecg).embedding
        # A trainable ECG tower (Net1D at 500 Hz) dominates memory: recompute its activations.
        if self.checkpoint_ecg and self.training:
            return checkpoint(lambda x: self.ecg_encoder(x).embedding, ecg, use_reentrant=False)
        return self.ecg_encoder(ecg).embedding

    def forward(self, ppg: torch.Tensor, ecg: torch.Tensor | None = None,
                ecg_features: torch.Tensor | None = None) -> ClipOutput:
        """ppg (B, 1, Lp); either ecg (B, 1, Le) or precomputed ecg_features (B, D_ecg)."""
        feats = self.ppg_encoder(ppg).embedding
        if ecg_features is None:
            if ecg is None:
                raise ValueError("forward needs ecg windows or cached ecg_features")
            ecg_features = self.encode_ecg(ecg)
        p = F.normalize(self.ppg_proj(feats), dim=-1)
        e = F.normalize(self.ecg_proj(ecg_features.float()), dim=-1)
        return ClipOutput(ppg=p, ecg=e, ppg_features=feats, logit_scale=self.logit_scale)
