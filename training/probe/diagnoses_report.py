"""Reports of `anyppg probe --diagnoses`: the sortable CSV, the Markdown table, the JSON and
the PheWAS plot, all written into the (temporary) output folder.

Rows are dicts made by diagnoses.code_row (one per encoder and code). The headline counts
codes with AUROC above 0.7 and 0.8 as the paper's headline does (point estimates), and says
how many of them survive false-discovery control.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from anyppg.runs import atomic_write_json, atomic_write_text

CSV_COLUMNS = ("encoder", "code", "description", "system", "chapter", "chapter_name", "n_pos", "n_neg",
               "prevalence", "auroc", "auroc_lo", "auroc_hi", "p", "p_method", "q", "significant",
               "p_mwu", "null_mean", "null_sd",
               "auroc_demo", "auroc_demo_lo", "auroc_demo_hi", "auroc_ppg_demo", "auroc_ppg_demo_lo",
               "auroc_ppg_demo_hi", "delta_vs_demo", "delta_lo", "delta_hi", "status")


def headline(rows: list[dict], fdr: float) -> dict:
    """Counts over one encoder's rows: tested, significant, AUROC > 0.7 / > 0.8."""
    ok = [r for r in rows if r.get("auroc") is not None]
    sig = [r for r in ok if r["significant"]]
    a7 = [r for r in ok if r["auroc"] > 0.7]
    a8 = [r for r in ok if r["auroc"] > 0.8]
    h = {"tested": len(rows), "significant": len(sig), "above_0.7": len(a7), "above_0.8": len(a8),
         "above_0.7_significant": sum(r["significant"] for r in a7),
         "above_0.8_significant": sum(r["significant"] for r in a8), "fdr": fdr}
    h["text"] = (f"{h['tested']} codes tested, {h['significant']} significant at q < {fdr:g}; "
                 f"AUROC > 0.7: {h['above_0.7']} ({h['above_0.7_significant']} significant), "
                 f"> 0.8: {h['above_0.8']} ({h['above_0.8_significant']} significant)")
    return h


def _sort_key(r: dict):
    q = r["q"] if r["q"] is not None else 2.0
    return (q, -(r["auroc"] or 0.0), r["code"])


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_csv(rows: list[dict]) -> str:
    """One row per encoder and code, by encoder then q (smallest first)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    for e in encoders:
        for r in sorted((r for r in rows if r["encoder"] == e), key=_sort_key):
            w.writerow([_cell(r.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def _ci(r: dict, key: str) -> str:
    v, lo, hi = r.get(key), r.get(key + "_lo"), r.get(key + "_hi")
    if v is None:
        return "-"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{v:.2f}"


def _p(v) -> str:
    return "-" if v is None else (f"{v:.1e}" if v < 1e-3 else f"{v:.3f}")


def _encoder_table(rows: list[dict], fdr: float) -> list[str]:
    demo = any(r.get("auroc_demo") is not None for r in rows)
    head = ["code", "name", "chapter", "n+", "prev.", "AUROC PPG [95% CI]", "p", "q"]
    if demo:
        head += ["age+sex", "PPG+age+sex", "PPG adds [95% CI]"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -(r["auroc"] if r["auroc"] is not None else -1)):
        mark = "**" if r["significant"] else ""
        cells = [f"{mark}{r['code']}{mark}", r["description"] or "", f"{r['chapter']} {r['chapter_name']}".strip(),
                 str(r["n_pos"]), f"{r['prevalence']:.0%}" if r["prevalence"] is not None else "-",
                 _ci(r, "auroc") if r["status"] == "ok" else r["status"], _p(r["p"]), _p(r["q"])]
        if demo:
            d = "-" if r.get("delta_vs_demo") is None else (
                f"{r['delta_vs_demo']:+.2f}" + (f" [{r['delta_lo']:+.2f}, {r['delta_hi']:+.2f}]"
                                                if r.get("delta_lo") is not None else ""))
            cells += [_ci(r, "auroc_demo"), _ci(r, "auroc_ppg_demo"), d]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _side_by_side(rows: list[dict], encoders: list[str]) -> list[str]:
    head = ["code", "n+"] + [f"{e} AUROC (q)" for e in encoders]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {(r["encoder"], r["code"]): r for r in rows}
    for code in dict.fromkeys(r["code"] for r in rows):
        cells = [code, str(by[(encoders[0], code)]["n_pos"])]
        for e in encoders:
            r = by.get((e, code))
            cells.append("-" if r is None or r["auroc"] is None else
                         f"{'**' if r['significant'] else ''}{r['auroc']:.2f}{'**' if r['significant'] else ''}"
                         f" ({_p(r['q'])})")
        out.append("| " + " | ".join(cells) + " |")
    return out


def to_markdown(result: dict, fdr: float) -> str:
    c = result["cohort"]
    lines = ["# Disease-wide probe", "",
             f"Table `{result['table']}`, store `{c['store']}` (split {c['split']}): {c['subjects_probed']} "
             f"subjects probed ({c['windows']} windows; matched by {c['matching']}). Excluded: "
             f"{c['store_subjects_not_in_table']} store subjects absent from the table, {c['seen_excluded']} "
             f"seen by an encoder in training; {c['table_ids_not_in_store']} table ids not in the store.",
             "", f"Bold: significant at q < {fdr:g} (Benjamini-Hochberg over each encoder's codes; p: "
             "one-sided test of AUROC = 0.5, the Mann-Whitney statistic of the out-of-fold scores "
             "against its null from label permutations through the same folds). CIs: 95% subject "
             "bootstrap. 'PPG adds' = AUROC(PPG+age+sex) - AUROC(age+sex) on the same folds.", ""]
    encoders = [e["name"] for e in result["encoders"]]
    if len(encoders) > 1:
        lines += ["## Side by side", ""] + _side_by_side(result["rows"], encoders) + [""]
    for e in result["encoders"]:
        lines += [f"## {e['name']}", "", e["headline"]["text"] + ".", ""]
        lines += _encoder_table([r for r in result["rows"] if r["encoder"] == e["name"]], fdr) + [""]
    if result["untested"]:
        lines += ["## Not tested", "", ", ".join(f"{u['code']} ({u['n_pos']}+: {u['reason']})"
                                                  for u in result["untested"]), ""]
    return "\n".join(lines)


def write_reports(folder: Path, result: dict, fdr: float) -> None:
    """diagnoses.csv, diagnoses.md, diagnoses.json and phewas.png into `folder`."""
    from .phewas_plot import plot_phewas
    folder = Path(folder)
    atomic_write_text(folder / "diagnoses.csv", to_csv(result["rows"]))
    atomic_write_text(folder / "diagnoses.md", to_markdown(result, fdr))
    atomic_write_json(folder / "diagnoses.json", json.loads(json.dumps(result, default=float)))
    if result["rows"]:
        plot_phewas(result["rows"], [e["name"] for e in result["encoders"]], folder / "phewas.png", fdr)
