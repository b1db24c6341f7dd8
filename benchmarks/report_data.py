"""What the report reads from a pipeline run: every stage's output, read defensively.

A stage that has not run, or whose output lacks a key, yields None for that fact; the report
prints "not run" / "not measured" for it, never a blank or a guess. Keys read (the lead's
checklist of the stages' output formats):

    pipeline.json   stages.<name>.{status, reason, seconds, action}, last_run_seconds, config_name
    pretrain        manifest.json config.ppg_model; metrics.test_retrieval.{top1, chance};
                    metrics.jsonl {step, loss}; checkpoints/latest.pt (size)
    probe           probe.json tasks.<task>.{metric, status, encoders.<name>.{value, ci}, plot};
                    encoder = the teacher (the first of probe.json encoders); <task>.png
    distill         checkpoints/latest.pt (the float student: params, MACs); metrics.jsonl {step, loss}
    qat             metrics.jsonl {step, loss}
    export          model_int8.tflite (size), model_int8.json (sidecar: outputs by name),
                    parity.json engines.*.vs_float.embedding_cosine_mean
    firmware        manifest.json metrics.inference.{weight_bytes, arena_bytes, macs},
                    metrics.sizes.parts.{preprocessing, inference, hr_refine}.{text, data, bss},
                    metrics.golden_windows; any *bit_exact* flag if the stage reports one
    mcu             mcu.json runs[board == mps2-an386, variant == dsp (else the first M4 run)].
                    {inference_insns, preprocessing_insns, hr_refine_insns, total_insns, latency_ms,
                    duty_cycle_pct, flash_bytes, ram_bytes, bit_exact, preprocessing_exact}; assumptions
                    {clock_hz, cycles_per_instruction}; speedup_vs_tflm_cmsis_nn;
                    ethos_u55.{time_us, cpu_ops}
    bench           results.json latency[].{model (label), p50_us, p99_us, samples_us, peak_rss_mb, error};
                    accuracy[].{task, metric, windows, int8_runtime, float_student, teacher_ridge, ...};
                    headline (speed-up ratios, real-time factors); load_average; latency.png

`find_flag` looks a flag up by name anywhere in a JSON, so a renamed nesting still reads.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

STAGE_FOLDERS = {"prepare": "store", "pretrain": "pretrain", "probe": "probe", "distill": "distill",
                 "qat": "qat", "export": "export", "firmware": "firmware", "mcu": "mcu", "bench": "bench"}


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or malformed (the report says 'not run')."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    out = []
    try:
        for line in Path(path).read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict):
                out.append(r)
    except OSError:
        pass
    return out


def walk(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(key path, value) of every leaf of nested dicts/lists."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, path + (str(k),))
    elif isinstance(obj, list) and len(obj) <= 64 and not all(isinstance(v, (int, float)) for v in obj):
        for i, v in enumerate(obj):
            yield from walk(v, path + (str(i),))
    else:
        yield path, obj


def find_number(obj: Any, *patterns: str, exclude: str | None = None) -> tuple[float, str] | None:
    """The first number whose key path (joined by '.') matches every regex in `patterns`."""
    if obj is None:
        return None
    for p, v in walk(obj):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        key = ".".join(p).lower()
        if all(re.search(pt, key) for pt in patterns) and not (exclude and re.search(exclude, key)):
            return float(v), ".".join(p)
    return None


def find_flag(obj: Any, *patterns: str) -> tuple[bool, str] | None:
    if obj is None:
        return None
    for p, v in walk(obj):
        key = ".".join(p).lower()
        if isinstance(v, bool) and all(re.search(pt, key) for pt in patterns):
            return v, ".".join(p)
    return None


def stage_states(run: Path) -> dict[str, dict]:
    """{stage: {'status', 'reason', 'seconds', 'action'}} from pipeline.json, or inferred from the
    folders when the run was assembled by hand (a folder with a manifest counts as done)."""
    state = read_json(run / "pipeline.json") or {}
    out = {}
    for name, folder in STAGE_FOLDERS.items():
        rec = (state.get("stages") or {}).get(name)
        if rec:
            out[name] = {k: rec.get(k) for k in ("status", "reason", "seconds", "action")}
        elif (run / folder).is_dir():
            out[name] = {"status": "done", "reason": "no pipeline.json: folder present", "seconds": None,
                         "action": None}
        else:
            out[name] = {"status": "not run", "reason": "no pipeline.json and no folder", "seconds": None,
                         "action": None}
    return out


def teacher_probe(run: Path) -> dict[str, Any]:
    """{'encoder', 'tasks': {task: {'metric', 'value', 'ci', 'plot'}}} for the teacher's probes."""
    rep = read_json(run / "probe" / "probe.json")
    if not isinstance(rep, dict):
        return {}
    encs = [e.get("name") for e in rep.get("encoders", []) if isinstance(e, dict)]
    teacher = encs[0] if encs else None
    tasks = {}
    for tname, t in (rep.get("tasks") or {}).items():
        if not isinstance(t, dict):
            continue
        r = (t.get("encoders") or {}).get(teacher) or {}
        tasks[tname] = {"metric": t.get("metric"), "value": r.get("value"), "ci": r.get("ci"),
                        "status": t.get("status"), "plot": t.get("plot"),
                        "baselines": {k: v.get("value") for k, v in (t.get("baselines") or {}).items()
                                      if isinstance(v, dict)}}
    return {"encoder": teacher, "tasks": tasks}


