"""Accuracy through the edge runtime on the real tasks, next to the float student and the teacher.

- BIDMC test patients (the store's test split): HR MAE of the int8 file (the runtime's
  EdgeModel on the store's windows, which `ppg_windows` made with the runtime's own
  preprocessing), of the float student (PyTorch) on the same windows, and of the teacher with a
  ridge head fitted on its embeddings of the store's training patients (the teacher has no HR
  head of its own).
- troika_test (evaluation only): each recording's raw wrist PPG pushed through `PPGStream`
  (resampling, windows, preprocessing, quality flags, int8 inference); HR MAE on every window
  and on the windows the runtime marks usable (coverage reported); the float student and the
  BIDMC-fitted teacher ridge on the same model inputs.
- Liu 2022 AF: each 10-s 100 Hz segment through `PPGStream` (100 -> 125 Hz); AUROC of the
  model's AF probability and of the float student's, without the patients whose windows trained
  or selected the student (a wrist student mixes Liu's train split in; `seen_subjects`).

Outputs are read by name (`hr`, `hr_confidence` when the model has it, `af_logit`). Where the
sidecar has an "hr_refine" or "af_beats" block, the HR the runtime shows (refined on the
window's spectrum, or counted where the model calls AF: `int8_runtime_refined`) is scored next
to the network's own (`int8_runtime`).
"""
from __future__ import annotations

import json

from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.af_beats import with_af_beats
from edge_runtime.hr_refine import with_refined_hr
from edge_runtime.model import EdgeModel, readout
from edge_runtime.stream import run_recording


