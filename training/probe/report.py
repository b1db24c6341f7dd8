"""The probe's reports: probe.md (metric and skill tables, notes), per-task plots and the
pooled out-of-fold predictions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_path

from .baselines import DIRECT, DISPLAY, IMPUTED
from .tasks import Task


def finite(o):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (a metric is a number or absent)."""
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return finite(o.tolist())
    return o


def _fmt(v, metric):
    if v is None:
        return "-"
    return f"{v:.3f}" if metric in ("auroc", "macro_f1", "f1") else f"{v:.2f}"


def _cell(res: dict | None, metric: str) -> str:
    if not res:
        return ""
    st = res.get("status", "")
    if st != "ok":
        return st.split(":")[0]
    s = _fmt(res.get("value"), metric)
    if res.get("ci"):
        s += f" [{_fmt(res['ci'][0], metric)}, {_fmt(res['ci'][1], metric)}]"
    cov = res.get("coverage", 1)
    if cov < 1:
        s += f" (cov. {'>99.9%' if cov >= 0.999 else f'{cov:.1%}'})"
    return s


def _skill_cell(res: dict | None) -> str:
    if not res or res.get("status") != "ok" or res.get("skill") is None:
        return ""
    s = f"{res['skill']:+.2f}"
    if res.get("skill_ci"):
        s += f" [{res['skill_ci'][0]:+.2f}, {res['skill_ci'][1]:+.2f}]"
    return s


def _columns(report: dict) -> tuple[list[str], list[str], set[str]]:
    """(encoder names, table columns, baselines present); subject-mean and prior share one
    column, 'trivial'."""
    tasks = report["tasks"]
    enc_names = [e["name"] for e in report["encoders"]]
    base_order = ["subject-mean", "prior", "features",
                  *[b + s for b in DIRECT["hr"] + DIRECT["rr"] for s in ("", IMPUTED)]]
    present = {b for t in tasks.values() for b in t.get("baselines", {})}
    base_names = [b for b in base_order if b in present]
    cols = enc_names + (["trivial"] if {"subject-mean", "prior"} & present else []) + \
        [b for b in base_names if b not in ("subject-mean", "prior")]
    return enc_names, cols, present


def _get(t: dict, c: str) -> dict | None:
    if c in t.get("encoders", {}):
        return t["encoders"][c]
    if c == "trivial":
        return t.get("baselines", {}).get("subject-mean") or t.get("baselines", {}).get("prior")
    return t.get("baselines", {}).get(c)