def _file_size(p: Path) -> int | None:
    return p.stat().st_size if p.is_file() else None


def model_sizes(run: Path, teacher_path: Path | None) -> dict[str, dict]:
    """Parameters and MACs per window of the teacher and the float student (from their checkpoints)."""
    out: dict[str, dict] = {}
    try:
        import torch

        from training.checkpoint import build_student, checkpoint_path, load_checkpoint, read_torch
        from training.models import build_model
        from training.models.flops import count_macs, count_params
    except ImportError:
        return out
    if teacher_path is not None and teacher_path.exists():
        try:
            ckp = checkpoint_path(teacher_path)
            ck = read_torch(ckp)
            name = (ck.get("model_config") or {}).get("ppg_model") or ck.get("model_name") \
                if isinstance(ck, dict) else None
            man = read_json(teacher_path / "manifest.json") if teacher_path.is_dir() else None
            name = name or ((man or {}).get("config") or {}).get("ppg_model") or "anyppg-net1d"
            with torch.device("meta"):
                e = build_model(name)
            out["teacher"] = {"model": name, "params": count_params(e.model),
                              "macs": count_macs(e.model, (1, e.input_len)), "file_bytes": _file_size(ckp)}
        except Exception as e:  # noqa: BLE001 — a report never dies on one unreadable input
            out["teacher"] = {"error": f"{type(e).__name__}: {e}"[:200]}
    if (run / "distill").is_dir():
        try:
            ck, path = load_checkpoint(run / "distill")
            st = build_student(ck, path)
            out["student"] = {"model": st.name, "params": count_params(st.model),
                              "macs": count_macs(st.model, (1, 1, st.spec.ppg_len)),
                              "file_bytes": 4 * count_params(st.model)}
        except Exception as e:  # noqa: BLE001
            out["student"] = {"error": f"{type(e).__name__}: {e}"[:200]}
    return out


def export_facts(run: Path) -> dict[str, Any]:
    ex = run / "export"
    side = read_json(ex / "model_int8.json") or {}
    par = read_json(ex / "parity.json") or {}
    cos = find_number(par, r"model_int8/litert_xnnpack", r"vs_float\.embedding_cosine_mean")
    hr_f = find_number(par, r"torch_float", r"vs_float\.hr_mae_vs_label")
    return {"file_bytes": _file_size(ex / "model_int8.tflite"),
            "outputs": [o.get("name") for o in side.get("outputs", []) if isinstance(o, dict)],
            "int8_cosine": cos[0] if cos else None, "parity_hr_float": hr_f[0] if hr_f else None}


