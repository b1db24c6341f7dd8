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
    firmware        manifest.json metrics; firmware.json / bundle.json if present (any of
                    host_bit_exact / bit_exact / golden.*, flash / text / data / bss, arena)
    mcu             mcu.json: instructions (inference, preprocessing, total), flash, ram,
                    latency (ms at an assumed clock), bit_exact, board
    bench           results.json: latency per engine (p50/p99 and samples if present), accuracy

Firmware, mcu and bench formats were not settled when this was written: `find_number` and
`find_flag` look keys up by name anywhere in the JSON, so a renamed nesting still reads.
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
    fw = run / "firmware"
    blobs = [read_json(p) for p in sorted(fw.glob("*.json"))] if fw.is_dir() else []
    blob = {f"f{i}": b for i, b in enumerate(blobs) if b is not None}
    if not blob:
        return {}
    exact = find_flag(blob, r"bit.?exact|golden.*(match|ok|pass)") or find_flag(blob, r"match")
    return {"bit_exact": exact[0] if exact else None, "bit_exact_key": exact[1] if exact else None,
            "flash": find_number(blob, r"flash|text"), "ram": find_number(blob, r"ram|arena|bss"),
            "weights": find_number(blob, r"weight")}


def mcu_facts(run: Path) -> dict[str, Any]:
    m = read_json(run / "mcu" / "mcu.json")
    if m is None:
        return {}
    return {"instructions": find_number(m, r"instr", r"infer|invoke|model", exclude=r"dsp|simd|tflm|m7|m55|an500|an547")
            or find_number(m, r"instr", exclude=r"prep"),
            "prep_instructions": find_number(m, r"instr", r"prep"),
            "total_instructions": find_number(m, r"instr", r"total"),
            "flash": find_number(m, r"flash", exclude=r"m7|m55|an500|an547|vela|u55"),
            "ram": find_number(m, r"ram", exclude=r"m7|m55|an500|an547|vela|u55"),
            "latency_ms": find_number(m, r"latency|_ms|ms_", exclude=r"m7|m55|vela|u55"),
            "bit_exact": find_flag(m, r"bit.?exact|match"), "raw": m}


def bench_facts(run: Path) -> dict[str, Any]:
    r = read_json(run / "bench" / "results.json")
    if r is None:
        return {}
    return {"raw": r}
