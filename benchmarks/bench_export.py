"""Export benchmark: conversion time, file size and parity of a quantised student.

    python -m benchmarks.bench_export --distill runs/bidmc/distill-student-s-teacher450 \\
        --data stores/bidmc [--qat-steps 300] [--out runs/bench/export-student-s]
    python -m benchmarks.bench_export            # no run given: synthetic store, short
                                                 # from-scratch distill of student-s first

Runs `anyppg qat` (config cpu-small, --qat-steps steps) and `anyppg export` with
check_determinism on (onnx2tf runs twice; the two files must be byte-identical), then prints
and writes (bench_export.json in --out): onnx2tf seconds per conversion and the whole export,
file sizes, op counts, Edge TPU mapping, and the parity summary (int8 vs float embedding
cosine, HR MAE increase, QAT-faithful file vs fake-quant, LiteRT reference == TFLite Micro).
Targets: conversion < 120 s, byte-identical output, embedding cosine >= 0.999, HR MAE
increase <= 0.5 bpm, QAT file tracks fake-quant at least as well as the calibration file
tracks float.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _distill_from_scratch(store: Path, out: Path, model: str, steps: int) -> Path:
    from training import distill
    rc = distill.main(["--config", "cpu-small", "--from-scratch", "--data", str(store), "--out", str(out),
                       "--set", f"student_model={model}", "--set", f"max_steps={steps}", "--quiet"])
    if rc != 0:
        raise SystemExit("bench_export: distillation failed")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--distill", default=None, help="distill run folder (default: train one quickly)")
    p.add_argument("--data", default=None, help="window store (default: a synthetic one)")
    p.add_argument("--model", default="student-s", help="student for the from-scratch fallback")
    p.add_argument("--distill-steps", type=int, default=150)
    p.add_argument("--qat-steps", type=int, default=300)
    p.add_argument("--out", default=None, help="folder for the runs and bench_export.json")
    args = p.parse_args(argv)

    from quantization import export as export_stage
    from quantization import qat as qat_stage
    from anyppg.config import apply_overrides, load_config

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-export-"))
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if args.data:
        store = Path(args.data)
    else:
        from training.prepare import main as prepare_main
        store = out / "store"
        if not (store / "index.json").is_file():
            prepare_main(["--source", "synthetic", "--input", "subjects=24,minutes=4,seed=0", "--out",
                          str(store), "--quiet", "--workers", "1"])
    distill_run = Path(args.distill) if args.distill else _distill_from_scratch(
        store, out / "distill", args.model, args.distill_steps)

    qcfg = load_config(qat_stage.QATConfig(), "qat", "cpu-small", [f"max_steps={args.qat_steps}"])
    t = time.perf_counter()
    qm = qat_stage.train(qcfg, distill_run, store, out / "qat", quiet=True, overwrite=True)
    qat_s = time.perf_counter() - t

    ecfg = load_config(export_stage.ExportConfig(), "export", "default", [])
    ecfg = apply_overrides(ecfg, {"check_determinism": True})
    t = time.perf_counter()
    em = export_stage.run_export(ecfg, out / "qat", store, out / "export", overwrite=True, quiet=True)
    export_s = time.perf_counter() - t
    man = json.loads((out / "export" / "manifest.json").read_text())
    res = {
        "distill_run": str(distill_run), "store": str(store),
        "model": man.get("model_name"),
        "qat_steps": qm["steps"], "qat_seconds": qat_s,
        "qat_fakequant_vs_float_test": qm.get("test"),
        "onnx2tf_seconds": em["timings"]["onnx2tf_s"],
        "export_seconds_incl_second_conversion_and_parity": export_s,
        "byte_identical": (em.get("determinism") or {}).get("byte_identical"),
        "file_bytes": em["file_bytes"],
        "ops": em["ops"],
        "edgetpu": {k: em["edgetpu"][k] for k in ("mapped_ops", "cpu_ops", "all_on_tpu")},
        "parity": em["summary"],
        "targets": {
            "conversion_under_120_s": em["timings"]["onnx2tf_s"] < 120,
            "byte_identical": bool((em.get("determinism") or {}).get("byte_identical")),
            **em["summary"].get("targets_met", {}),
            "qat_file_tracks_fakequant_as_well_as_calib_tracks_float":
                em["summary"].get("qat_file_tracks_fakequant_at_least_as_well_as_calib_tracks_float"),
        },
        "total_seconds": time.perf_counter() - t_all,
    }
    (out / "bench_export.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(json.dumps(res, indent=2, default=float))
    print(f"\nparity table: {out / 'export' / 'parity.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
