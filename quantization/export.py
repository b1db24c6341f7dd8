"""`anyppg export`: QAT student -> ONNX -> onnx2tf full-int8 TFLite -> QAT ranges -> audit -> parity.

    anyppg export --from runs/x/qat --data stores/x --out runs/x/export [--config default]

Writes into --out (built in a temp folder, renamed into place only when everything passed):

    model.onnx                  plain float ONNX (opset 13) of the BN-folded student carrying
                                the QAT weights (dequantised brevitas integers)
    model_int8_calib.tflite     onnx2tf + TFLite calibration on store windows (plain route),
                                depthwise convs as DEPTHWISE_CONV_2D, I/O named and ordered
    model_int8.tflite           the same file with the QAT activation ranges, weights and
                                int32 biases written in (computes what was trained)
    model_int8.json             sidecar of model_int8.tflite: signal spec, input quantisation,
    model_int8_calib.json       outputs bound by name to tensor index and position, output
                                quantisation and units, label_norm, the decision thresholds,
                                the HR refinement and the default polarity chosen on
                                validation windows (quantization.decision) — the runtime
                                never guesses
    audit.json                  op audit of both files (+ Edge TPU rules)
    qat_ranges.json             which TFLite tensor got which brevitas quantiser
    parity.json, parity.md      float / fake-quant / onnxruntime / LiteRT / TFLM parity
    manifest.json
    onnx2tf_full_integer_quant.tflite   onnx2tf's untouched output (only with keep_raw)

Fails before conversion, naming the layer, if the checkpoint is not a registered student or
its architecture has an op the int8 path cannot carry.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyppg.config import to_dict
from anyppg.runs import atomic_dir, atomic_write_json, write_manifest
from anyppg.stage import add_run_io, one_line, run_stage, stage_config, stage_parser
from edge_runtime import interpreters as interp, tflite_file as tff
from edge_runtime.af_beats import AFBeats, AFBeatsConfigError
from edge_runtime.contract import (DEFAULT_DECISION, HR_CONFIDENT_WITHIN_BPM, OUTPUTS,
                                    SIDECAR_SCHEMA_VERSION, UNITS)
from training.checkpoint import StudentLoadError, label_norm_simple
from training.data.store import WindowStore
from training.heads import label_matrix
from training.models.student import HEAD_FIELDS, HEAD_NAMES, REGRESSION_HEADS

from . import op_audit, parity, qat_ranges, tflite_edit as tedit
from .onnx_export import INPUT_NAME, export_onnx, run_onnx
from .decision import DecisionConfig, choose_decision
from .qat_model import QATModel, load_qat_run
from .qmodel import Int8PathError, deployable_float, quant_spec
from .tflite_convert import ConversionError, convert


@dataclass
class ExportConfig:
    calib_windows: int = 256        # training windows TFLite calibrates the plain file on
    parity_windows: int = 256       # held-out windows scored by parity
    parity_split: str = "test"
    bind_windows: int = 32          # windows used to bind TFLite outputs to ONNX outputs
    depthwise: bool = True          # rewrite grouped CONV_2D -> DEPTHWISE_CONV_2D
    tflm: bool = True               # run TFLite Micro in parity
    check_determinism: bool = False  # convert twice, require byte-identical files
    keep_raw: bool = False          # also keep onnx2tf's own file (onnx2tf_full_integer_quant.tflite)
    timeout_s: float = 600.0
    seed: int = 0
    # The sidecar's "decision", "hr_refine" and "polarity" blocks, chosen on this split of the
    # store with the QAT fake-quant outputs (quantization.decision): hr_confidence_min is the
    # lowest threshold at which the kept windows have HR MAE <= hr_mae_target_bpm keeping >=
    # decision_min_coverage, else the one keeping decision_fallback_coverage; hr_refine (the
    # spectral refinement of edge_runtime.hr_refine) is written only where a setting of its grid
    # lowers the HR MAE; polarity's default is "auto" only where its vote is right on nearly
    # every recording of the split.
    decision_split: str = "val"
    hr_mae_target_bpm: float = HR_CONFIDENT_WITHIN_BPM / 2
    decision_min_coverage: float = 0.5
    decision_fallback_coverage: float = 0.8
    hr_refine: bool = True
    # The sidecar's "af_beats" block (edge_runtime.af_beats: the beat rate shown where af_prob
    # reaches af_beats_min_prob), written as configured: its settings were chosen on validation
    # stores beyond the export's own (configs/export/wrist-s.yaml says which). 0 writes none.
    af_beats_min_prob: float = 0.0
    af_beats_fraction: float = 0.2
    af_beats_chosen_on: str = ""


def _onnx2tf_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("onnx2tf")
    except Exception:  # noqa: BLE001
        return None


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------- output binding
def bind_outputs(tfl: bytes, onnx_out: list[np.ndarray], names: list[str], x: np.ndarray
                 ) -> tuple[dict[str, int], dict[str, Any]]:
    """{output name: TFLite tensor index}: each ONNX output goes to the TFLite output of the same
    size whose values (LiteRT reference kernels, same windows) are closest (normalised MSE),
    one-to-one; onnx2tf's signature name output_<k> must agree. Raises ValueError if not."""
    model = tff.load_model(tfl)
    io = tff.io_binding(model)
    it = interp.litert(tfl, ref=True)
    raw = interp.run_int8(it, x)
    det = it.get_output_details()
    got = {}
    for d, r in zip(det, raw):
        s, z = d["quantization"]
        got[d["index"]] = interp.dequantize(r, s, z).reshape(len(x), -1)
    sig = {e["index"]: e["signature_name"] for e in io["outputs"]}
    scores = []
    for k, (name, ref) in enumerate(zip(names, onnx_out)):
        ref = ref.reshape(len(x), -1)
        for ti, g in got.items():
            if g.shape != ref.shape:
                continue
            nmse = float(np.mean((g - ref) ** 2) / (np.var(ref) + 1e-12 + 1e-6 * np.mean(ref ** 2)))
            tie = 0 if sig.get(ti) == f"output_{k}" else 1
            scores.append((nmse, tie, name, ti))
    scores.sort()
    binding: dict[str, int] = {}
    used: set[int] = set()
    for nmse, tie, name, ti in scores:
        if name in binding or ti in used:
            continue
        binding[name] = ti
        used.add(ti)
    missing = [n for n in names if n not in binding]
    if missing:
        raise ValueError(f"TFLite outputs could not be bound to {missing}")
    agree = all(sig.get(binding[n]) == f"output_{k}" for k, n in enumerate(names))
    info = {"signature_agrees": bool(agree),
            "nmse": {n: float(min(s[0] for s in scores if s[2] == n and s[3] == binding[n])) for n in names}}
    if not agree:
        info["signature_names"] = {n: sig.get(binding[n]) for n in names}
    return binding, info


