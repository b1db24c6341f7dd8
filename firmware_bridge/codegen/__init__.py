"""Generated int8 inference: C for one fixed .tflite model, bit-exact with TensorFlow Lite Micro.

    generate_inference(model_bytes, sidecar, out_dir, *, fuse=True) -> dict

writes into out_dir
    anyppg_model.h / anyppg_model.c   the model: ports by sidecar name, weights and per-layer
                                      constants as const arrays, one static arena planned here,
                                      `int anyppg_invoke(const anyppg_model_inputs *,
                                      anyppg_model_outputs *)`
    anyppg_nn.h / anyppg_nn.c         the int8 kernels (plain C; ACLE DSP path on Cortex-M4+)
    anyppg_fixedpoint.h               TFLite's fixed-point rules
and returns facts: arena_bytes, weight_bytes (weights + biases + multipliers + shifts),
ops (TFLite ops), layers (kernel calls after fusion), inputs / outputs (name -> len, scale,
zero_point), files. Unsupported ops, per-tensor-quantised conv weights, float or int16 tensors
raise CodegenError with one line naming the op.
"""
from __future__ import annotations

import shutil
from pathlib import Path


from anyppg.runs import atomic_write_text

from .emit import conv_weights, dw_weights16, header, rq_fast, source
from .lower import SUPPORTED_OPS, CodegenError, Lowered, lower
from .plan import fuse as fuse_layers
from .plan import plan_arena

C_DIR = Path(__file__).resolve().parent / "c"
KERNEL_FILES = ("anyppg_nn.h", "anyppg_nn.c", "anyppg_fixedpoint.h")
SOURCES = ("anyppg_model.c", "anyppg_nn.c")

__all__ = ["generate_inference", "CodegenError", "SUPPORTED_OPS", "C_DIR", "KERNEL_FILES", "SOURCES"]


def _conv_bytes(l) -> int:
    w, b, _ = conv_weights(l)
    wb = w.size if l.kind == "conv" else 2 * dw_weights16(w).size
    return wb + (4 + (9 if rq_fast(l) else 5)) * b.size   # bias; (mult, rounding) + e, or mult + shift


def _weight_bytes(layers) -> int:
    n = 0
    for l in layers:
        if l.kind in ("conv", "dwconv"):
            n += _conv_bytes(l) + (_conv_bytes(l.p["then"]) if "then" in l.p else 0)
        elif l.kind == "fc":
            n += l.p["w"].size + 8 * l.p["n_out"] + l.p["n_out"]
    return int(n)


def _macs(l) -> int:
    p = l.p
    if l.kind == "conv":
        return p["out_len"] * p["out_ch"] * p["k"] * p["in_ch"]
    if l.kind == "dwconv":
        return p["out_len"] * p["out_ch"] * p["k"] + (_macs(p["then"]) if "then" in p else 0)
    if l.kind == "fc":
        return p["n_in"] * p["n_out"]
    return 0


def _ports(low: Lowered, which: dict[str, int]) -> dict[str, dict]:
    return {n: {"len": low.tensors[t].size, "shape": list(low.tensors[t].shape),
                "scale": low.tensors[t].scale, "zero_point": low.tensors[t].zero_point}
            for n, t in which.items()}


def generate_inference(model_bytes: bytes, sidecar: dict, out_dir: Path, *, fuse: bool = True) -> dict:
    """Write the generated inference for `model_bytes` into out_dir (see module docstring)."""
    low = lower(bytes(model_bytes), sidecar)
    layers = fuse_layers(low, enable=fuse)
    plan = plan_arena(low, layers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "anyppg_model.h", header(low, plan))
    atomic_write_text(out_dir / "anyppg_model.c", source(low, layers, plan))
    for f in KERNEL_FILES:
        tmp = out_dir / f".{f}.tmp"
        shutil.copyfile(C_DIR / f, tmp)
        tmp.replace(out_dir / f)
    macs = sum(_macs(l) for l in layers)
    return {"arena_bytes": plan.arena_bytes, "arena_bytes_unshared": plan.naive_bytes,
            "weight_bytes": _weight_bytes(layers), "macs": int(macs), "ops": low.ops,
            "layers": [l.label for l in layers if l.kind != "reshape"],
            "inputs": _ports(low, low.inputs), "outputs": _ports(low, low.outputs),
            "files": ["anyppg_model.h", "anyppg_model.c", *KERNEL_FILES],
            "sources": list(SOURCES), "invoke": "int anyppg_invoke(const anyppg_model_inputs *in, "
                                                "anyppg_model_outputs *out)",
            "fused": bool(fuse)}