def _torch_outputs(model, z: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Float student outputs by field name for windows (N, L)."""
    import torch
    outs: dict[str, list] = {}
    with torch.inference_mode():
        for i in range(0, len(z), batch):
            o = model(torch.from_numpy(np.ascontiguousarray(z[i:i + batch], np.float32)).unsqueeze(1))
            for k, v in o._asdict().items():
                outs.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def _embed(teacher, z: np.ndarray, batch: int = 128) -> np.ndarray:
    import torch
    res = []
    with torch.inference_mode():
        for i in range(0, len(z), batch):
            o = teacher(torch.from_numpy(np.ascontiguousarray(z[i:i + batch], np.float32)).unsqueeze(1))
            res.append((o.embedding if hasattr(o, "embedding") else o).numpy())
    return np.concatenate(res)


def _mae(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[ok] - b[ok]).mean()) if ok.any() else float("nan")


def _auroc(y, p) -> float:
    from sklearn.metrics import roc_auc_score
    y = np.asarray(y, bool)
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def fit_teacher_hr(teacher, store: Path):
    """Ridge HR head on the teacher's embeddings of the store's training windows."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training.data.store import WindowStore
    tr = WindowStore(store, split="train")
    hr = tr.label("hr") if hasattr(tr, "label") else tr.column("hr")
    keep = np.isfinite(hr)
    emb = _embed(teacher, tr.column("ppg")[keep].astype(np.float32))
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(emb, hr[keep])


def bidmc_rows(model: EdgeModel, student, teacher, ridge, store: Path) -> dict[str, Any]:
    from training.data.store import WindowStore
    te = WindowStore(store, split="test")
    z = te.column("ppg").astype(np.float32)
    hr = te.label("hr") if hasattr(te, "label") else te.column("hr")
    q = model.run_batch(z)
    # Named after the store's source: the demo's store is synthetic, not BIDMC.
    source = json.loads((Path(store) / "index.json").read_text()).get("source", "store")
    row = {"task": f"{source}-hr (test subjects)", "metric": "MAE bpm", "windows": int(len(z)),
           "int8_runtime": _mae(q["hr"], hr)}
    if model.hr_refine is not None or model.af_beats is not None:   # the number the runtime shows
        shown = with_refined_hr({**q, "hr": q["hr"].reshape(-1)}, z, model.inputs["ppg"],
                                model.spec.ppg_fs, model.hr_refine, te.column("flags"))
        q = with_af_beats(shown, z, model.inputs["ppg"], model.spec.ppg_fs, model.af_beats,
                          te.column("flags"))
        row["int8_runtime_refined"] = _mae(q["hr"], hr)
    if student is not None:
        row["float_student"] = _mae(_torch_outputs(student, z)["hr"], hr)
    if teacher is not None and ridge is not None:
        row["teacher_ridge"] = _mae(ridge.predict(_embed(teacher, z)), hr)
    if "hr_confidence" in q:
        conf = q["hr_confidence"] >= model.decision["hr_confidence_min"]
        row["int8_confident_mae"] = _mae(q["hr"][conf], hr[conf])
        row["confident_coverage"] = float(conf.mean())
    return row


def troika_rows(model: EdgeModel, student, teacher, ridge, root: Path) -> dict[str, Any]:
    from training.data.readers import troika
    zs, hr, ok, pred, shown = [], [], [], [], []
    for unit in troika.discover(root):
        for rec in troika.read_unit(unit):
            sig = rec.signals["ppg"]
            res, _ = run_recording(model, sig.data, sig.fs, keep_z=True, infer_flagged=True)
            lab = rec.window_labels["hr"]
            for r in res[: len(lab)]:
                zs.append(r.z)
                ok.append(r.status == "ok")
                out = readout(model.run(r.z))
                pred.append(out["hr"])
                shown.append(model.refined_hr(r.z, pred[-1], r.flags, out.get("af_prob")))
            hr += list(lab[: len(res)])
    z, hr, ok, pred, shown = np.stack(zs), np.asarray(hr), np.asarray(ok), np.asarray(pred), np.asarray(shown)
    row = {"task": "troika_test hr (wrist, exercise)", "metric": "MAE bpm", "windows": int(len(z)),
           "int8_runtime": _mae(pred, hr), "int8_runtime_usable": _mae(pred[ok], hr[ok]),
           "usable_coverage": float(ok.mean())}
    if model.hr_refine is not None or model.af_beats is not None:   # the number the runtime shows
        row["int8_runtime_refined"] = _mae(shown, hr)
        row["int8_runtime_refined_usable"] = _mae(shown[ok], hr[ok])
    if student is not None:
        row["float_student"] = _mae(_torch_outputs(student, z)["hr"], hr)
    if teacher is not None and ridge is not None:
        row["teacher_ridge"] = _mae(ridge.predict(_embed(teacher, z)), hr)
    return row


def seen_subjects(export: Path, source: str) -> set[str]:
    """Subjects of reader `source` whose windows trained or selected the export's student: the
    train and val splits of every store of that source it was distilled on (its own and its
    `mix:`), followed through the run manifests (sidecar source_qat_run -> QAT manifest ->
    distill manifest). Empty where a link is missing (then nothing is excluded)."""
    def manifest(run: Path) -> dict:
        f = run / "manifest.json"
        return json.loads(f.read_text()) if f.is_file() else {}
    side = Path(export) / "model_int8.json"
    qat = json.loads(side.read_text()).get("source_qat_run") if side.is_file() else None
    ck = (manifest(Path(qat)).get("inputs") or {}).get("distill_checkpoint", {}).get("path") if qat else None
    if not ck:
        return set()
    dist = manifest(Path(ck).parent.parent)
    stores = [Path(dist.get("inputs", {}).get("store_index", {}).get("path", "")).parent,
              *(Path(str(m).rsplit(":", 1)[0]) for m in (dist.get("config") or {}).get("mix") or [])]
    seen: set[str] = set()
    for st in stores:
        idx = st / "index.json"
        if idx.is_file():
            i = json.loads(idx.read_text())
            if i.get("source") == source:
                for split in ("train", "val"):
                    seen.update(map(str, (i.get("split_subjects") or {}).get(split, [])))
    return seen


def liu_rows(model: EdgeModel, student, root: Path, max_segments: int | None = None,
             exclude: set[str] = frozenset()) -> dict[str, Any]:
    """AF AUROC on Liu 2022's segments through the stream, leaving out the patients in `exclude`
    (those the student trained or was selected on: `seen_subjects`)."""
    from training.data.readers import liu2022
    zs, af, p = [], [], []
    recs = [rec for unit in liu2022.discover(root) for rec in liu2022.read_unit(unit)]
    left_out = sorted({str(r.subject_id) for r in recs if str(r.subject_id) in exclude})
    segs = [(rec, k, lab) for rec in recs if str(rec.subject_id) not in exclude
            for k, lab in enumerate(rec.window_labels["af"])]
    if not segs:
        raise ValueError(f"{root}: no Liu patients left once those the student saw are excluded")
    if max_segments and len(segs) > max_segments:      # an even spread over files and rhythms
        segs = [segs[i] for i in np.linspace(0, len(segs) - 1, max_segments).astype(int)]
    for rec, k, lab in segs:
        sig = rec.signals["ppg"]
        L = int(round(rec.segment_s * sig.fs))
        res, _ = run_recording(model, sig.data[k * L:(k + 1) * L], sig.fs, keep_z=True,
                               infer_flagged=True)
        if res:
            zs.append(res[0].z)
            af.append(bool(lab))
            p.append(readout(model.run(res[0].z))["af_prob"])
    z, af, p = np.stack(zs), np.asarray(af), np.asarray(p, float)
    row = {"task": "liu-af (AF vs other rhythms)", "metric": "AUROC", "windows": int(len(z)),
           "patients_excluded_seen_in_training": left_out, "int8_runtime": _auroc(af, p)}
    if student is not None:
        row["float_student"] = _auroc(af, _torch_outputs(student, z)["af_logit"])
    return row
