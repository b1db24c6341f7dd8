"""results.json, results.md and plots of `anyppg bench` (bench_runtime)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _f(v, nd=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# anyppg bench: {r['export']}", "",
             f"{r['windows']} test windows of {r['store']}; {r['cpu']} CPUs, load average "
             f"{r['load_average'][0]:.1f} at the end (absolute times depend on the machine and its "
             "load: read the ratios, all from this one run).", "",
             "## Latency per window, batch 1", "",
             "| model | CPU p50 us | wall p50 us | wall p99 us | windows/s (wall) | peak RSS MB | CPU p50 vs int8 XNNPACK 1 thread | wall p50 of invoke() alone | CPU p50 of invoke() alone |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = next((x["cpu_p50_us"] for x in r["latency"] if "cpu_p50_us" in x), None)
    for x in r["latency"]:
        if "p50_us" not in x:
            lines.append(f"| {x['model']} | {x.get('error', '-')} | | | | | | | |")
            continue
        lines.append(f"| {x['model']} | {_f(x['cpu_p50_us'])} | {_f(x['p50_us'])} | {_f(x['p99_us'])} | "
                     f"{_f(x['throughput_per_s'], 0)} | {_f(x['peak_rss_mb'], 0)} | "
                     f"{_f(x['cpu_p50_us'] / base, 1)}x | {_f(x.get('p50_invoke_only_us'))} | "
                     f"{_f(x.get('cpu_p50_invoke_only_us'))} |")
    lines += ["", "## Streaming runtime, 1-s chunks, preprocessing and inference included", "",
              "| sensor rate | signal s | windows | real-time factor (CPU time) | CPU us per window | RTF wall clock | RTF without inference (CPU) | CPU us per window without inference |",
              "|---|---|---|---|---|---|---|---|"]
    for s in r["stream"]:
        if "error" in s:
            lines.append(f"| ? | {s['error']} | | | | | | |")
            continue
        lines.append(f"| {s['fs']:g} Hz | {s['seconds']:.0f} | {s['windows']} | {_f(s['real_time_factor'], 0)}x | "
                     f"{_f(s['per_window_cpu_us'], 0)} | {_f(s['real_time_factor_wall'], 0)}x | "
                     f"{_f(s['real_time_factor_without_inference'], 0)}x | "
                     f"{_f(s.get('per_window_cpu_us_without_inference'), 0)} |")
    if r["accuracy"]:
        cols = ["int8_runtime", "int8_runtime_refined", "float_student", "teacher_ridge",
                "int8_runtime_usable", "int8_runtime_refined_usable", "usable_coverage"]
        lines += ["", "## Accuracy through the runtime", "",
                  "| task | metric | windows | " + " | ".join(cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]
        for a in r["accuracy"]:
            lines.append(f"| {a['task']} | {a['metric']} | {a['windows']} | "
                         + " | ".join(_f(a.get(c), 3) for c in cols) + " |")
    c = r.get("coral") or {}
    lines += ["", "## Coral Edge TPU", "", f"- offline rule check of the export: {json.dumps(c.get('offline_rules'))[:300]}",
              f"- with the Edge TPU compiler: `{c.get('compile_command')}`"]
    lines += ["", "## Headline", ""] + [f"- {k}: {_f(v, 1)}" for k, v in r["headline"].items()]
    return "\n".join(lines) + "\n"


def plots(r: dict[str, Any], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lat = [x for x in r["latency"] if "samples_us" in x]
    if lat:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.boxplot([x["samples_us"] for x in lat], vert=False, showfliers=False)
        ax.set_yticks(range(1, len(lat) + 1), [x["model"] for x in lat], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("latency per window, us (log)")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=120)
        plt.close(fig)
    acc = next((a for a in r["accuracy"] if a["metric"].startswith("MAE")), None)
    by = {x["model"]: x for x in lat}
    pts = [("int8 XNNPACK", by.get("int8 LiteRT XNNPACK, 1 thread"), acc and acc.get("int8_runtime")),
           ("float student", by.get("float student, PyTorch"), acc and acc.get("float_student")),
           ("teacher + ridge", by.get("run's teacher, PyTorch float"), acc and acc.get("teacher_ridge"))]
    pts = [(n, x["p50_us"], m) for n, x, m in pts if x and m is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(5, 4))
        for n, c, m in pts:
            ax.scatter(c, m)
            ax.annotate(n, (c, m), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency per window, us (log)")
        ax.set_ylabel(f"{acc['task']} {acc['metric']}")
        fig.tight_layout()
        fig.savefig(out / "accuracy_cost.png", dpi=120)
        plt.close(fig)


def write_report(r: dict[str, Any], out: Path) -> None:
    slim = {**r, "latency": [{k: v for k, v in x.items() if k != "samples_us"} for x in r["latency"]]}
    (out / "results.json").write_text(json.dumps(slim, indent=1))
    (out / "results.md").write_text(markdown(r))
    plots(r, out)
