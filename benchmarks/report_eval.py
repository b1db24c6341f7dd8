"""The report's accuracy rows for the students: float (PyTorch) and int8 (LiteRT) on the same
held-out windows of the run's store, each head scored against its label with a 95% CI by
bootstrap over subjects, plus the HR error against coverage when windows are withheld by the
model's own confidence.

The int8 file's inputs and outputs are read from its sidecar by name (`model_int8.json`); a
head the file or the store does not have is simply absent. Where the sidecar has an
"hr_refine" block, the int8 HR is the refined one a device shows (edge_runtime.hr_refine) and
the network's own is scored beside it (`int8_network`). The teacher has no heads: its row
comes from the probe stage (frozen embedding -> linear probe), read by benchmarks.report_data.

Shapes: windows (N, L) float32; predictions {head: (N,)} in label units.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import contract, interpreters as interp
from edge_runtime.af_beats import AFBeats, with_af_beats
from edge_runtime.hr_refine import HRRefine, with_refined_hr

# head -> (store label, metric); a logit head is scored by AUROC against label >= 0.5.
HEAD_TASKS = {"hr": ("hr", "mae"), "rr": ("rr", "mae"), "sbp": ("sbp", "mae"), "dbp": ("dbp", "mae"),
              "af_logit": ("af", "auroc"), "quality_logit": ("quality", "auroc")}
ROUNDS = 200


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def float_outputs(distill_run: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The float student of a distill run on windows x (N, L) -> {output name: (N,) or (N, D)}."""
    import torch

    from training.checkpoint import build_student, load_checkpoint
    ck, path = load_checkpoint(distill_run)
    st = build_student(ck, path)
    outs: dict[str, list] = {}
    with torch.no_grad():
        for i in range(0, len(x), 256):
            o = st.model(torch.from_numpy(np.ascontiguousarray(x[i:i + 256], np.float32)).unsqueeze(1))
            for k, v in o._asdict().items():
                outs.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def int8_outputs(export_dir: Path, x: np.ndarray, flags: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The exported int8 file on LiteRT (XNNPACK), outputs dequantised and keyed by sidecar name."""
    side = json.loads((export_dir / "model_int8.json").read_text())
    ins = contract.sidecar_inputs(side)
    if [i["name"] for i in ins] != ["ppg"]:
        raise ValueError(f"{export_dir}: inputs {[i['name'] for i in ins]}; the report feeds PPG only")
    it = interp.litert(export_dir / "model_int8.tflite")
    det = {d["index"]: d for d in it.get_output_details()}
    raw = interp.run_int8(it, x)
    order = [d["index"] for d in it.get_output_details()]
    out = {}
    for o in side["outputs"]:
        k = order.index(int(o["index"]))
        s, z = det[int(o["index"])]["quantization"]
        v = interp.dequantize(raw[k], s, z).reshape(len(x), -1)
        out[o["name"]] = v[:, 0] if v.shape[1] == 1 and o["name"] != "embedding" else v
    # the number a device shows, and the network's own as hr_network
    fs = float(side["spec"]["ppg_fs"])
    out = with_refined_hr(out, x, ins[0], fs, HRRefine.from_sidecar(side), flags)
    return with_af_beats(out, x, ins[0], fs, AFBeats.from_sidecar(side), flags)


def score(kind: str, y: np.ndarray, p: np.ndarray, groups: np.ndarray, rounds: int = ROUNDS) -> dict[str, Any]:
    from training.metrics import auroc, mae
    from training.probe.protocol import bootstrap
    ok = np.isfinite(y) & np.isfinite(p)
    if ok.sum() < 2:
        return {"value": None, "ci": None, "n": int(ok.sum())}
    y, p, g = y[ok], p[ok], groups[ok]
    if kind == "auroc":
        yb = (y >= 0.5).astype(int)
        if len(np.unique(yb)) < 2:
            return {"value": None, "ci": None, "n": int(ok.sum()), "note": "one class only"}
        v = auroc(yb, p)
        ci = bootstrap("binary", yb, g, {"m": p}, n_rounds=rounds)["m"]["ci"]
    else:
        v = mae(y, p)
        ci = bootstrap("regression", y, g, {"m": p}, n_rounds=rounds)["m"]["ci"]
    return {"value": float(v), "ci": ci, "n": int(ok.sum()), "subjects": int(len(np.unique(g)))}


def coverage_curve(err: np.ndarray, conf: np.ndarray, steps: int = 20) -> dict[str, list[float]]:
    """MAE of the windows kept when the least confident are withheld, at coverage 5%..100%."""
    order = np.argsort(-conf, kind="mergesort")
    e = err[order]
    cov, m = [], []
    for c in np.linspace(1.0 / steps, 1.0, steps):
        k = max(1, int(round(c * len(e))))
        cov.append(float(k / len(e)))
        m.append(float(np.mean(e[:k])))
    return {"coverage": cov, "mae": m}


def evaluate(store: Path, distill_run: Path | None, export_dir: Path | None, split: str = "test",
             max_windows: int = 2000) -> dict[str, Any]:
    """{'split', 'n_windows', 'n_subjects', 'tasks': {head: {'label', 'metric', 'float', 'int8'}},
    'coverage': {'by': output name, 'float'|'int8': curve} }; engines that are absent are left out."""
    from training.data.store import WindowStore
    ws = WindowStore(store, split=split)
    n = min(len(ws), max_windows)
    x = ws.column("ppg")[:n].astype(np.float32)
    groups = np.asarray(ws.subject_ids()[:n])
    labels = {name: ws.column(name)[:n] for name in ws.label_names}
    engines: dict[str, dict[str, np.ndarray]] = {}
    if distill_run is not None:
        engines["float"] = float_outputs(distill_run, x)
    if export_dir is not None:
        engines["int8"] = int8_outputs(export_dir, x, ws.column("flags")[:n])
    res: dict[str, Any] = {"split": split, "n_windows": int(n), "n_subjects": int(len(np.unique(groups))),
                           "rounds": ROUNDS, "tasks": {}, "coverage": {}}
    for head, (label, metric) in HEAD_TASKS.items():
        if label not in labels or not np.isfinite(labels[label]).any():
            continue
        row = {"label": label, "metric": metric, "unit": contract.UNITS.get(head, "")}
        for eng, o in engines.items():
            if head in o:
                row[eng] = score(metric, labels[label], o[head].astype(np.float64), groups)
            if f"{head}_network" in o:          # refined on the device: the network's own too
                row[f"{eng}_network"] = score(metric, labels[label], o[f"{head}_network"].astype(np.float64), groups)
        if len(row) > 3:
            res["tasks"][head] = row
    if "hr" in labels:
        for eng, o in engines.items():
            by = "hr_confidence" if "hr_confidence" in o else "quality_logit" if "quality_logit" in o else None
            if by and "hr" in o:
                ok = np.isfinite(labels["hr"])
                err = np.abs(o["hr"][ok] - labels["hr"][ok])
                conf = o[by][ok] if by == "hr_confidence" else _sigmoid(o[by][ok])
                res["coverage"][eng] = coverage_curve(err, conf)
                res["coverage"]["by"] = by
    return res
