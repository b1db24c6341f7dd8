"""Where the int8 embedding cosine goes: a QAT run's fake-quant model against its float student,
with one part of the quantisation made exact at a time.

    python -m benchmarks.bench_int8_cosine --qat runs/wrist/af10mask/qat \
        --store stores/synthetic-wrist-af10 [--split test] [--windows 256] [--json out.json]

On `--windows` windows of the split, drawn as `anyppg export` draws its parity windows (so on
the test split with the defaults these are the export's parity windows):
  all          1 - mean cosine of the fake-quant embedding to the float student's (the parity
               metric: brevitas fake-quant equals the exported file's LiteRT XNNPACK run)
  per point    the same with one activation quantiser exact (its ReLU kept, no rounding or
               clipping): how much of 1 - cos that point carries on its own
  weights      every weight and bias in float, activations still 8-bit
  drift        everything exact: what QAT's weight updates alone moved the embedding by
  input -max   the input's range widened down to -max_abs_z (the preprocessing's clip)
  ranges x f   every activation range but the input's scaled by f (0.9, 0.8: finer steps, more
               clipping)
and the worst windows' cosines. Nothing here is trained; the model is restored after each line.
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anyppg.runs import atomic_write_json
from anyppg.stage import one_line
from quantization import qmodel as qm
from quantization.qat_model import load_qat_run
from training.checkpoint import StudentLoadError
from training.data.store import WindowStore

PARITY_SEED = 1         # quantization.export: parity windows = held.sample_ppg(n, seed + 1), seed 0


def _exact_act(mod: qm.ActQuant):
    """An ActQuant forward with its activation but no rounding or clipping (same grid tags)."""
    from brevitas.quant_tensor import IntQuantTensor

    def fwd(x):
        x = F.relu(x) if mod.kind == "relu" else (F.hardtanh(x, 0.0, 6.0) if mod.kind == "relu6" else x)
        q = mod.quant(x)
        return IntQuantTensor(x, q.scale, q.zero_point, q.bit_width, q.signed, False)
    return fwd


def _float_layer(mod: qm.QLayer):
    """A QLayer forward with its float weights and bias on the unrounded input value."""
    L = mod.layer

    def fwd(x, ref):
        v = getattr(x, "value", x)
        if mod.kind == "linear":
            return F.linear(v, L.weight, L.bias)
        return F.conv1d(v, L.weight, L.bias, L.stride, L.padding, L.dilation, L.groups)
    return fwd


@contextmanager
def patched(mods: list, make):
    """Replace each module's forward by make(module) for the block, then restore it."""
    old = [m.forward for m in mods]
    try:
        for m in mods:
            m.forward = make(m)
        yield
    finally:
        for m, f in zip(mods, old):
            m.forward = f


def _input_range(qg):
    t = qg.aq_input.quant.act_quant.fused_activation_quant_proxy.tensor_quant
    return t.scaling_impl.value, t.zero_point_impl.value     # (max - min, min) of the input grid


@torch.no_grad()
def budget(qat: Path, store: Path, split: str, n: int) -> dict:
    m = load_qat_run(qat)
    # the export's parity windows: its seed (0) + 1, the same seeded draw
    _, xs = WindowStore(store, split=split).sample_ppg(n, PARITY_SEED)
    x = torch.from_numpy(xs).unsqueeze(1)
    if len(x) == 0:
        raise ValueError(f"{store}: no {split} windows")
    fe = m.folded(x).embedding.numpy()

    def cos() -> np.ndarray:
        qe = m.qg(x).embedding.numpy()
        return (fe * qe).sum(1) / (np.linalg.norm(fe, axis=1) * np.linalg.norm(qe, axis=1) + 1e-12)
    c0 = cos()
    acts = [(nme, mod) for nme, mod in m.qg.named_modules() if isinstance(mod, qm.ActQuant)]
    layers = [mod for _, mod in m.qg.named_modules() if isinstance(mod, qm.QLayer)]
    res = {"qat": str(qat), "store": str(store), "split": split, "windows": int(len(x)),
           "one_minus_cos": float(1 - c0.mean()), "worst": [float(v) for v in np.sort(c0)[:5]],
           "per_point": {}}
    for nme, mod in acts:
        with patched([mod], _exact_act):
            res["per_point"][nme] = float(1 - cos().mean())
    with patched(layers, _float_layer):
        res["weights_float"] = float(1 - cos().mean())
        with patched([mod for _, mod in acts], _exact_act):
            sg = [mod for mod in m.qg.modules() if isinstance(mod, qm.SameGrid)]
            with patched(sg, lambda mod: (lambda v, ref: v)):
                d = cos()
                res["drift"] = {"one_minus_cos": float(1 - d.mean()), "min": float(d.min())}
    span, lo = _input_range(m.qg)
    s0, z0 = span.detach().clone(), lo.detach().clone()
    widest = -float(m.student.spec.max_abs_z)
    try:
        hi = float(s0 + z0)
        span.copy_(torch.full_like(s0, hi - widest))
        lo.copy_(torch.full_like(z0, widest))
        res["input_widened"] = {"low": widest, "one_minus_cos": float(1 - cos().mean())}
    finally:
        span.copy_(s0)
        lo.copy_(z0)
    scales = [p for nme, p in m.qg.named_parameters()
              if nme.startswith("aq_") and not nme.startswith("aq_input") and nme.endswith("scaling_impl.value")]
    saved = [p.detach().clone() for p in scales]
    res["ranges_scaled"] = {}
    try:
        for f in (0.9, 0.8):
            for p, v in zip(scales, saved):
                p.copy_(v * f)
            res["ranges_scaled"][f"{f:g}"] = float(1 - cos().mean())
    finally:
        for p, v in zip(scales, saved):
            p.copy_(v)
    return res


def describe(r: dict) -> str:
    base = r["one_minus_cos"]
    top = sorted(r["per_point"].items(), key=lambda kv: kv[1])[:3]
    gains = sum(base - v for v in r["per_point"].values())
    return "\n".join([
        f"{r['qat']} on {r['windows']} {r['split']} windows: cosine {1 - base:.5f} (1 - cos {base:.2e}); "
        f"worst windows {', '.join(f'{v:.3f}' for v in r['worst'][:3])}",
        f"  one activation quantiser exact at a time: the best gains {base - top[0][1]:+.2e} ({top[0][0]}); "
        f"all gains summed {gains:+.2e}",
        f"  weights in float: 1 - cos {r['weights_float']:.2e}; everything exact (QAT's weight drift): "
        f"{r['drift']['one_minus_cos']:.2e} (worst {r['drift']['min']:.3f})",
        f"  input range widened to {r['input_widened']['low']:g}: {r['input_widened']['one_minus_cos']:.2e}; "
        "activation ranges x " + ", ".join(f"{k}: {v:.2e}" for k, v in r["ranges_scaled"].items())])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_int8_cosine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--qat", required=True, help="an `anyppg qat` run folder")
    ap.add_argument("--store", required=True, help="its window store")
    ap.add_argument("--split", default="test")
    ap.add_argument("--windows", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        r = budget(Path(args.qat), Path(args.store), args.split, args.windows)
    except (StudentLoadError, FileNotFoundError, ValueError) as e:
        print(f"bench_int8_cosine: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(describe(r))
    if args.json:
        atomic_write_json(Path(args.json), r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