def finalize_io(tfl: bytes, binding: dict[str, int], names: list[str], input_name: str = INPUT_NAME) -> bytes:
    """Name the input `ppg` and each output by its field, and order the subgraph's outputs (and
    the signature) in field order: output k of every runtime is field k."""
    model = tff.load_model(tfl)
    sg = model.subgraphs[0]
    order = [binding[n] for n in names]
    if sorted(order) != sorted(int(i) for i in sg.outputs):
        raise ValueError("binding does not cover the graph outputs")
    sg.outputs = np.asarray(order, np.int32)
    tedit.rename_io(model, {int(sg.inputs[0]): input_name}, {binding[n]: n for n in names})
    for sd in model.signatureDefs or []:
        by_idx = {int(t.tensorIndex): t for t in sd.outputs}
        sd.outputs = [by_idx[i] for i in order if i in by_idx]
    return tedit.save_model(model)


def sidecar(tfl: bytes, file_name: str, names: list[str], student, cfg_extra: dict,
            device: dict[str, dict] | None = None) -> dict:
    """The schema-2 sidecar (edge_runtime.contract): inputs and outputs by name, with unit and
    kind, and the blocks a device reads (`device`, from quantization.decision): the decision
    thresholds it withholds numbers with and, where the export chose them, the HR refinement
    it applies (edge_runtime.hr_refine), the stream's default polarity and the beat count in AF
    (edge_runtime.af_beats)."""
    device = device or {}
    model = tff.load_model(tfl)
    io = tff.io_binding(model)
    inp = io["inputs"][0]
    outs = []
    for pos, e in enumerate(io["outputs"]):
        outs.append({"name": names[pos], "position": pos, "index": e["index"],
                     "signature_name": e["signature_name"], "shape": e["shape"], "dtype": e["dtype"],
                     "scale": e["scale"], "zero_point": e["zero_point"],
                     "unit": UNITS.get(names[pos], ""), "kind": OUTPUTS[names[pos]].kind,
                     "dequantize": "real = scale * (q - zero_point)"})
    return {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "file": file_name,
        "sha256": _sha(tfl),
        "bytes": len(tfl),
        "student": student.name,
        "model_config": student.config,
        "spec": student.spec.to_dict(),
        "inputs": [{"name": inp["tensor_name"], "index": inp["index"], "position": 0,
                    "shape": inp["shape"], "layout": "NWC", "dtype": inp["dtype"],
                    "scale": inp["scale"], "zero_point": inp["zero_point"],
                    "unit": UNITS.get(inp["tensor_name"], ""), "kind": "signal",
                    "quantize": "q = clamp(round_half_away(x / scale) + zero_point, -128, 127) on "
                                "the preprocessed (band-passed, z-scored) window of edge_runtime"}],
        "outputs": outs,
        "decision": dict(device.get("decision") or DEFAULT_DECISION),
        **{k: device[k] for k in ("hr_refine", "polarity", "af_beats") if device.get(k)},
        "label_norm": label_norm_simple(student.label_norm),
        "denormalised_in_graph": True,
        "denormalisation_note": "regression heads already output label units (label_norm is folded "
                                "into the head layers); label_norm is recorded for reference",
        **cfg_extra,
    }


