"""`anyppg report`: one page that shows what each step from foundation model to watch cost.

    anyppg report --run runs/demo [--no-eval]

Reads a pipeline run folder (benchmarks.report_data lists every key it reads from each stage),
scores the float and int8 students on the same held-out windows (benchmarks.report_eval),
draws the figures (benchmarks.report_figures) and writes

    report.md      the side-by-side table, the stage table, the probe table, figure links
    report.html    the same, with every figure embedded (one self-contained file)
    figures/*.png  training curves, HR error against coverage, latency, a preprocessed window

Columns: the teacher (PyTorch float), the float student (PyTorch), the int8 student (LiteRT),
the C inference on the host and the simulated Cortex-M4. A cell is a measured value, "n/a"
(the row has no meaning for that column), "not run" (its stage did not run; the stage table
says why) or "not measured" (its stage ran but did not report that figure); never blank.
"""
from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path
from typing import Any

from anyppg.runs import atomic_write_json, atomic_write_text

from . import report_data as rd
from . import report_eval, report_figures

COLUMNS = ("teacher (PyTorch float)", "float student (PyTorch)", "int8 student (LiteRT)",
           "C inference (host)", "Cortex-M4 (QEMU mps2-an386)")
COLUMN_STAGES = ("pretrain", "distill", "export", "firmware", "mcu")
NA, NOT_RUN, NOT_MEASURED = "n/a", "not run", "not measured"
PROBE_SUFFIX = {"hr": "hr", "rr": "rr", "sbp": "sbp", "dbp": "dbp", "af_logit": "af", "quality_logit": "quality"}
LABELS = {"hr": "HR", "rr": "RR", "sbp": "SBP", "dbp": "DBP", "af_logit": "AF", "quality_logit": "signal quality"}


def _fmt(v: float | None, digits: int = 2) -> str:
    return NOT_MEASURED if v is None else f"{v:.{digits}f}"


def _num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.1f} k"
    return f"{v:,.0f}"


def _kb(b: float | None) -> str:
    return NOT_MEASURED if b is None else f"{b / 1024:.1f} KB"


def _score(r: dict | None, digits: int) -> str:
    if not r or r.get("value") is None:
        return NOT_MEASURED
    ci = r.get("ci")
    s = f"{r['value']:.{digits}f}"
    return s + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


class Facts:
    """Everything the report shows, gathered once from the run folder."""

    def __init__(self, run: Path, evaluate: bool = True):
        self.run = run
        self.stages = rd.stage_states(run)
        state = rd.read_json(run / "pipeline.json") or {}
        self.state = state
        tc = (state.get("config") or {}).get("teacher_checkpoint")
        self.teacher_path = Path(tc) if tc else run / "pretrain"
        self.probe = rd.teacher_probe(run)
        self.sizes = rd.model_sizes(run, self.teacher_path)
        self.export = rd.export_facts(run) if self.done("export") else {}
        self.firmware = rd.firmware_facts(run) if self.done("firmware") else {}
        self.mcu = rd.mcu_facts(run) if self.done("mcu") else {}
        self.bench = rd.bench_facts(run) if self.done("bench") else {}
        self.eval: dict[str, Any] = {}
        self.eval_error = None
        if evaluate and self.done("prepare") and (self.done("distill") or self.done("export")):
            try:
                self.eval = report_eval.evaluate(run / "store", run / "distill" if self.done("distill") else None,
                                                 run / "export" if self.done("export") else None)
            except Exception as e:  # noqa: BLE001 — the rest of the report still renders
                self.eval_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]

    def done(self, stage: str) -> bool:
        return self.stages.get(stage, {}).get("status") in ("done", "replaced")

    def column_missing(self, k: int) -> str | None:
        """NOT_RUN when the column's stage has not run (the teacher column also accepts a checkpoint)."""
        return None if self.done(COLUMN_STAGES[k]) else NOT_RUN


