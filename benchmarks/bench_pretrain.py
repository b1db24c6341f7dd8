"""Pretraining throughput: training windows/s per encoder, and the frozen-ECG cache speed-up.

    python -m benchmarks.bench_pretrain [--device cpu|cuda] [--batch 16] [--steps 5]

Times the real `training.pretrain.train_step` (forward, symmetric InfoNCE, backward, AdamW) on
random windows, next to the forward MACs per window, so a reader can judge how close a machine
gets to what its FLOP rate predicts. The cache comparison runs the same step with the frozen
ECG tower live (re-encoding every window, as without the cache) and with cached features.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from training.clip_model import PPGECGClip
from training.losses import ClipLoss
from training.models import build_model
from training.models.flops import count_macs
from training.pretrain import PretrainConfig, make_optimizer, train_step

PAIRS = {"small": ("net1d-small", "net1d-ecg-small"), "full": ("anyppg-net1d", "ecgfounder-net1d")}


def _time_steps(model, ppg, ecg, feats, steps, device, autocast) -> float:
    opt, params = make_optimizer(model, PretrainConfig())
    loss = ClipLoss(gather=False)
    model.train()
    for i in range(steps + 1):          # the first step warms up allocators and kernels
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        train_step(model, model, loss, opt, params, 1.0, ppg, ecg=ecg, ecg_features=feats, autocast=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def bench_pair(pair: str, batch: int, steps: int, device: torch.device) -> dict:
    ppg_name, ecg_name = PAIRS[pair]
    p, e = build_model(ppg_name), build_model(ecg_name)
    macs_p = count_macs(p.model, (1, 1, p.spec.ppg_len))
    macs_e = count_macs(e.model, (1, 1, e.spec.ecg_len))
    model = PPGECGClip(p.model, p.embed_dim, e.model, e.embed_dim, freeze_ecg=True).to(device)
    ppg = torch.randn(batch, 1, p.spec.ppg_len, device=device)
    ecg = torch.randn(batch, 1, e.spec.ecg_len, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad():
        feats = model.encode_ecg(ecg)
    t_live = _time_steps(model, ppg, ecg, None, steps, device, autocast)
    t_cached = _time_steps(model, ppg, None, feats, steps, device, autocast)
    # FLOP model of a step: PPG forward + backward (~3x forward) with or without the ECG forward.
    predicted = (3 * macs_p + macs_e) / (3 * macs_p)
    return {"pair": pair, "ppg_model": ppg_name, "ecg_model": ecg_name, "batch": batch,
            "ppg_macs_per_window": macs_p, "ecg_macs_per_window": macs_e,
            "windows_per_s_live_ecg": batch / t_live, "windows_per_s_cached_ecg": batch / t_cached,
            "cache_speedup": t_live / t_cached, "cache_speedup_flop_model": predicted,
            "achieved_gmacs_per_s_cached": 3 * macs_p * batch / t_cached / 1e9}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_pretrain")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--pairs", default="small,full")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: per-core figures)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench_pair(p, args.batch, args.steps, device) for p in args.pairs.split(",")]
    print(f"pretraining step throughput on {device} ({torch.get_num_threads()} threads), batch {args.batch}, frozen ECG tower:")
    print(f"{'PPG encoder':<14}{'MACs/win':>10}{'ECG encoder':>18}{'MACs/win':>10}"
          f"{'live ECG w/s':>14}{'cached w/s':>12}{'speed-up':>10}{'FLOP model':>12}")
    for r in rows:
        print(f"{r['ppg_model']:<14}{r['ppg_macs_per_window'] / 1e6:>9.1f}M{r['ecg_model']:>18}"
              f"{r['ecg_macs_per_window'] / 1e6:>9.1f}M{r['windows_per_s_live_ecg']:>14.1f}"
              f"{r['windows_per_s_cached_ecg']:>12.1f}{r['cache_speedup']:>9.2f}x{r['cache_speedup_flop_model']:>11.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
