"""Can the generator keep up? Paired windows/s the synthetic corpus makes per core, next to
what the trainer consumes, in the same run.

    python -m benchmarks.bench_corpus [--subjects 12] [--steps 3] [--configs arms-small,cpu-long]

Generator: `training.data.corpus.synthetic_group` (simulate one subject's ECG + PPG, window it,
band-pass and z-score both signals with edge_runtime's preprocessing, window labels) for
groups of `windows_per_subject` windows, one thread. Trainer: the `training.ssl` step (forward,
loss, backward, AdamW) of each config's objective on batches from the mixed corpus, one thread.
The ratio says how many generator cores one training core needs (below 1: one core of
generation feeds more than one trainer).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from anyppg.config import load_config
from edge_runtime.spec import SPECS
from training.data.corpus import DEFAULT_LABELS, PairedCorpus, synthetic_group
from training.loop import make_optimizer
from training.ssl import ArmConfig, arm_loss, build_arm


def generator_rate(subjects: int, per_subject: int, seed: int = 0) -> dict:
    spec = SPECS["small"]
    synthetic_group(10_000, per_subject, seed, spec, DEFAULT_LABELS)     # warm-up (imports, filters)
    t = time.perf_counter()
    for k in range(subjects):
        synthetic_group(k, per_subject, seed, spec, DEFAULT_LABELS)
    dt = time.perf_counter() - t
    return {"subjects": subjects, "windows": subjects * per_subject, "seconds": dt,
            "windows_per_s": subjects * per_subject / dt}


def trainer_rate(config: str, steps: int, store: str | None) -> dict:
    cfg = load_config(ArmConfig(), "pretrain", config, [])
    frac = cfg.corpus.synthetic_fraction if store else 1.0
    corpus = PairedCorpus(type(cfg.corpus)(synthetic_fraction=frac), store=store)
    model, entry = build_arm(cfg, len(cfg.corpus.labels))
    opt, params = make_optimizer(model, cfg)
    norm = None
    batches = [corpus.batch(s, cfg.batch_size, cfg.windows_per_subject, cfg.seed) for s in range(steps + 1)]
    model.train()
    for i, b in enumerate(batches):     # step 0 warms up allocators
        if i == 1:
            t = time.perf_counter()
        loss, _ = arm_loss(cfg, model, b, i, norm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t
    return {"config": config, "objective": cfg.objective, "ppg_model": cfg.ppg_model, "ecg_model": cfg.ecg_model,
            "batch": cfg.batch_size, "steps": steps, "seconds_per_step": dt / steps,
            "windows_per_s": steps * cfg.batch_size / dt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_corpus")
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--per-subject", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--configs", default="arms-small,cpu-long")
    ap.add_argument("--store", default=None, help="paired store for the real share of the batches")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    gen = generator_rate(args.subjects, args.per_subject)
    rows = [trainer_rate(c, args.steps, args.store) for c in args.configs.split(",")]
    print(f"generator (paired ECG+PPG at 125 Hz, preprocessed, groups of {args.per_subject}): "
          f"{gen['windows_per_s']:.1f} windows/s per core")
    print(f"{'config':<12}{'objective':<11}{'PPG encoder':<15}{'ECG encoder':<17}{'s/step':>8}"
          f"{'windows/s':>11}{'generator cores per trainer core':>34}")
    for r in rows:
        r["generator_cores_per_trainer_core"] = r["windows_per_s"] / gen["windows_per_s"]
        print(f"{r['config']:<12}{r['objective']:<11}{r['ppg_model']:<15}{r['ecg_model']:<17}"
              f"{r['seconds_per_step']:>8.2f}{r['windows_per_s']:>11.1f}{r['generator_cores_per_trainer_core']:>34.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"generator": gen, "trainers": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