# ----------------------------------------------------------------------------- main flow
def _check_onnx(path: Path, dep, xb: np.ndarray) -> list[np.ndarray]:
    """The ONNX outputs on windows xb (N, L); it must compute what the deployable torch graph
    computes."""
    onnx_out = run_onnx(path, xb[:, None, :])
    with torch.no_grad():
        dep_out = [o.numpy() for o in dep(torch.from_numpy(xb).unsqueeze(1))]
    onnx_err = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-6)) for a, b in zip(onnx_out, dep_out))
    if onnx_err > 1e-3:
        raise ValueError(f"model.onnx disagrees with the torch graph (relative error {onnx_err:.2e})")
    return onnx_out


def _convert(cfg: ExportConfig, tmp: Path, calib: np.ndarray, timings: dict):
    """onnx2tf's int8 file (and, if asked, proof that a second conversion is byte-identical)."""
    res = convert(tmp / "model.onnx", calib, timeout_s=cfg.timeout_s)
    timings["onnx2tf_s"] = res.seconds
    determinism = None
    if cfg.check_determinism:
        res2 = convert(tmp / "model.onnx", calib, timeout_s=cfg.timeout_s)
        determinism = {"byte_identical": res2.tflite == res.tflite, "sha256": _sha(res.tflite)}
        if res2.tflite != res.tflite:
            raise ConversionError("onnx2tf output differs between two identical runs (nondeterministic)")
    if cfg.keep_raw:
        (tmp / "onnx2tf_full_integer_quant.tflite").write_bytes(res.tflite)
    return res, determinism


def _rewrite(cfg: ExportConfig, tfl: bytes, xb: np.ndarray) -> tuple[bytes, dict, int]:
    """Grouped CONV_2D -> DEPTHWISE_CONV_2D (proved output-identical) and GATHER index fixes."""
    dw_info = {"rewritten": [], "skipped": []}
    if cfg.depthwise:
        before = tfl
        tfl, dw_info = op_audit.grouped_to_depthwise(tfl)
        if dw_info["rewritten"]:
            v = op_audit.verify_same_outputs(before, tfl, xb[:8], tflm=cfg.tflm)
            dw_info["verified"] = v
            if not v["litert_ref_identical"] or not v.get("tflm_identical", True):
                raise ValueError("grouped->depthwise rewrite changed the outputs on the reference kernels")
    tfl, n_gather = op_audit.fix_gather_indices(tfl)
    return tfl, dw_info, n_gather


def _audit(tmp: Path, qat_file: bytes, calib_file: bytes) -> dict:
    audits = {"model_int8.tflite": op_audit.audit(qat_file),
              "model_int8_calib.tflite": op_audit.audit(calib_file)}
    bad = [f"{k}: {a['errors'][0]}" for k, a in audits.items() if not a["ok"]]
    if bad:
        raise ValueError(f"op audit failed: {bad[0]}")
    atomic_write_json(tmp / "audit.json", {k: {kk: vv for kk, vv in a.items() if kk != "op_sequence"}
                                           for k, a in audits.items()})
    return audits


def held_out_store(data: Path, split: str) -> WindowStore:
    """The store split parity is measured on. A missing, mistyped or empty split, or 'train',
    is an error: parity measured on training windows would flatter the int8 file."""
    if split == "train":
        raise ValueError("parity_split=train: parity must be measured on held-out windows (val or test)")
    try:
        held = WindowStore(data, split=split)
    except ValueError as e:
        raise ValueError(f"{data}: no {split!r} split to measure parity on ({one_line(e)}); "
                         f"set parity_split to a held-out split of the store") from None
    if len(held) == 0:
        raise ValueError(f"{data}: split {split!r} has no windows to measure parity on; "
                         f"set parity_split to a held-out split of the store")
    return held