def _tables(report: dict, enc_names: list[str], cols: list[str]) -> list[str]:
    tasks = report["tasks"]
    head = ["task", "metric", "subjects (windows)"] + [
        (f"`{c}`" if c in enc_names else "subject mean / prior" if c == "trivial" else _name(c))
        for c in cols]
    lines = ["# Probe results", "",
             f"Protocol: frozen embeddings -> StandardScaler -> ridge / logistic regression, "
             f"hyper-parameter by inner grouped CV, {report['protocol']['folds']}-fold grouped CV by subject, "
             f"metrics on pooled out-of-fold predictions, 95% CI by subject bootstrap "
             f"({report['protocol']['bootstrap']} rounds, seed {report['protocol']['seed']}). "
             "MAE: lower is better; AUROC / macro-F1: higher is better. Classical baselines run on "
             "the same preprocessed windows (0.5-8 Hz band-passed, z-scored).", "",
             "## Metric [95% CI]", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, t in tasks.items():
        metric = t.get("metric", "")
        n = f"{t['n_subjects']} ({t['n_windows']})" if "n_subjects" in t else ""
        if t.get("status") != "ok":
            lines.append(f"| {name} | {metric} | {n} | " + t.get("status", "") + " |" + " |" * (len(cols) - 1))
            continue
        lines.append(f"| {name} | {metric} | {n} | " + " | ".join(_cell(_get(t, c), metric) for c in cols) + " |")
    lines += ["", "## Skill [95% CI]", "",
              "Regression: 1 - MAE / MAE(subject mean) on the same windows; binary: (AUROC - 0.5) / 0.5; "
              "multi-class: (macro-F1 - F1 of the majority class) / (1 - that). 0 = no better than "
              "the trivial predictor.", "",
              "| task | " + " | ".join(h for h in head[3:] if h != "subject mean / prior") + " |"]
    skill_cols = [c for c in cols if c != "trivial"]
    lines.append("|" + "---|" * (len(skill_cols) + 1))
    for name, t in tasks.items():
        if t.get("status") != "ok":
            continue
        lines.append(f"| {name} | " + " | ".join(_skill_cell(_get(t, c)) for c in skill_cols) + " |")
    return lines


def _binary_rows(tasks: dict, enc_names: list[str]) -> list[str]:
    rows = []
    for name, t in tasks.items():
        if t.get("status") == "ok" and t["task"]["kind"] == "binary":
            for c in enc_names + ["features"]:
                r = _get(t, c)
                if r and r.get("status") == "ok":
                    f1ci = r.get("f1_ci")
                    rows.append(f"| {name} | {c} | {r['metrics']['f1']:.3f}"
                                + (f" [{f1ci[0]:.3f}, {f1ci[1]:.3f}]" if f1ci else "")
                                + f" | {r['metrics']['auprc']:.3f} | {r['metrics']['prevalence']:.3f} |")
    if not rows:
        return []
    return ["", "## Binary tasks: F1 at p >= 0.5 (class-balanced logistic)", "",
            "| task | method | F1 [95% CI] | AUPRC | prevalence |", "|---|---|---|---|---|"] + rows


def _name(m: str) -> str:
    if m.endswith(IMPUTED):
        return f"{DISPLAY.get(m[:-len(IMPUTED)], m[:-len(IMPUTED)])} (failures imputed)"
    return DISPLAY.get(m, m)


def _paired_rows(tasks: dict) -> list[str]:
    """Paired differences (method - reference on the same windows, subject bootstrap)."""
    rows = []
    for name, t in tasks.items():
        for p in t.get("paired", []):
            rows.append(f"| {name} | {_name(p['method'])} | {_name(p['reference'])} | {p['diff']:+.3f} "
                        f"[{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] | {p['n_windows']} | {p['verdict']} |")
    if not rows:
        return []
    return ["", "## Paired differences [95% CI]", "",
            "Method minus reference on the windows both covered, 95% CI from the same subject "
            "resamples; 'better' / 'worse' only where the CI excludes 0 (MAE: lower is better).", "",
            "| task | method | reference | difference | windows | verdict |", "|---|---|---|---|---|---|"] + rows


def _task_notes(tasks: dict) -> list[str]:
    notes = []
    for name, t in tasks.items():
        if t.get("excluded_seen_subjects"):
            who = ", ".join(f"`{e}` {v['n_subjects']}" for e, v in t.get("excluded_by_encoder", {}).items()
                            if v.get("n_subjects"))
            notes.append(f"- {name}: excluded {t['excluded_seen_subjects']} subjects "
                         f"({t['excluded_seen_windows']} windows) that an encoder was trained on ({who}); "
                         "every method is scored on the remaining subjects.")
        if t.get("status", "ok") != "ok":
            notes.append(f"- {name}: {t['status']}")
        for grp in ("encoders", "baselines"):
            for m, r in t.get(grp, {}).items():
                if r.get("status", "ok") != "ok":
                    notes.append(f"- {name} / {m}: {r['status']}")
                elif r.get("coverage", 1) < 1:
                    notes.append(f"- {name} / {_name(m)}: {r.get('note', '')}")
    return notes


def _general_notes(report: dict, present: set[str]) -> list[str]:
    notes = []
    for e in report["encoders"]:
        if e.get("info", {}).get("seen_caveat"):
            notes.append(f"- CAVEAT `{e['name']}`: {e['info']['seen_caveat']}")
        if not e.get("seen_known", True):
            notes.append(f"- WARNING `{e['name']}`: no run manifest says what it was trained on, so no "
                         "seen subjects could be excluded; where it was trained on one of these datasets "
                         "its results are leaked (re-run with --seen RUN).")
    if any(b.startswith("rr-") for b in present):
        notes.append("- RR baselines: RIIV is weak by design here (the 0.5 Hz high-pass of the model "
                     "input removes most of the respiratory baseline), and a 10 s window holds only "
                     "1-5 breaths, so every spectral RR estimate is coarse (0.1 Hz = 6 /min resolution).")
    if any(t.get("store_source") == "ppg-bp" for t in report["tasks"].values()):
        notes.append("- PPG-BP windows are 2.1 s segments tiled to 10 s; classical methods analyse "
                     "one tile; labels are one value per subject (3 windows each).")
    if any(b.startswith(("hr-", "rr-")) for b in present):
        notes.append("- Direct estimators are scored twice: where they produced a value (coverage shown; "
                     "skill against the subject-mean MAE on those same windows), and on every window "
                     "with their failures imputed by the training mean ('failures imputed'), which is "
                     "the comparison on the same windows as the encoders.")
    return notes


def render_markdown(report: dict) -> str:
    """probe.md: the metric and skill tables, binary-task F1, notes and the encoders."""
    enc_names, cols, present = _columns(report)
    lines = _tables(report, enc_names, cols) + _binary_rows(report["tasks"], enc_names)
    lines += _paired_rows(report["tasks"])
    lines += ["", "## Notes", ""] + _task_notes(report["tasks"]) + _general_notes(report, present)
    lines += ["", "## Encoders", ""] + [f"- `{e['name']}`: {json.dumps(e['info'], default=str)}"
                                        for e in report["encoders"]]
    return "\n".join(lines) + "\n"


def plot_task(task: Task, arrays: dict, outdir: Path) -> str | None:
    from . import plots
    if not arrays or not task.plot:
        return None
    y, preds, kinds = arrays["y"], arrays["preds"], arrays["kinds"]
    show = {m: p for m, p in preds.items() if kinds[m] == "encoder"}
    order = ["features", *DIRECT["hr"], "rr-fusion", "rr-rifv", "prior"]
    for m in order:
        if m in preds and len(show) < plots.MAX_PANELS:
            show[DISPLAY.get(m, m) if m != "prior" else "prior"] = preds[m]
    path = outdir / f"{task.name}.png"
    title = f"{task.name} ({task.label}, {len(np.unique(arrays['subject']))} subjects, {len(y)} windows)"
    if task.plot in ("bland-altman", "scatter"):
        plots.plot_regression(title, task.unit, y, show, path, style=task.plot)
    elif task.plot == "roc":
        plots.plot_roc(title, y, show, path)
    elif task.plot == "confusion":
        classes = list(task.classes) or [str(i) for i in range(int(max(y)) + 1)]
        plots.plot_confusion(title, y, {m: p for m, p in show.items() if m != "prior"}, classes, path)
    return path.name


def save_predictions(path: Path, arrays: dict) -> None:
    if not arrays:
        return
    data = {"y": arrays["y"], "subject": np.asarray(arrays["subject"]).astype(str)}
    for m, p in arrays["preds"].items():
        data[f"pred:{m}"] = p
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **data)
