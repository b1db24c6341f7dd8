"""`anyppg bench`: the edge runtime against the models it replaces, same windows, same run.

    anyppg bench --from EXPORT_RUN --teacher RUN_OR_CHECKPOINT --data STORE --out DIR
                 [--windows 200] [--rates 25,64,125] [--stream-seconds 600]
                 [--troika ../shared/data/troika_test] [--liu ../shared/data/liu2022_arrhythmia]

1. Latency per window (p50, p99, throughput, peak RSS), batch 1, each in a fresh process on the
   same store windows: the int8 file on LiteRT XNNPACK (1 and 2 threads), LiteRT reference
   kernels and tflite-runtime; the float student in PyTorch; the run's teacher and the
   full-size `anyppg-net1d` (4.04 M parameters) in PyTorch float, 1 thread each. Headline
   ratio: full-size teacher p50 / int8 XNNPACK 1-thread p50, on CPU time (process_time, which
   other jobs on a shared machine do not inflate) and on wall time.
2. Real-time factor of the streaming runtime (`PPGStream`, 1-s chunks, every window inferred)
   at each sensor rate, preprocessing included.
3. Accuracy through the runtime (`bench_stream_accuracy`).
Writes results.json, results.md, latency.png, accuracy_cost.png into --out.

On a Raspberry Pi (aarch64): `pip install .[pi]` (numpy, scipy, ai-edge-litert, tflite-runtime;
torch for the PyTorch rows), copy the export run, the store and the teacher run, and run the
same command; compare the ratios (int8 vs teacher, XNNPACK vs tflite-runtime) and the
real-time factors with the x86 results.md, not the absolute times.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from anyppg.runs import atomic_dir
from anyppg.stage import run_stage

LATENCY_CONFIGS = [
    ("int8 LiteRT XNNPACK, 1 thread", "int8", "xnnpack", 1),
    ("int8 LiteRT XNNPACK, 2 threads", "int8", "xnnpack", 2),
    ("int8 LiteRT reference kernels", "int8", "ref", 1),
    ("int8 tflite-runtime 2.14", "int8", "tflite-runtime", 1),
    ("float student, PyTorch", "torch-student", "", 1),
    ("run's teacher, PyTorch float", "torch-teacher", "", 1),
    ("anyppg-net1d (full-size teacher), PyTorch float", "torch-anyppg-net1d", "", 1),
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anyppg bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="export", required=True, help="export run folder (model_int8.tflite)")
    p.add_argument("--teacher", help="pretrain run folder or checkpoint (the run's teacher)")
    p.add_argument("--data", required=True, help="window store (test split used)")
    p.add_argument("--out", required=True)
    p.add_argument("--windows", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rates", default="25,64,125")
    p.add_argument("--stream-seconds", type=float, default=600.0)
    p.add_argument("--troika", default="../shared/data/troika_test")
    p.add_argument("--liu", default="../shared/data/liu2022_arrhythmia")
    p.add_argument("--liu-max", type=int, default=0, help="cap on Liu segments (0: all)")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-latency", action="store_true", help="accuracy (and stream) only")
    p.add_argument("--overwrite", action="store_true")
    return p


def _worker(args: list[str], tmp: Path, name: str) -> dict[str, Any]:
    res = tmp / f"{name}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "benchmarks.bench_stream_workers", *args,
                        "--result", str(res)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    out = json.loads(res.read_text())
    res.unlink()
    return out


def qat_source(export: Path) -> str | None:
    sc = json.loads((export / "model_int8.json").read_text())
    src = sc.get("source_qat_run")
    return src if src and Path(src).exists() else None


def latency_section(a, tmp: Path, windows_file: Path) -> list[dict]:
    rows = []
    src = {"int8": str(a.export), "torch-student": qat_source(Path(a.export)),
           "torch-teacher": a.teacher, "torch-anyppg-net1d": None}
    for label, kind, backend, threads in LATENCY_CONFIGS:
        if kind in ("torch-student", "torch-teacher") and not src[kind]:
            rows.append({"model": label, "error": "not given"})
            continue
        args = ["latency", "--kind", kind, "--threads", str(threads), "--windows", str(windows_file),
                "--repeats", str(a.repeats)]
        args += ["--backend", backend] if backend else []
        args += ["--model", src[kind]] if src[kind] else []
        print(f"[bench] latency: {label}", file=sys.stderr)
        rows.append({"model": label, **_worker(args, tmp, kind + backend)})
    return rows


def stream_section(a, tmp: Path, windows_file: Path) -> list[dict]:
    rows = []
    for fs in [float(r) for r in a.rates.split(",") if r]:
        print(f"[bench] stream at {fs:g} Hz", file=sys.stderr)
        rows.append(_worker(["stream", "--model", str(a.export), "--fs", str(fs), "--seconds",
                             str(a.stream_seconds), "--windows", str(windows_file), "--repeats", "3"],
                            tmp, f"stream{fs:g}"))
    return rows


def accuracy_section(a) -> list[dict]:
    from benchmarks import bench_stream_accuracy as acc
    from edge_runtime.model import EdgeModel
    model = EdgeModel.load(a.export, backend="xnnpack")
    student = teacher = ridge = None
    q = qat_source(Path(a.export))
    if q:
        from training.checkpoint import build_student, load_checkpoint
        ck, path = load_checkpoint(q)
        student = build_student(ck, path, "float_model" if "float_model" in ck else "model").model
    if a.teacher:
        from training.teacher import load_teacher
        teacher = load_teacher(a.teacher, "", "", model.spec).entry.model
        ridge = acc.fit_teacher_hr(teacher, Path(a.data))
    rows = [acc.bidmc_rows(model, student, teacher, ridge, Path(a.data))]
    if Path(a.troika).exists():
        rows.append(acc.troika_rows(model, student, teacher, ridge, Path(a.troika)))
    if Path(a.liu).exists():
        rows.append(acc.liu_rows(model, student, Path(a.liu), a.liu_max or None,
                                 exclude=acc.seen_subjects(Path(a.export), "liu2022")))
    return rows


def coral_section(export: Path) -> dict[str, Any]:
    """The export's offline Edge TPU rule check and what a user with the compiler runs."""
    audit = export / "audit.json"
    rep = json.loads(audit.read_text()).get("model_int8.tflite", {}).get("edgetpu") if audit.exists() else None
    return {"offline_rules": rep,
            "compile_command": f"edgetpu_compiler -s -o OUT {export / 'model_int8.tflite'}",
            "note": "the compiler and runtime are not installable here; its log lists ops mapped to the TPU"}