def firmware_facts(run: Path) -> dict[str, Any]:
    """The C bundle: weights, arena, MACs of the generated inference; flash and static RAM of its
    preprocessing + inference (+ HR refinement) objects for the Cortex-M4F (arm-none-eabi-size),
    when measured."""
    man = read_json(run / "firmware" / "manifest.json") or {}
    m = man.get("metrics") or {}
    inf = m.get("inference") or {}
    parts = ((m.get("sizes") or {}).get("parts") or {})
    used = [parts[k] for k in ("preprocessing", "inference", "hr_refine") if isinstance(parts.get(k), dict)]
    flash = sum(p.get("text", 0) + p.get("data", 0) for p in used) if used else None
    ram = sum(p.get("data", 0) + p.get("bss", 0) for p in used) if used else None
    exact = find_flag(man, r"bit.?exact")
    return {"weights": inf.get("weight_bytes"), "arena": inf.get("arena_bytes"), "macs": inf.get("macs"),
            "flash": flash, "static_ram": ram, "golden_windows": m.get("golden_windows"),
            "bit_exact": exact[0] if exact else None}


def mcu_facts(run: Path) -> dict[str, Any]:
    """The simulated Cortex-M4 (mps2-an386, DSP-extension kernels): instructions per window for
    preprocessing, inference and the HR refinement (worst case), flash, RAM (static + stack high-water), latency at the assumed
    clock and CPI, bit-exactness against the golden outputs; Ethos-U55 time when Vela ran."""
    m = read_json(run / "mcu" / "mcu.json")
    if not isinstance(m, dict):
        return {}
    runs = [r for r in m.get("runs") or [] if isinstance(r, dict) and "error" not in r]
    m4 = next((r for r in runs if r.get("board") == "mps2-an386" and r.get("variant") == "dsp"),
              next((r for r in runs if r.get("board") == "mps2-an386"), None))
    out: dict[str, Any] = {"assumptions": m.get("assumptions"), "speedup_vs_tflm": m.get("speedup_vs_tflm_cmsis_nn"),
                           "errors": [r.get("error") for r in m.get("runs") or [] if isinstance(r, dict) and r.get("error")]}
    if m4:
        out.update({k: m4.get(k) for k in ("inference_insns", "preprocessing_insns", "hr_refine_insns",
                                           "total_insns", "latency_ms",
                                           "duty_cycle_pct", "flash_bytes", "ram_bytes", "bit_exact",
                                           "preprocessing_exact", "variant")})
    u = m.get("ethos_u55")
    if isinstance(u, dict) and "error" not in u:
        out["u55_time_us"] = u.get("time_us")
        out["u55_cpu_ops"] = u.get("cpu_ops")
    return out


def bench_facts(run: Path) -> dict[str, Any]:
    """results.json of `anyppg bench`: latency rows by model label, accuracy rows, headline ratios."""
    r = read_json(run / "bench" / "results.json")
    if not isinstance(r, dict):
        return {}
    lat = {row["model"]: row for row in r.get("latency") or [] if isinstance(row, dict) and row.get("model")}
    acc = [row for row in r.get("accuracy") or [] if isinstance(row, dict) and row.get("task")]
    return {"raw": r, "latency": lat, "accuracy": acc, "headline": r.get("headline") or {},
            "load_average": r.get("load_average"), "png": run / "bench" / "latency.png"}


def bench_latency(bench: dict, label_pattern: str) -> dict | None:
    """The latency row whose model label matches the regex (None when absent or errored)."""
    for label, row in (bench.get("latency") or {}).items():
        if re.search(label_pattern, label, re.I):
            return row if "p50_us" in row else {"error": row.get("error", "no p50_us")}
    return None