# ----------------------------------------------------------------------------------- table rows
def _accuracy_rows(f: Facts) -> list[tuple[str, list[str]]]:
    rows = []
    tasks = f.eval.get("tasks", {})
    probe_tasks = f.probe.get("tasks", {})
    heads = list(tasks) or [h for h in PROBE_SUFFIX if any(t.endswith("-" + PROBE_SUFFIX[h]) for t in probe_tasks)]
    for head in heads:
        t = tasks.get(head, {})
        metric = t.get("metric") or ("auroc" if head.endswith("_logit") else "mae")
        digits = 3 if metric == "auroc" else 2
        unit = "" if metric == "auroc" else f", {t.get('unit') or ''}".rstrip(", ")
        name = f"{LABELS.get(head, head)} {metric.upper()}{unit}"
        probe = next((v for k, v in probe_tasks.items() if k.endswith("-" + PROBE_SUFFIX.get(head, head))), None)
        cells = [(_score(probe, digits) + " (linear probe)") if probe and probe.get("value") is not None
                 else (f.column_missing(0) or NOT_MEASURED)]
        cells.append(_score(t.get("float"), digits) if f.done("distill") else NOT_RUN)
        int8 = _score(t.get("int8"), digits) if f.done("export") else NOT_RUN
        if t.get("int8_network") and f.done("export"):
            int8 += f" (refined on the window's spectrum; network alone {_score(t['int8_network'], digits)})"
        cells.append(int8)
        for k, facts in ((3, f.firmware), (4, f.mcu)):
            miss = f.column_missing(k)
            flag = facts.get("bit_exact")
            flag = flag[0] if isinstance(flag, tuple) else flag
            cells.append(miss or ("as int8 (bit-exact with TFLM)" if flag is True else
                                  "differs from TFLM" if flag is False else NOT_MEASURED))
        if any(c not in (NOT_MEASURED, NOT_RUN) for c in cells[:3]):   # some model was scored on it
            rows.append((name, cells))
    return rows


def _bench_latency(f: Facts, label_pattern: str) -> str:
    if not f.bench:
        return NOT_RUN
    row = rd.bench_latency(f.bench, label_pattern)
    if row is None:
        return NOT_MEASURED
    if "error" in row:
        return f"{NOT_MEASURED} ({row['error']})"[:80]
    def t(us: float) -> str:
        return f"{us:.0f} us" if us < 1000 else f"{us / 1e3:.1f} ms"
    cpu = f", CPU time {t(float(row['cpu_p50_us']))}" if isinstance(row.get("cpu_p50_us"), (int, float)) else ""
    return f"{t(float(row['p50_us']))} (p50 wall{cpu}, 1 thread)"


def _cost_rows(f: Facts) -> list[tuple[str, list[str]]]:
    te, st = f.sizes.get("teacher", {}), f.sizes.get("student", {})
    ex, fw, mc = f.export, f.firmware, f.mcu
    same = "as int8"

    def sz(d, key, fmt=_num):
        return fmt(d[key]) if d.get(key) is not None else NOT_MEASURED

    def miss(k, value):
        return f.column_missing(k) or value

    rows = [
        ("model", [miss(0, te.get("model", NOT_MEASURED)), miss(1, st.get("model", NOT_MEASURED)),
                   miss(2, "model_int8.tflite"), miss(3, "C bundle"), miss(4, "QEMU mps2-an386, -icount")]),
        ("parameters", [miss(0, sz(te, "params")), miss(1, sz(st, "params")), miss(2, sz(st, "params")),
                        miss(3, same), miss(4, same)]),
        ("MACs per 10-s window", [miss(0, sz(te, "macs")), miss(1, sz(st, "macs")), miss(2, sz(st, "macs")),
                                 miss(3, same), miss(4, same)]),
        ("weights / file size", [miss(0, _kb(4 * te["params"]) + " fp32" if te.get("params") else NOT_MEASURED),
                                 miss(1, _kb(st.get("file_bytes")) + " fp32" if st.get("file_bytes") else NOT_MEASURED),
                                 miss(2, _kb(ex.get("file_bytes")) + " .tflite" if ex.get("file_bytes") else NOT_MEASURED),
                                 miss(3, _kb(fw["weights"]) + " weights" if fw.get("weights") else NOT_MEASURED),
                                 miss(4, NA)]),
        ("flash", [NA, NA, NA, miss(3, _kb(fw["flash"]) + " (M4 objects)" if fw.get("flash") else NOT_MEASURED),
                   miss(4, _kb(mc["flash_bytes"]) if mc.get("flash_bytes") else NOT_MEASURED)]),
        ("RAM", [NA, NA, NA, miss(3, _kb(fw["arena"]) + " arena" if fw.get("arena") else NOT_MEASURED),
                 miss(4, _kb(mc["ram_bytes"]) + " (static + stack)" if mc.get("ram_bytes") else NOT_MEASURED)]),
        ("latency per window", [_bench_latency(f, r"run's teacher"), _bench_latency(f, r"float student"),
                                _bench_latency(f, r"xnnpack, 1 thread"),
                                miss(3, NOT_MEASURED),
                                miss(4, _m4_latency(mc))]),
        ("instructions per window", [NA, NA, NA, NA,
                                     miss(4, _instr(mc))]),
    ]
    return rows


