"""The README's result tables, rebuilt from run folders (nothing typed by hand).

    python -m benchmarks.readme_tables --runs runs/bidmc --store stores/bidmc [--out FILE]

Reads, under --runs (each made by the commands in the README):
  pretrain/, pretrain-uniform/        retrieval on val and test, recomputed from the checkpoints
                                      (training.retrieval: top-1 with subject-bootstrap CI beside
                                      chance, the patient-matching oracle and within-patient top-1)
  probe/probe.json                    the teacher's probe table and its paired differences
  probe-students/probe.json           frozen-embedding probes of teacher and students
  distill-student-s/, distill-nohead-student-s/, scratch-student-s/   head MAE (manifests)
  export/                             parity.json, audit, file bytes split by what they hold
and prints the tables as Markdown (and writes them to --out). A missing folder gives a line
saying which command makes it, never a made-up row.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PAIR_FMT = "{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _json(p: Path) -> dict | None:
    return json.loads(p.read_text()) if p.is_file() else None


def _missing(what: Path, cmd: str) -> list[str]:
    return [f"_{what}: missing; made by `{cmd}`_", ""]


# ----------------------------------------------------------------------------- pretraining
def run_retrieval(run: Path, store: Path, split: str) -> dict:
    """training.retrieval's report of a pretrain run folder's checkpoint on one split."""
    import torch

    from anyppg.config import apply_overrides
    from training.data.store import WindowStore
    from training.pretrain import PretrainConfig, build_towers
    from training.retrieval import retrieval_report
    ck = torch.load(run / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    known = set(PretrainConfig.__dataclass_fields__)
    cfg = apply_overrides(PretrainConfig(), {k: v for k, v in ck["config"].items() if k in known})
    model, *_ = build_towers(cfg, WindowStore(store, split=None).spec)
    model.load_state_dict(ck["model"])
    return retrieval_report(model, store, split=split, batch=cfg.eval_batch, seed=cfg.seed)


def _ci(v: dict) -> str:
    return f"{v['top1']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"


def pretrain_tables(runs: Path, store: Path) -> list[str]:
    lines = ["### Retrieval (PPG -> ECG top-1, batches of 64, 20 reshuffles, 95% CI by patient bootstrap)", "",
             "| run | split | patients (windows) | top-1 | chance | patient oracle | within-patient top-1 | within-patient chance |",
             "|---|---|---|---|---|---|---|---|"]
    runs_cfg = [("pretrain", "cpu-small, `windows_per_subject: 16`"),
                ("pretrain-uniform", "same, uniform batches (`--set windows_per_subject=0`)")]
    for folder, label in runs_cfg:
        run = runs / folder
        if not (run / "manifest.json").is_file():      # a run still going has no manifest yet
            lines.append(f"| {label} | missing: `anyppg pretrain ... --out {run}` | | | | | | |")
            continue
        for split in ("val", "test"):
            r = run_retrieval(run, store, split)
            if r.get("status") != "ok":
                lines.append(f"| {label} | {split} | {r.get('status')} | | | | | |")
                continue
            u, w = r["uniform"], r["within_patient"]
            lines.append(f"| {label} | {split} | {r['n_subjects']} ({r['n_windows']}) | {_ci(u)} | {u['chance']:.3f} "
                         f"| {u['patient_oracle']:.3f} | {_ci(w)} | {w['chance']:.3f} |")
    return lines + [""]


# ----------------------------------------------------------------------------- probes
def _enc(probe: dict, suffix: str) -> str | None:
    for e in probe["encoders"]:
        if e["name"].rstrip("/").endswith(suffix):
            return e["name"]
    return None


def _val(res: dict | None, ci: bool = True) -> str:
    if not res or res.get("status") != "ok" or res.get("value") is None:
        return ""
    auc = res.get("metric") in ("auroc", "macro_f1")
    f = (lambda v: f"{v:.3f}") if auc else (lambda v: f"{v:.2f}")
    s = f(res["value"])
    if ci and res.get("ci"):
        s += f" [{f(res['ci'][0])}, {f(res['ci'][1])}]"
    if res.get("coverage", 1) < 1:
        s += f" ({res['coverage']:.0%} cov.)"
    return s


def _paired(task: dict, m: str | None, r: str | None) -> dict | None:
    for p in task.get("paired", []):
        if p["method"] == m and p["reference"] == r:
            return p
    return None


def _pair_cell(p: dict | None) -> str:
    if not p:
        return ""
    return PAIR_FMT.format(d=p["diff"], lo=p["ci"][0], hi=p["ci"][1]) + f" {p['verdict']}"


CLASSICAL = ("hr-spectral", "hr-neurokit2", "hr-heartpy", "rr-fusion")


def _classical(b: dict, c: str) -> str:
    """A classical estimator where it returns a value (coverage if not all windows), then with
    its failures imputed by the training mean when that changes the figure."""
    s, imp = _val(b.get(c), False), _val(b.get(c + "+imp"), False)
    return f"{s}; {imp} imputed" if imp and (b.get(c) or {}).get("coverage", 1) < 1 else s


def teacher_probe_table(probe: dict) -> list[str]:
    pre, rnd = _enc(probe, "pretrain"), next((e["name"] for e in probe["encoders"] if e["name"].startswith("random:")), None)
    head = ["task", "metric", "subjects (windows)", "pretrained", "random init", "subject mean / prior",
            "HRV+morph.", *CLASSICAL]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, t in probe["tasks"].items():
        if t.get("status") != "ok":
            continue
        b = t["baselines"]
        cells = [name, t["metric"], f"{t['n_subjects']} ({t['n_windows']})", _val(t["encoders"].get(pre)),
                 _val(t["encoders"].get(rnd), False), _val(b.get("subject-mean") or b.get("prior"), False),
                 _val(b.get("features"), False), *(_classical(b, c) for c in CLASSICAL)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired differences, method minus reference on the same windows (95% CI, subject bootstrap; "
              "MAE lower is better, AUROC / macro-F1 higher):", "",
              "| task | pretrained - random init | pretrained - subject mean | features - pretrained "
              "| HeartPy (imputed) - pretrained |", "|---|---|---|---|---|"]
    for name, t in probe["tasks"].items():
        if t.get("status") != "ok":
            continue
        triv = "subject-mean" if "subject-mean" in t["baselines"] else "prior"
        lines.append(f"| {name} | {_pair_cell(_paired(t, pre, rnd))} | {_pair_cell(_paired(t, pre, triv))} "
                     f"| {_pair_cell(_paired(t, 'features', pre))} | {_pair_cell(_paired(t, 'hr-heartpy+imp', pre))} |")
    return lines + [""]


# ----------------------------------------------------------------------------- students
def student_tables(runs: Path, probe: dict | None) -> list[str]:
    lines = []
    arms = [("pretrain", "teacher"), ("distill-student-s", "distilled student-s"),
            ("distill-nohead-student-s", "distilled, no head losses"),
            ("scratch-student-s", "labels only"), ("random:student-s", "random student-s")]
    if probe:
        names = {lbl: (_enc(probe, f) if not f.startswith("random:") else
                       next((e["name"] for e in probe["encoders"] if e["name"] == f), None)) for f, lbl in arms}
        lines += ["| frozen-embedding probe, MAE [95% CI] | subjects | " + " | ".join(l for _, l in arms)
                  + " | subject mean |", "|" + "---|" * (len(arms) + 3)]
        for task in ("bidmc-hr", "bidmc-rr"):
            t = probe["tasks"].get(task, {})
            if t.get("status") != "ok":
                continue
            lines.append(f"| {task} | {t['n_subjects']} | " + " | ".join(_val(t["encoders"].get(names[l])) for _, l in arms)
                         + f" | {_val(t['baselines'].get('subject-mean'), False)} |")
        lines += ["", "Skill = 1 - MAE / MAE(subject mean) on the same windows; skill kept = student skill / "
                  "teacher skill, from the student distilled *without* head losses (its embedding holds only "
                  "what the teacher gave it):", "", "| task | teacher skill | no-head student skill | skill kept "
                  "| distilled - no-head (paired) | no-head - teacher (paired) |", "|---|---|---|---|---|---|"]
        for task in ("bidmc-hr", "bidmc-rr"):
            t = probe["tasks"].get(task, {})
            if t.get("status") != "ok":
                continue
            te, nh = t["encoders"].get(names["teacher"]) or {}, t["encoders"].get(names["distilled, no head losses"]) or {}
            ts, ns = te.get("skill"), nh.get("skill")
            kept = f"{ns / ts:.2f}" if ts and ns is not None and ts > 0 else "n/a (teacher skill <= 0)"
            fs = lambda v: "" if v is None else f"{v:+.2f}"
            lines.append(f"| {task} | {fs(ts)} | {fs(ns)} | {kept} "
                         f"| {_pair_cell(_paired(t, names['distilled student-s'], names['distilled, no head losses']))} "
                         f"| {_pair_cell(_paired(t, names['distilled, no head losses'], names['teacher']))} |")
        lines.append("")
    lines += ["| HR head MAE (bpm), no probe | distilled student-s | distilled, no head losses | labels only "
              "| training-mean predictor |", "|---|---|---|---|---|"]
    for split in ("test", "val"):
        row = []
        ref = ""
        for f in ("distill-student-s", "distill-nohead-student-s", "scratch-student-s"):
            m = _json(runs / f / "manifest.json")
            s = (m or {}).get("metrics", {}).get(split, {})
            row.append(f"{s['hr_mae']:.2f}" if "hr_mae" in s else "")
            ref = f"{s['hr_mae_mean_predictor']:.2f}" if "hr_mae_mean_predictor" in s else ref
        m = _json(runs / "distill-student-s" / "manifest.json")
        n = (m or {}).get("metrics", {}).get(split, {}).get("n_subjects", "?")
        lines.append(f"| {split} patients ({n}) | " + " | ".join(row) + f" | {ref} |")
    return lines + [""]


# ----------------------------------------------------------------------------- quantisation
def tflite_bytes(path: Path) -> dict:
    """Bytes of a .tflite by what they hold: constant tensor data by type, quantisation
    parameters (float32 scales + int64 zero points, as the flatbuffer stores them), the rest."""
    from edge_runtime import tflite_file as tff
    m = tff.load_model(path)
    data: dict[str, int] = {}
    qparams = 0
    for t in m.subgraphs[0].tensors:
        b = m.buffers[t.buffer]
        if b.data is not None and len(b.data):
            k = tff.tensor_type(t)
            data[k] = data.get(k, 0) + len(b.data)
        q = tff.quant_of(t)
        if q is not None:
            qparams += len(q[0]) * 4 + len(q[1]) * 8
    total = path.stat().st_size
    return {"total": total, "constants_by_type": data, "quant_params": qparams,
            "other": total - sum(data.values()) - qparams}


def parity_detail_rows(par: dict) -> list[str]:
    """Rows of the parity table beyond the summary: worst window, XNNPACK, HR against the labels,
    where LiteRT's reference kernels and TFLite Micro differ (QAT file | calibration file)."""
    e, bx = par.get("engines", {}), par.get("bit_exactness", {})
    get = lambda eng, cmp, k: (e.get(eng, {}).get(cmp) or {}).get(k)
    f5 = lambda v: "" if v is None else f"{v:.5f}"
    f3 = lambda v: "" if v is None else f"{v:.3f}"
    fl = get("torch_float", "vs_float", "hr_mae_vs_label")

    def mism(label: str) -> str:
        b = bx.get(label) or {}
        if "ref_vs_tflm_mismatches" not in b:
            return ""
        per = ", ".join(f"{k} {v}" for k, v in b["ref_vs_tflm_mismatches"].items() if v)
        return (f"{sum(b['ref_vs_tflm_mismatches'].values())} of {b['ref_vs_tflm_values']:,} values"
                + (f" ({per}; max {b['ref_vs_tflm_max_abs_diff']} step)" if per else ""))
    return [f"| int8 vs float embedding cosine, worst window | {f5(get('qat/litert_ref', 'vs_float', 'embedding_cosine_min'))} "
            f"| {f5(get('calib/litert_ref', 'vs_float', 'embedding_cosine_min'))} |",
            f"| XNNPACK kernels vs fake-quant embedding cosine | "
            f"{f5(get('qat/litert_xnnpack', 'vs_fakequant', 'embedding_cosine_mean'))} | |",
            f"| HR MAE against the labels, bpm (float student {f3(fl)}) | "
            f"{f3(get('qat/litert_ref', 'vs_float', 'hr_mae_vs_label'))} | {f3(get('calib/litert_ref', 'vs_float', 'hr_mae_vs_label'))} |",
            f"| LiteRT reference vs TFLite Micro, int8 values that differ | {mism('qat')} | {mism('calib')} |"]


