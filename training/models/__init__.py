"""Encoders for AnyPPG-Edge: the Net1D architecture, a name -> model registry, checkpoint
loading for published weights, and parameter/MAC counting.

    from training.models import build_model, load_encoder_checkpoint
    entry = build_model("anyppg-net1d")
    load_encoder_checkpoint(entry, "anyppg_ckpt.pth")
    out = entry.model(x)            # x (B, 1, 1250) -> out.embedding (B, 512), out.features
"""
from .checkpoint_io import LoadResult, load_encoder_checkpoint
from .flops import count_macs, count_params
from .net1d import ANYPPG_PPG, ECGFOUNDER, EncoderOutput, Net1D, Net1DConfig
from .registry import ModelEntry, build_model, list_models, register_model

__all__ = [
    "build_model", "list_models", "ModelEntry", "register_model", "load_encoder_checkpoint",
    "LoadResult", "Net1D", "Net1DConfig", "EncoderOutput", "ANYPPG_PPG", "ECGFOUNDER",
    "count_macs", "count_params",
]
from training.models import student as _student  # noqa: F401,E402  (registers the student family)