def _m4_latency(mc: dict) -> str:
    if mc.get("latency_ms") is None:
        return NOT_MEASURED
    a = mc.get("assumptions") or {}
    clock = f" at {a['clock_hz'] / 1e6:g} MHz, CPI {a.get('cycles_per_instruction')}" if a.get("clock_hz") else ""
    return f"{mc['latency_ms']:.3g} ms (estimate{clock})"


def _instr(mc: dict) -> str:
    parts = []
    for key, label in (("inference_insns", "inference"), ("preprocessing_insns", "preprocessing"),
                       ("hr_refine_insns", "HR refinement")):
        if mc.get(key):
            parts.append(f"{_num(mc[key])} {label}")
    return " + ".join(parts) or NOT_MEASURED


def table(f: Facts) -> tuple[list[str], list[tuple[str, list[str]]]]:
    return ["", *COLUMNS], _cost_rows(f)[:1] + _accuracy_rows(f) + _cost_rows(f)[1:]


def stage_rows(f: Facts) -> list[list[str]]:
    out = []
    for name, s in f.stages.items():
        secs = s.get("seconds")
        status = s.get("status") or NOT_RUN
        if status == "done" and s.get("action") == "skipped":
            status = "done (unchanged, skipped this run)"
        out.append([name, status, f"{secs:.0f} s" if isinstance(secs, (int, float)) else "",
                    s.get("reason") or ""])
    return out


def _headline(f: Facts) -> str:
    hl = f.bench.get("headline") or {}
    parts = [f"{k.replace('_', ' ')}: {v:,.1f}x" if "speedup" in k else f"{k.replace('_', ' ')}: {v:,.0f}"
             for k, v in hl.items() if isinstance(v, (int, float))]
    la = f.bench.get("load_average")
    return ("Bench headline: " + "; ".join(parts) + "." if parts else "") + \
        (f" Load average while it ran: {', '.join(f'{x:.1f}' for x in la)}." if la else "")


def _timing(f: Facts) -> str:
    secs = [s.get("seconds") for s in f.stages.values() if isinstance(s.get("seconds"), (int, float))]
    last = f.state.get("last_run_seconds")
    return (f"Stage times add up to {sum(secs):.0f} s" if secs else "No stage times recorded") + \
        (f"; the last `anyppg pipeline` run took {last:.0f} s (skipped stages cost nothing)." if last else ".")