def quant_tables(runs: Path) -> list[str]:
    exp = runs / "export"
    par = _json(exp / "parity.json")
    man = _json(exp / "manifest.json")
    if par is None or man is None:
        return _missing(exp, f"anyppg export --from {runs}/qat --data STORE --out {exp}")
    s = par["summary"]
    f5 = lambda k: "" if s.get(k) is None else f"{s[k]:.5f}"
    f3 = lambda k: "" if s.get(k) is None else f"{s[k]:+.3f}"
    yn = lambda k, f: {True: "yes", False: "no"}.get((s.get(k) or {}).get(f), "")
    lines = [f"Parity on {par.get('n_windows')} windows of the `{par.get('split')}` split:", "",
             "| measure | QAT file | plain-calibration file |", "|---|---|---|",
             f"| int8 vs float embedding cosine (target >= 0.999) | {f5('qat_file_vs_float_embedding_cosine')} "
             f"| {f5('calib_file_vs_float_embedding_cosine')} |",
             f"| int8 vs fake-quant embedding cosine | {f5('qat_file_vs_fakequant_embedding_cosine')} | |",
             f"| HR MAE increase against the labels, bpm (target <= 0.5) | {f3('qat_file_hr_mae_increase_bpm')} "
             f"| {f3('calib_file_hr_mae_increase_bpm')} |",
             f"| LiteRT reference vs TFLite Micro, embedding bit-exact | {yn('ref_vs_tflm_embedding_bit_exact', 'qat')} "
             f"| {yn('ref_vs_tflm_embedding_bit_exact', 'calib')} |",
             f"| LiteRT reference vs TFLite Micro, every output bit-exact | {yn('ref_vs_tflm_bit_exact', 'qat')} "
             f"| {yn('ref_vs_tflm_bit_exact', 'calib')} |",
             *parity_detail_rows(par), ""]
    ops = man["metrics"].get("ops") or {}
    if ops:
        lines.append("- Ops: " + ", ".join(f"{k} {v}" for k, v in ops.items()) + ".")
    tpu = man["metrics"].get("edgetpu") or {}
    if tpu:
        lines.append(f"- Edge TPU rules (offline): {tpu.get('mapped_ops')} ops mapped, {tpu.get('cpu_ops')} on the CPU, "
                     f"all on the TPU: {'yes' if tpu.get('all_on_tpu') else 'no'}.")
    lines.append("- sha256 " + ", ".join(f"`{k}` {v[:16]}..." for k, v in (man.get("files") or {}).items()) + ".")
    b = tflite_bytes(exp / "model_int8.tflite")
    const = ", ".join(f"{k} {v:,}" for k, v in sorted(b["constants_by_type"].items()))
    lines.append(f"- `model_int8.tflite`: {b['total']:,} bytes = constants ({const}) + quantisation "
                 f"parameters {b['quant_params']:,} + graph and metadata {b['other']:,}.")
    t = man["metrics"].get("timings", {})
    lines.append("- Timings (this run): " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()) + ".")
    q = _json(runs / "qat" / "manifest.json")
    if q:
        for split in ("val", "test"):
            v = q["metrics"].get(split, {})
            if "embedding_cosine_mean" in v:
                lines.append(f"- QAT fake-quant vs float, {split} ({v['n_windows']} windows): cosine "
                             f"{v['embedding_cosine_mean']:.5f} (min {v['embedding_cosine_min']:.4f}); "
                             f"selection split: {q['config'].get('selection_split')}")
    return lines + [""]


