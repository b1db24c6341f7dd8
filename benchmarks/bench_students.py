"""Size table: parameters and MACs per 10-s window of the teachers and the students.

    python -m benchmarks.bench_students [--latency] [--threads 1] [--json out.json]

MACs are `training.models.flops.count_macs` (convs and linears; BN, activations, pools and adds
are O(activations) and left out) on one 1 x 1250 PPG window; the teachers are built on the meta
device, so nothing large is allocated. `--latency` also times a float32 forward of one window on
this CPU (eager PyTorch: a rough ranking, not what an int8 MCU kernel does). Int8 weight bytes
assume 1 byte per parameter after BN folding (folded BN parameters are not counted).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from training.models import build_model, count_macs, count_params
from training.models import student as S

TEACHERS = ("anyppg-net1d", "net1d-small", "net1d-tiny")


def _bn_params(model) -> int:
    return sum(p.numel() for m in model.modules()
               if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for p in m.parameters())


def _latency_ms(model, shape, repeat: int = 50) -> float:
    model.eval()
    x = torch.randn(1, *shape)
    with torch.no_grad():
        for _ in range(5):
            model(x)
        t0 = time.perf_counter()
        for _ in range(repeat):
            model(x)
    return 1000 * (time.perf_counter() - t0) / repeat


def rows(latency: bool = False) -> list[dict]:
    out = []
    teacher_macs = None
    for name in TEACHERS + S.STUDENT_MODELS:
        is_teacher = name in TEACHERS
        if is_teacher and not latency:
            with torch.device("meta"):
                e = build_model(name)
        else:
            e = build_model(name)
        shape = (1, e.input_len)
        macs = count_macs(e.model, shape)
        params = count_params(e.model)
        teacher_macs = teacher_macs or macs
        r = {"model": name, "role": "teacher" if is_teacher else "student", "params": params,
             "int8_weight_bytes": params - _bn_params(e.model), "macs_per_window": macs,
             "macs_fraction_of_anyppg": macs / teacher_macs, "embed_dim": e.embed_dim}
        if not is_teacher:
            r["op_check"] = "ok" if not S.unsupported_op_check(e.model) else "FAIL"
        if latency:
            r["cpu_ms_per_window"] = _latency_ms(e.model, shape)
        out.append(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_students")
    ap.add_argument("--latency", action="store_true", help="also time a float32 CPU forward")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rs = rows(args.latency)
    head = f"| {'model':<13}| {'params':>10} | {'MACs / window':>14} | {'vs teacher':>10} | {'D':>4} |"
    if args.latency:
        head += f" {'CPU ms':>7} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rs:
        line = (f"| {r['model']:<13}| {r['params']:>10,} | {r['macs_per_window'] / 1e6:>12.2f} M | "
                f"{'1/' + format(1 / r['macs_fraction_of_anyppg'], '.0f') if r['macs_fraction_of_anyppg'] < 1 else '1':>10} | "
                f"{r['embed_dim']:>4} |")
        if args.latency:
            line += f" {r['cpu_ms_per_window']:>7.2f} |"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rs, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