def bench_accuracy_rows(f: Facts) -> tuple[list[str], list[list[str]]]:
    """The bench stage's accuracy through the edge runtime, one row per task, columns as it wrote them."""
    rows = f.bench.get("accuracy") or []
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("task", "metric", "windows")]
    out = []
    for r in rows:
        cells = [str(r.get("task")), str(r.get("metric", "")), str(r.get("windows", ""))]
        for k in keys:
            v = r.get(k)
            cells.append(NOT_MEASURED if v is None or (isinstance(v, float) and v != v) else
                         f"{v:.3f}" if isinstance(v, float) else str(v))
        out.append(cells)
    return ["task", "metric", "windows", *keys], out


def probe_rows(f: Facts) -> list[list[str]]:
    rows = []
    for t, r in f.probe.get("tasks", {}).items():
        digits = 3 if r.get("metric") in ("auroc", "macro_f1") else 2
        base = {k: v for k, v in r.get("baselines", {}).items() if v is not None}
        rows.append([t, r.get("metric") or "", _score(r, digits) if r.get("value") is not None else (r.get("status") or NOT_MEASURED),
                     ", ".join(f"{k} {v:.{digits}f}" for k, v in base.items()) or NOT_MEASURED])
    return rows


# ----------------------------------------------------------------------------------- rendering
def md_table(head: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r[0], *r[1]] if isinstance(r, tuple) else r
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def html_table(head: list[str], rows: list, cls: str) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for r in rows:
        cells = [r[0], *r[1]] if isinstance(r, tuple) else r
        tds = "".join(f'<td class="{"nr" if str(c).startswith(NOT_RUN) else ""}">{html.escape(str(c))}</td>' for c in cells)
        body.append(f"<tr>{tds}</tr>")
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure_list(f: Facts, figs: dict[str, Path | None]) -> list[tuple[str, Path | None, str]]:
    """(title, png or None, what is missing) in the report's order."""
    probe_dir = f.run / "probe"
    out = [("Training curves", figs.get("training_curves"), "no metrics.jsonl (pretrain/distill/qat not run)")]
    plots = [(t, r.get("plot")) for t, r in f.probe.get("tasks", {}).items() if r.get("plot")]
    for t, p in plots[:4]:
        out.append((f"Probe: {t} (Bland-Altman or ROC, probe stage)", probe_dir / p, "probe plot missing"))
    if not plots:
        out.append(("Bland-Altman and ROC (probe stage)", None, "probe not run"))
    bench_png = f.bench.get("png")
    out.append(("Latency distribution (bench stage)",
                figs.get("latency") or (bench_png if bench_png is not None and bench_png.is_file() else None),
                "bench not run" if not f.done("bench") else "bench wrote no latency samples or plot"))
    out.append(("HR error against coverage", figs.get("coverage"), f.eval_error or "no student HR predictions"))
    out.append(("A preprocessed window with its quality flags", figs.get("window"), "no store"))
    return out


