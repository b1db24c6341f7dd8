"""Parity of every way the student can run, on held-out windows.

Engines: PyTorch float (the distilled student), brevitas fake-quant (the QAT model),
onnxruntime (the exported ONNX: QAT weights, float activations), and for each .tflite (the
QAT-faithful `model_int8.tflite` and the plain-calibration `model_int8_calib.tflite`): LiteRT
with XNNPACK, LiteRT with the reference kernels (BUILTIN_REF) and TFLite Micro (tflite-micro
wheel). Every engine is compared with the float student and with the fake-quant model:
embedding cosine, per-head mean absolute error (label units) and, where labels exist, each
regression head's MAE against the labels and its increase over the float student's.
Bit-exactness: LiteRT BUILTIN_REF vs TFLite Micro raw int8 outputs, and XNNPACK vs BUILTIN_REF
(share of identical int8 values). Measured on this toolchain: the encoder (CONV_2D,
DEPTHWISE_CONV_2D, ADD, pools) is bit-exact between LiteRT's reference kernels and TFLM, but
FULLY_CONNECTED is not always: LiteRT 2.1's reference FC requantises with a single rounding,
TFLM's with TFLite's classic double rounding (SaturatingRoundingDoublingHighMul then
RoundingDivideByPOT), so an accumulator whose real value lies within ~1/2^k of a .5 tie comes
out 1 LSB apart (a few head values in a thousand). The mismatch counts per output are reported;
TFLM is the reference for the watch.

`run_parity(...)` returns a JSON-able dict; `write_reports(result, folder)` writes parity.json
and parity.md (a Markdown table).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import interpreters as interp, tflite_file as tff


REGRESSION = ("hr", "rr", "sbp", "dbp")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def compare_outputs(got: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                    labels: dict[str, np.ndarray] | None = None,
                    ref_is_float: bool = False) -> dict[str, Any]:
    """got/ref: {field: (N, ...)}; labels: {field: (N,)} label units (NaN unknown)."""
    c = _cos(got["embedding"], ref["embedding"])
    res: dict[str, Any] = {"embedding_cosine_mean": float(c.mean()),
                           "embedding_cosine_min": float(c.min())}
    for k in got:
        if k == "embedding":
            continue
        res[f"{k}_mae_vs_ref"] = float(np.abs(got[k].reshape(-1) - ref[k].reshape(-1)).mean())
    if labels:
        for k, y in labels.items():
            m = np.isfinite(y)
            if k in got and m.any():
                res[f"{k}_mae_vs_label"] = float(np.abs(got[k].reshape(-1)[m] - y[m]).mean())
                if ref_is_float:
                    base = float(np.abs(ref[k].reshape(-1)[m] - y[m]).mean())
                    res[f"{k}_mae_increase_vs_float"] = res[f"{k}_mae_vs_label"] - base
    return res


def torch_outputs(model, x: np.ndarray, fields: list[str], batch: int = 256) -> dict[str, np.ndarray]:
    import torch
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            o = model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32)).unsqueeze(1))
            outs.append([t.numpy() for t in o])
    return {f: np.concatenate([o[k] for o in outs]) for k, f in enumerate(fields)}


def onnx_outputs(path, x: np.ndarray, fields: list[str]) -> dict[str, np.ndarray]:
    from .onnx_export import run_onnx
    o = run_onnx(path, x[:, None, :])
    return {f: o[k] for k, f in enumerate(fields)}


def _by_field(raw: list[np.ndarray], order: list[int], quant: list[tuple[float, int]],
              binding: dict[str, int]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """raw outputs in subgraph order -> ({field: dequantised}, {field: raw int8})."""
    pos = {ti: k for k, ti in enumerate(order)}
    deq, ints = {}, {}
    for f, ti in binding.items():
        k = pos[ti]
        s, z = quant[k]
        deq[f] = interp.dequantize(raw[k].reshape(raw[k].shape[0], -1) if raw[k].ndim > 1 else raw[k], s, z)
        ints[f] = raw[k]
    n = len(next(iter(deq.values())))
    for f in deq:
        deq[f] = deq[f].reshape(n, -1)
        if deq[f].shape[1] == 1 and f != "embedding":
            deq[f] = deq[f][:, 0]
    return deq, ints


def tflite_engines(src, x: np.ndarray, binding: dict[str, int], tflm: bool = True
                   ) -> tuple[dict[str, dict], dict[str, dict], dict[str, Any]]:
    """Run one .tflite on LiteRT XNNPACK, LiteRT BUILTIN_REF and (optionally) TFLite Micro.
    Returns ({engine: {field: float}}, {engine: {field: int8}}, bit-exactness facts)."""
    deq_all, int_all = {}, {}
    for eng, ref in (("litert_xnnpack", False), ("litert_ref", True)):
        it = interp.litert(src, ref=ref)
        raw = interp.run_int8(it, x)
        det = it.get_output_details()
        order = [d["index"] for d in det]
        quant = [tuple(d["quantization"]) for d in det]
        deq_all[eng], int_all[eng] = _by_field(raw, order, quant, binding)
    model = tff.load_model(src)
    sg = model.subgraphs[0]
    order = [int(i) for i in sg.outputs]
    quant = []
    for ti in order:
        q = tff.quant_of(sg.tensors[ti])
        quant.append((float(q[0][0]), int(q[1][0])))
    if tflm:
        iq = tff.quant_of(sg.tensors[int(sg.inputs[0])])
        raw = interp.run_tflm(src, x, float(iq[0][0]), int(iq[1][0]), len(order))
        deq_all["tflm"], int_all["tflm"] = _by_field(raw, order, quant, binding)
    facts: dict[str, Any] = {}
    xa, ra = int_all["litert_xnnpack"], int_all["litert_ref"]
    facts["xnnpack_vs_ref_identical_fraction"] = float(np.mean(np.concatenate(
        [(xa[f].reshape(-1) == ra[f].reshape(-1)) for f in binding])))
    if tflm:
        ta = int_all["tflm"]
        mism = {f: int(np.sum(ta[f].reshape(-1) != ra[f].reshape(-1))) for f in binding}
        diff = max(int(np.abs(ta[f].reshape(-1).astype(np.int64) - ra[f].reshape(-1)).max()) for f in binding)
        facts["ref_vs_tflm_bit_exact"] = not any(mism.values())
        facts["ref_vs_tflm_mismatches"] = mism
        facts["ref_vs_tflm_values"] = int(sum(ra[f].size for f in binding))
        facts["ref_vs_tflm_max_abs_diff"] = diff
    return deq_all, int_all, facts


def run_parity(float_model, fq_model, onnx_path, files: dict[str, Any], bindings: dict[str, dict],
               x: np.ndarray, labels: dict[str, np.ndarray], fields: list[str],
               tflm: bool = True) -> dict[str, Any]:
    """files: {label: path or bytes}; bindings: {label: {field: output tensor index}}."""
    ref_f = torch_outputs(float_model, x, fields)
    ref_q = torch_outputs(fq_model, x, fields)
    res: dict[str, Any] = {"n_windows": int(len(x)), "fields": fields, "engines": {}}
    res["engines"]["torch_float"] = {"vs_float": compare_outputs(ref_f, ref_f, labels, True)}
    res["engines"]["brevitas_fakequant"] = {"vs_float": compare_outputs(ref_q, ref_f, labels, True),
                                            "vs_fakequant": compare_outputs(ref_q, ref_q)}
    if onnx_path is not None:
        o = onnx_outputs(onnx_path, x, fields)
        res["engines"]["onnxruntime"] = {"vs_float": compare_outputs(o, ref_f, labels, True),
                                         "vs_fakequant": compare_outputs(o, ref_q)}
    res["bit_exactness"] = {}
    res["file_bytes"] = {}
    for label, src in files.items():
        deq, ints, facts = tflite_engines(src, x, bindings[label], tflm=tflm)
        res["bit_exactness"][label] = facts
        res["file_bytes"][label] = len(src) if isinstance(src, (bytes, bytearray)) else Path(src).stat().st_size
        for eng, d in deq.items():
            res["engines"][f"{label}/{eng}"] = {"vs_float": compare_outputs(d, ref_f, labels, True),
                                                "vs_fakequant": compare_outputs(d, ref_q)}
    return res


def summary(res: dict[str, Any], qat_label: str = "qat", calib_label: str = "calib") -> dict[str, Any]:
    """The headline figures and the targets they are checked against."""
    e = res["engines"]
    out: dict[str, Any] = {}
    q = e.get(f"{qat_label}/litert_ref")
    c = e.get(f"{calib_label}/litert_ref")
    if q:
        out["qat_file_vs_float_embedding_cosine"] = q["vs_float"]["embedding_cosine_mean"]
        out["qat_file_vs_fakequant_embedding_cosine"] = q["vs_fakequant"]["embedding_cosine_mean"]
        if "hr_mae_increase_vs_float" in q["vs_float"]:
            out["qat_file_hr_mae_increase_bpm"] = q["vs_float"]["hr_mae_increase_vs_float"]
        out["qat_file_hr_mae_vs_float_bpm"] = q["vs_float"].get("hr_mae_vs_ref")
    if c:
        out["calib_file_vs_float_embedding_cosine"] = c["vs_float"]["embedding_cosine_mean"]
        if "hr_mae_increase_vs_float" in c["vs_float"]:
            out["calib_file_hr_mae_increase_bpm"] = c["vs_float"]["hr_mae_increase_vs_float"]
        out["calib_file_hr_mae_vs_float_bpm"] = c["vs_float"].get("hr_mae_vs_ref")
    if q and c:
        a = 1 - q["vs_fakequant"]["embedding_cosine_mean"]
        b = 1 - c["vs_float"]["embedding_cosine_mean"]
        out["qat_file_tracks_fakequant_at_least_as_well_as_calib_tracks_float"] = bool(a <= b)
    t = {}
    if q:
        t["embedding_cosine_ge_0.999"] = q["vs_float"]["embedding_cosine_mean"] >= 0.999
        if "qat_file_hr_mae_increase_bpm" in out:
            t["hr_mae_increase_le_0.5_bpm"] = out["qat_file_hr_mae_increase_bpm"] <= 0.5
    out["targets_met"] = t
    out["ref_vs_tflm_bit_exact"] = {k: v.get("ref_vs_tflm_bit_exact") for k, v in res["bit_exactness"].items()}
    out["ref_vs_tflm_embedding_bit_exact"] = {k: (v.get("ref_vs_tflm_mismatches") or {}).get("embedding") == 0
                                              for k, v in res["bit_exactness"].items()}
    return out


def _fmt(v, nd=4):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(res: dict[str, Any]) -> str:
    heads = [f for f in res["fields"] if f != "embedding"]
    lines = [f"Parity on {res['n_windows']} held-out windows. Cosine = mean embedding cosine; "
             "head columns: mean |difference| in label units (bpm, breaths/min, mmHg, logit).", ""]
    for ref in ("vs_float", "vs_fakequant"):
        title = "against the float student" if ref == "vs_float" else "against the brevitas fake-quant model"
        lines += [f"### {title}", "",
                  "| engine | cosine | min cosine | " + " | ".join(heads) + " |",
                  "|---|---|---|" + "---|" * len(heads)]
        for eng, d in res["engines"].items():
            if ref not in d:
                continue
            r = d[ref]
            lines.append(f"| {eng} | {_fmt(r['embedding_cosine_mean'], 5)} | {_fmt(r['embedding_cosine_min'], 5)} | "
                         + " | ".join(_fmt(r.get(f"{h}_mae_vs_ref")) for h in heads) + " |")
        lines.append("")
    lab = [h for h in ("hr", "rr", "sbp", "dbp")
           if any(f"{h}_mae_vs_label" in d["vs_float"] for d in res["engines"].values())]
    if lab:
        lines += ["### against the labels (MAE, label units; in brackets: increase over float)", "",
                  "| engine | " + " | ".join(lab) + " |", "|---|" + "---|" * len(lab)]
        for eng, d in res["engines"].items():
            r = d["vs_float"]
            cells = []
            for h in lab:
                v = r.get(f"{h}_mae_vs_label")
                inc = r.get(f"{h}_mae_increase_vs_float")
                cells.append(f"{_fmt(v, 3)} ({inc:+.3f})" if v is not None and inc is not None else _fmt(v, 3))
            lines.append(f"| {eng} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### bit-exactness and size", "",
              "| file | bytes | BUILTIN_REF == TFLM | REF/TFLM mismatching int8 values (max diff) | "
              "XNNPACK == REF (share) |", "|---|---|---|---|---|"]
    for label, f in res["bit_exactness"].items():
        mm = f.get("ref_vs_tflm_mismatches")
        mtxt = "–" if mm is None else (", ".join(f"{k} {v}" for k, v in mm.items() if v) or "none") + \
            f" of {f.get('ref_vs_tflm_values')} ({f.get('ref_vs_tflm_max_abs_diff')})"
        lines.append(f"| {label} | {res['file_bytes'][label]} | {_fmt(f.get('ref_vs_tflm_bit_exact'))} | "
                     f"{mtxt} | {_fmt(f.get('xnnpack_vs_ref_identical_fraction'))} |")
    if "summary" in res:
        lines += ["", "### summary", "", "```", json.dumps(res["summary"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def write_reports(res: dict[str, Any], folder: str | Path) -> None:
    from anyppg.runs import atomic_write_json, atomic_write_text
    folder = Path(folder)
    atomic_write_json(folder / "parity.json", res)
    atomic_write_text(folder / "parity.md", markdown(res))
