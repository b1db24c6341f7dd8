"""Measurements that `anyppg bench` runs each in a fresh process (so each gets its own thread
setting and its own peak RSS): per-window latency of one model, and the streaming runtime's
real-time factor at one sensor rate.

    python -m benchmarks.bench_stream_workers latency --kind int8 --backend xnnpack --threads 1 \
        --model EXPORT --windows W.npy --result R.json
    python -m benchmarks.bench_stream_workers stream --model EXPORT --fs 64 --seconds 600 \
        --windows W.npy --result R.json

Latency is the wall and the CPU time (process_time: robust to other jobs on a shared machine)
of one window's inference, batch 1: for the int8 file quantising the
input, set_tensor, invoke and reading every output; for PyTorch a no-grad forward of (1, 1, L).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Current resident set size (MB) from /proc (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _torch_model(kind: str, src: str | None, threads: int):
    import torch
    torch.set_num_threads(threads)
    if kind == "torch-student":
        from training.checkpoint import build_student, load_checkpoint
        ck, path = load_checkpoint(src)
        key = "float_model" if "float_model" in ck else "model"
        return build_student(ck, path, state_key=key).model
    if kind == "torch-teacher":
        from edge_runtime.spec import SignalSpec
        from training.teacher import load_teacher
        return load_teacher(src, "", "", SignalSpec()).entry.model
    if kind == "torch-anyppg-net1d":
        from training.models import build_model
        m = build_model("anyppg-net1d").model      # random weights: time does not depend on them
        return m.eval()
    raise ValueError(f"unknown kind {kind}")


def time_int8(model_src: str, backend: str, threads: int, windows: np.ndarray, repeats: int):
    from edge_runtime.model import EdgeModel
    m = EdgeModel.load(model_src, backend=backend, threads=threads, warmup=10)
    times, cpu = [], []
    for _ in range(repeats):
        for w in windows:
            c, t = time.process_time_ns(), time.perf_counter_ns()
            m.invoke_raw(w)
            times.append(time.perf_counter_ns() - t)
            cpu.append(time.process_time_ns() - c)
    # what the interpreter alone costs (input already set): the rest is Python-side I/O
    inv, inv_cpu = [], []
    for _ in range(len(times)):
        c, t = time.process_time_ns(), time.perf_counter_ns()
        m.interp.invoke()
        inv.append(time.perf_counter_ns() - t)
        inv_cpu.append(time.process_time_ns() - c)
    return np.asarray(times) / 1e3, {"bytes": len(m.data), "cpu_us": np.asarray(cpu) / 1e3,
                                     "p50_invoke_only_us": float(np.percentile(inv, 50)) / 1e3,
                                     "cpu_p50_invoke_only_us": float(np.percentile(inv_cpu, 50)) / 1e3}


def time_torch(kind: str, src: str | None, threads: int, windows: np.ndarray, repeats: int):
    import torch
    model = _torch_model(kind, src, threads).eval()
    x = torch.from_numpy(np.ascontiguousarray(windows, np.float32)).unsqueeze(1)
    params = sum(p.numel() for p in model.parameters())
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(min(10, len(x))):
            model(x[i:i + 1])
        for _ in range(repeats):
            for i in range(len(x)):
                c, t = time.process_time_ns(), time.perf_counter_ns()
                model(x[i:i + 1])
                times.append(time.perf_counter_ns() - t)
                cpu.append(time.process_time_ns() - c)
    return np.asarray(times) / 1e3, {"params": int(params), "cpu_us": np.asarray(cpu) / 1e3}


def latency(a) -> dict:
    windows = np.load(a.windows)
    base = rss_mb()
    if a.kind == "int8":
        us, extra = time_int8(a.model, a.backend, a.threads, windows, a.repeats)
    else:
        us, extra = time_torch(a.kind, a.model, a.threads, windows, a.repeats)
    cpu = extra.pop("cpu_us")
    return {"kind": a.kind, "backend": a.backend, "threads": a.threads, "n": int(len(us)),
            "cpu_p50_us": float(np.percentile(cpu, 50)), "cpu_mean_us": float(cpu.mean()),
            "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "throughput_per_s": float(1e6 / us.mean()),
            "rss_after_imports_mb": base, "peak_rss_mb": peak_rss_mb(), "samples_us": us.tolist(),
            "load_average": os.getloadavg(),
            **extra}


def sensor_signal(windows: np.ndarray, fs: float, seconds: float) -> np.ndarray:
    """A continuous PPG-like record at `fs`: store windows end to end, resampled from 125 Hz."""
    from scipy import signal as sps

    from edge_runtime.resample import resample_ratio
    need = int(np.ceil(seconds / 10.0))
    x = np.concatenate([windows[i % len(windows)] for i in range(need)]).astype(np.float64)
    if fs != 125.0:
        x = sps.resample_poly(x, *resample_ratio(125.0, fs))
    return x[: int(seconds * fs)]


def stream(a) -> dict:
    """Real-time factor of PPGStream (timebase, resampling, windows, preprocessing, quality
    flags, quantisation, inference, readout) on 1-s chunks; every window is inferred."""
    from edge_runtime.model import EdgeModel
    from edge_runtime.stream import PPGStream
    windows = np.load(a.windows)
    x = sensor_signal(windows, a.fs, a.seconds)
    model = EdgeModel.load(a.model, backend=a.backend, threads=1, warmup=10)
    step = max(1, int(round(a.chunk_s * a.fs)))
    best, n_win = None, 0
    for _ in range(a.repeats):
        s = PPGStream(model, a.fs, infer_flagged=True)
        c, t = time.process_time(), time.perf_counter()
        res = []
        for i in range(0, len(x), step):
            res += s.push(x[i:i + step])
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if best is None or dc < best_cpu:      # min CPU time over repeats: least disturbed run
            best, best_cpu, n_win = dt, dc, len(res)
    # the same stream without inference: what preprocessing alone costs (min over repeats)
    pre = np.inf
    for _ in range(a.repeats):
        s = PPGStream(None, a.fs)
        c = time.process_time()
        for i in range(0, len(x), step):
            s.push(x[i:i + step])
        pre = min(pre, time.process_time() - c)
    return {"fs": a.fs, "seconds": len(x) / a.fs, "chunk_s": a.chunk_s, "windows": n_win,
            "wall_s": best, "real_time_factor_wall": (len(x) / a.fs) / best,
            "cpu_s": best_cpu, "real_time_factor": (len(x) / a.fs) / best_cpu,
            "per_window_cpu_us": best_cpu / max(n_win, 1) * 1e6,
            "real_time_factor_without_inference": (len(x) / a.fs) / pre,
            "per_window_cpu_us_without_inference": pre / max(n_win, 1) * 1e6,
            "load_average": os.getloadavg(), "peak_rss_mb": peak_rss_mb()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench_stream_workers")
    p.add_argument("what", choices=("latency", "stream"))
    p.add_argument("--kind", default="int8")
    p.add_argument("--backend", default="xnnpack")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model")
    p.add_argument("--windows", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--fs", type=float, default=125.0)
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--chunk-s", type=float, default=1.0)
    a = p.parse_args(argv)
    res = latency(a) if a.what == "latency" else stream(a)
    Path(a.result).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