def _parity(cfg: ExportConfig, tmp: Path, m: QATModel, held: WindowStore,
            files: dict[str, bytes], names: list[str]) -> dict:
    """Parity of every engine on `parity_windows` windows of the held-out split."""
    held_split = cfg.parity_split
    rows_sel, px = held.sample_ppg(cfg.parity_windows, cfg.seed + 1)
    ys, _ = label_matrix(held, m.student.label_norm, m.student.model)
    ys = ys[rows_sel]
    labels = {HEAD_FIELDS[h]: ys[:, i] for i, h in enumerate(HEAD_NAMES)
              if h in REGRESSION_HEADS and HEAD_FIELDS[h] in names}
    io_q = tff.io_binding(tff.load_model(files["qat"]))
    pos_binding = {n: io_q["outputs"][k]["index"] for k, n in enumerate(names)}
    par = parity.run_parity(m.student.model, m.qg, tmp / "model.onnx", files,
                            {k: pos_binding for k in files}, px, labels, names, tflm=cfg.tflm)
    par["split"] = held_split
    par["summary"] = parity.summary(par)
    parity.write_reports(par, tmp)
    return par


def _decision_config(cfg: ExportConfig) -> DecisionConfig:
    return DecisionConfig(split=cfg.decision_split, max_windows=cfg.parity_windows * 4, seed=cfg.seed,
                          hr_mae_target_bpm=cfg.hr_mae_target_bpm, min_coverage=cfg.decision_min_coverage,
                          fallback_coverage=cfg.decision_fallback_coverage, refine=cfg.hr_refine)