def headline(lat: list[dict], stream: list[dict]) -> dict[str, Any]:
    by = {r["model"]: r for r in lat if "p50_us" in r}
    i8 = by.get(LATENCY_CONFIGS[0][0])
    out: dict[str, Any] = {}
    for label, *_ in LATENCY_CONFIGS[4:]:
        if i8 and label in by:
            out[f"speedup_vs {label} (CPU-time p50)"] = by[label]["cpu_p50_us"] / i8["cpu_p50_us"]
            out[f"speedup_vs {label} (wall p50)"] = by[label]["p50_us"] / i8["p50_us"]
    for r in stream:
        if "real_time_factor" in r:
            out[f"real_time_factor_{r['fs']:g}Hz"] = r["real_time_factor"]
    return out


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    # Bad input (a model or checkpoint that does not load, a store of another spec) ends in one
    # line naming it, not a traceback.
    return run_stage("anyppg bench", lambda: run_bench(a),
                     show=lambda _: (Path(a.out) / "results.md").read_text())


def run_bench(a) -> None:
    """Measure into a.out (atomically): latency, streaming, accuracy, Coral check, report."""
    from benchmarks.bench_stream_report import write_report
    from training.data.store import WindowStore
    store = WindowStore(a.data, split="test")
    windows = store.column("ppg")[: a.windows].astype(np.float32)
    t0 = time.time()
    with atomic_dir(Path(a.out), overwrite=a.overwrite) as tmp:
        wf = tmp / "windows.npy"
        np.save(wf, windows)
        lat = [] if a.skip_latency else latency_section(a, tmp, wf)
        stream = [] if a.skip_latency else stream_section(a, tmp, wf)
        acc = [] if a.skip_accuracy else accuracy_section(a)
        wf.unlink()
        results = {"export": str(a.export), "teacher": a.teacher, "store": str(a.data),
                   "windows": int(len(windows)), "cpu": os.cpu_count(),
                   "load_average": os.getloadavg(), "headline": headline(lat, stream),
                   "latency": lat, "stream": stream, "accuracy": acc,
                   "coral": coral_section(Path(a.export)), "seconds": time.time() - t0}
        write_report(results, tmp)


if __name__ == "__main__":
    sys.exit(main())