# ----------------------------------------------------------------------------- GPU arithmetic
def gpu_arithmetic() -> list[str]:
    from training.models import build_model, count_macs
    ppg = count_macs(build_model("anyppg-net1d").model, (1, 1, 1250))
    ecg = count_macs(build_model("ecgfounder-net1d").model, (1, 1, 5000))
    step = 3 * ppg                       # forward + backward ~ 3 forwards
    flop = 2 * step                      # one MAC = 2 FLOP
    return [f"PPG encoder {ppg / 1e6:.1f} M MACs, ECGFounder {ecg / 1e6:.1f} M MACs per window; a training step "
            f"costs 3 x {ppg / 1e6:.1f} = {step / 1e6:.0f} M MACs = {flop / 1e9:.2f} GFLOP per cached window "
            f"(+{2 * ecg / 1e9:.2f} GFLOP live ECG); cache speed-up (step + ECG) / step = {(step + ecg) / step:.1f}x; "
            f"at 100 TFLOP/s bf16: {100e12 / flop:,.0f} windows/s (an upper bound).", ""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="readme_tables", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/bidmc", help="folder holding the run folders listed above")
    p.add_argument("--store", default="stores/bidmc")
    p.add_argument("--out", default=None, help="also write the Markdown here")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: pretrain,probe,students,quant,gpu")
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    runs, store, skip = Path(a.runs), Path(a.store), set(filter(None, a.skip.split(",")))
    out: list[str] = []
    if "pretrain" not in skip:
        out += ["## Pretraining evidence", ""] + pretrain_tables(runs, store)
    if "probe" not in skip:
        pr = _json(runs / "probe" / "probe.json")
        out += ["## Probes", ""] + (teacher_probe_table(pr) if pr else _missing(
            runs / "probe", f"anyppg probe --encoder {runs}/pretrain --encoder random:net1d-small --tasks real --out {runs}/probe"))
    if "students" not in skip:
        out += ["## Students", ""] + student_tables(runs, _json(runs / "probe-students" / "probe.json"))
    if "quant" not in skip:
        out += ["## Quantisation", ""] + quant_tables(runs)
    if "gpu" not in skip:
        out += ["## GPU arithmetic", ""] + gpu_arithmetic()
    text = "\n".join(out) + "\n"
    if a.out:
        from anyppg.runs import atomic_write_text
        atomic_write_text(a.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