def _load(cfg: ExportConfig, src: Path, data: Path, out: Path, overwrite: bool):
    """The QAT student (refusing non-students and ops off the int8 path), the training store
    (same signal spec) and the calibration windows."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    if cfg.af_beats_min_prob:                         # a bad block fails before any conversion
        AFBeats(min_af_prob=cfg.af_beats_min_prob, fraction=cfg.af_beats_fraction)
    m: QATModel = load_qat_run(src)
    train = WindowStore(data, split="train")
    m.student.spec.check_compatible(train.spec, f"store {data}")
    held = held_out_store(data, cfg.parity_split)     # before minutes of conversion
    _, calib = train.sample_ppg(cfg.calib_windows, cfg.seed)
    return m, held, calib


def run_export(cfg: ExportConfig, src: Path, data: Path, out: Path, overwrite: bool = False,
               quiet: bool = False) -> dict:
    def say(msg):
        if not quiet:
            print(f"[export] {msg}", file=sys.stderr)

    t_all = time.perf_counter()
    m, held, calib = _load(cfg, src, data, out, overwrite)
    student = m.student
    sample = torch.from_numpy(calib[:1]).unsqueeze(1)
    names = list(student.model.output_fields)
    spec = quant_spec(m.qg, sample)
    dep = deployable_float(m.folded, m.qg, sample)
    timings: dict[str, float] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        t = time.perf_counter()
        export_onnx(dep, tmp / "model.onnx", student.spec.ppg_len, output_names=names)
        timings["onnx_s"] = time.perf_counter() - t
        xb = calib[: cfg.bind_windows]
        onnx_out = _check_onnx(tmp / "model.onnx", dep, xb)
        say(f"onnx2tf on {len(calib)} calibration windows ...")
        res, determinism = _convert(cfg, tmp, calib, timings)
        binding, bind_info = bind_outputs(res.tflite, onnx_out, names, xb)
        tfl, dw_info, n_gather = _rewrite(cfg, res.tflite, xb)
        calib_file = finalize_io(tfl, binding, names)
        # tensor indices are unchanged by the rewrites above; outputs are now in field order
        out_points = {binding[n]: spec["outputs"][n] for n in names if spec["outputs"].get(n)}
        t = time.perf_counter()
        qat_file, rng_report = qat_ranges.apply_qat_ranges(calib_file, spec, output_points=out_points)
        timings["qat_ranges_s"] = time.perf_counter() - t
        (tmp / "model_int8_calib.tflite").write_bytes(calib_file)
        (tmp / "model_int8.tflite").write_bytes(qat_file)
        audits = _audit(tmp, qat_file, calib_file)
        atomic_write_json(tmp / "qat_ranges.json", rng_report)
        device, decision_report = choose_decision(_decision_config(cfg), m, data)
        if cfg.af_beats_min_prob > 0:
            device["af_beats"] = AFBeats(min_af_prob=cfg.af_beats_min_prob, fraction=cfg.af_beats_fraction,
                                         chosen_on=cfg.af_beats_chosen_on).to_dict()
        _write_sidecars(tmp, src, res, names, student, qat_file, calib_file, device)
        say("parity ...")
        t = time.perf_counter()
        par = _parity(cfg, tmp, m, held, {"qat": qat_file, "calib": calib_file}, names)
        timings["parity_s"] = time.perf_counter() - t
        qat_file, calib_file = _embed_sidecars(tmp)
        metrics = {"summary": par["summary"], "timings": timings,
                   "file_bytes": {"model_int8.tflite": len(qat_file), "model_int8_calib.tflite": len(calib_file),
                                  "model.onnx": (tmp / "model.onnx").stat().st_size},
                   "ops": audits["model_int8.tflite"]["ops"],
                   "edgetpu": audits["model_int8.tflite"]["edgetpu"],
                   "depthwise_rewrite": dw_info, "gather_index_fixes": n_gather,
                   "output_binding": {"binding": binding, **bind_info},
                   "determinism": determinism, "decision": decision_report,
                   "weights_changed_vs_calibration": rng_report["weights_changed_vs_calibration"],
                   "weight_mismatch_layers": rng_report["weight_mismatch_layers"],
                   "bias_saturated": rng_report["bias_saturated"]}
        timings["total_s"] = time.perf_counter() - t_all
        write_manifest(tmp, "export", to_dict(cfg),
                       {"qat_checkpoint": str(student.path), "store_index": str(Path(data) / "index.json")},
                       metrics, extra={"store": str(Path(data).resolve()), "model_name": student.name,
                                       "files": {"model_int8.tflite": _sha(qat_file),
                                                 "model_int8_calib.tflite": _sha(calib_file)}})
    return metrics


def _write_sidecars(tmp: Path, src: Path, res, names: list[str], student, qat_file: bytes,
                    calib_file: bytes, device: dict[str, dict]) -> None:
    extra = {"source_qat_run": str(Path(src).resolve()),
             "converter": {"onnx2tf_command": ["onnx2tf"] + list(res.args),
                           "onnx2tf_version": _onnx2tf_version()}}
    atomic_write_json(tmp / "model_int8.json",
                      sidecar(qat_file, "model_int8.tflite", names, student,
                              {**extra, "quantisation": "QAT-faithful: activation ranges, weights and "
                               "biases from brevitas QAT"}, device))
    atomic_write_json(tmp / "model_int8_calib.json",
                      sidecar(calib_file, "model_int8_calib.tflite", names, student,
                              {**extra, "quantisation": "plain: TFLite calibration on store windows"},
                              device))


def _embed_sidecars(tmp: Path) -> tuple[bytes, bytes]:
    """One self-describing file for a watch app: each sidecar also inside its .tflite's metadata.
    Returns the final (model_int8, model_int8_calib) bytes."""
    import json
    for stem in ("model_int8", "model_int8_calib"):
        emb, ext = tedit.embed_sidecar((tmp / f"{stem}.tflite").read_bytes(),
                                       json.loads((tmp / f"{stem}.json").read_text()))
        (tmp / f"{stem}.tflite").write_bytes(emb)
        atomic_write_json(tmp / f"{stem}.json", ext)
    return tuple((tmp / f"{stem}.tflite").read_bytes() for stem in ("model_int8", "model_int8_calib"))


def main(argv=None) -> int:
    p = stage_parser("anyppg export", __doc__, config_stage="export")
    add_run_io(p, src="QAT run folder", data="window store (train: calibration; test: parity)",
               out="export folder", overwrite=True)
    args = p.parse_args(argv)
    return run_stage("anyppg export",
                     lambda: run_export(stage_config(ExportConfig(), "export", args), Path(args.src),
                                        Path(args.data), Path(args.out), args.overwrite, args.quiet),
                     errors=(ConversionError, Int8PathError, StudentLoadError, qat_ranges.RangeMappingError,
                             AFBeatsConfigError),
                     quiet=args.quiet, show=lambda m: {"summary": m["summary"], "file_bytes": m["file_bytes"],
                                                       "timings": m["timings"]})


if __name__ == "__main__":
    sys.exit(main())