def render(f: Facts, figs: dict[str, Path | None]) -> tuple[str, str]:
    head, rows = table(f)
    title = f"AnyPPG-Edge report: {f.run.name} (config {f.state.get('config_name', '?')})"
    ev = f.eval
    note = (f"Students scored on the {ev.get('split')} split of the run's store: {ev.get('n_windows')} windows, "
            f"{ev.get('n_subjects')} subject(s); 95% CI by bootstrap over subjects ({ev.get('rounds')} rounds). "
            "The teacher has no heads: its row is a linear probe on its frozen embedding (probe stage, "
            "grouped 5-fold CV, its own task windows). C and Cortex-M4 inference are scored by bit-exactness "
            "against TFLite Micro's outputs on the bundle's golden windows (the reference the int8 file is "
            "checked with); the firmware stage generates and sizes the C but does not run it on the host "
            "(tests/firmware_bridge prove the host build bit-exact), so its accuracy reads 'not measured' here.") if ev else \
        f"Students not scored: {f.eval_error or 'distill/export not run'}."
    if f.mcu.get("u55_time_us") is not None:
        note += (f" Ethos-U55-128 (Vela, same .tflite): {f.mcu['u55_time_us']:.0f} us per window at 500 MHz, "
                 f"{f.mcu.get('u55_cpu_ops')} ops left on the CPU.")
    if f.mcu.get("speedup_vs_tflm"):
        note += f" Generated C vs TFLite Micro + CMSIS-NN on the M4: {f.mcu['speedup_vs_tflm']}x fewer instructions."
    figl = figure_list(f, figs)
    md = [f"# {title}", "", "## From foundation model to watch", "", md_table(head, rows), "", note, "",
          "## Stages", "", md_table(["stage", "status", "time", "reason / note"], stage_rows(f)), "",
          _timing(f), ""]
    if f.probe.get("tasks"):
        md += ["## Teacher probes", "", md_table(["task", "metric", f"teacher ({f.probe.get('encoder')})",
                                                  "baselines"], probe_rows(f)), ""]
    bh, br = bench_accuracy_rows(f)
    if br:
        md += ["## Accuracy through the edge runtime (bench stage)", "", md_table(bh, br), "",
               _headline(f), ""]
    md += ["## Figures", ""]
    for t, p, why in figl:
        md += [f"### {t}", "", f"![{t}]({p.relative_to(f.run)})" if p and p.is_file() else f"_{NOT_RUN}: {why}_", ""]
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
         f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
         "<h2>From foundation model to watch</h2>", html_table(head, rows, "main"), f"<p>{html.escape(note)}</p>",
         "<h2>Stages</h2>", html_table(["stage", "status", "time", "reason / note"], stage_rows(f), "stages"),
         f"<p>{html.escape(_timing(f))}</p>"]
    if f.probe.get("tasks"):
        h += ["<h2>Teacher probes</h2>", html_table(["task", "metric", "teacher", "baselines"], probe_rows(f), "probe")]
    if br:
        h += ["<h2>Accuracy through the edge runtime (bench stage)</h2>", html_table(bh, br, "bench"),
              f"<p>{html.escape(_headline(f))}</p>"]
    h.append("<h2>Figures</h2><div class='figs'>")
    for t, p, why in figl:
        if p and p.is_file():
            b64 = base64.b64encode(p.read_bytes()).decode()
            h.append(f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{html.escape(t)}</figcaption></figure>")
        else:
            h.append(f"<figure class='missing'><figcaption>{html.escape(t)}: {NOT_RUN} ({html.escape(why)})"
                     "</figcaption></figure>")
    h.append("</div></body></html>")
    return "\n".join(md) + "\n", "\n".join(h) + "\n"


CSS = """body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #999;padding:4px 8px;font-size:13px}
th{background:#1f4e79;color:#fff}table.main td:first-child{font-weight:bold;background:#eef3f8}
td.nr{color:#a33;font-style:italic}.figs{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #ccc;padding:6px}figure img{max-width:640px;display:block}
figure.missing{padding:20px;color:#a33}"""


def write_report(run: Path, evaluate: bool = True) -> Path:
    f = Facts(run, evaluate=evaluate)
    figs = report_figures.all_figures(run, f.eval, f.bench)
    md, page = render(f, figs)
    atomic_write_text(run / "report.md", md)
    atomic_write_text(run / "report.html", page)
    atomic_write_json(run / "figures" / "report_facts.json",
                      {"stages": f.stages, "eval": f.eval, "eval_error": f.eval_error, "sizes": f.sizes,
                       "export": f.export, "firmware": f.firmware, "mcu": {k: v for k, v in f.mcu.items() if k != "raw"},
                       "table": [[r[0], *r[1]] for r in table(f)[1]]})
    return run / "report.html"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg report", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="pipeline run folder, e.g. runs/demo")
    p.add_argument("--no-eval", action="store_true", help="do not score the students (faster)")
    args = p.parse_args(argv)
    run = Path(args.run)
    if not run.is_dir():
        print(f"anyppg report: error: {run}: no such run folder", file=sys.stderr)
        return 2
    out = write_report(run, evaluate=not args.no_eval)
    print(f"report: {out.resolve()} (and {(run / 'report.md').resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
