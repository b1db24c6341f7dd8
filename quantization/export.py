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
                                quantisation and units, label_norm — the runtime never guesses
    audit.json                  op audit of both files (+ Edge TPU rules)
    qat_ranges.json             which TFLite tensor got which brevitas quantiser
    parity.json, parity.md      float / fake-quant / onnxruntime / LiteRT / TFLM parity
    manifest.json
    onnx2tf_full_integer_quant.tflite   onnx2tf's untouched output (only with keep_raw)

Fails before conversion, naming the layer, if the checkpoint is not a registered student or
its architecture has an op the int8 path cannot carry.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyppg.config import ConfigError, load_config, to_dict
from anyppg.runs import atomic_dir, atomic_write_json, write_manifest

from edge_runtime import interpreters as interp, tflite_file as tff

from . import op_audit, parity, qat_ranges, tflite_edit as tedit
from .onnx_export import INPUT_NAME, export_onnx, run_onnx
from .qat import QATModel, head_labels, load_qat_run
from .qmodel import Int8PathError, deployable_float, quant_spec
from .student_io import StudentLoadError, label_norm_simple
from .tflite_convert import ConversionError, convert

UNITS = {"embedding": "embedding", "hr": "bpm", "rr": "breaths/min", "af_logit": "logit",
         "quality_logit": "logit", "sbp": "mmHg", "dbp": "mmHg"}


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


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _onnx2tf_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("onnx2tf")
    except Exception:  # noqa: BLE001
        return None


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def pick_rows(n_total: int, n: int, seed: int) -> np.ndarray:
    """A sorted, seeded choice of n rows out of n_total (all of them if fewer)."""
    if n_total > n:
        return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))
    return np.arange(n_total)


def pick_windows(store, n: int, seed: int) -> np.ndarray:
    x = store.column("ppg").astype(np.float32)
    return np.ascontiguousarray(x[pick_rows(len(x), n, seed)])


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


def sidecar(tfl: bytes, file_name: str, names: list[str], student, cfg_extra: dict) -> dict:
    model = tff.load_model(tfl)
    io = tff.io_binding(model)
    inp = io["inputs"][0]
    outs = []
    for pos, e in enumerate(io["outputs"]):
        outs.append({"name": names[pos], "position": pos, "index": e["index"],
                     "signature_name": e["signature_name"], "shape": e["shape"], "dtype": e["dtype"],
                     "scale": e["scale"], "zero_point": e["zero_point"],
                     "unit": UNITS.get(names[pos], ""),
                     "dequantize": "real = scale * (q - zero_point)"})
    return {
        "schema_version": 1,
        "file": file_name,
        "sha256": _sha(tfl),
        "bytes": len(tfl),
        "student": student.name,
        "model_config": student.config,
        "spec": student.spec.to_dict(),
        "input": {"name": inp["tensor_name"], "index": inp["index"], "position": 0, "shape": inp["shape"],
                  "layout": "NWC (batch, samples, channels)", "dtype": inp["dtype"],
                  "scale": inp["scale"], "zero_point": inp["zero_point"],
                  "quantize": "q = clamp(round_half_away(x / scale) + zero_point, -128, 127) on the "
                              "preprocessed (band-passed, z-scored) window of edge_runtime"},
        "outputs": outs,
        "label_norm": label_norm_simple(student.label_norm),
        "denormalised_in_graph": True,
        "denormalisation_note": "regression heads already output label units (label_norm is folded "
                                "into the head layers); label_norm is recorded for reference",
        **cfg_extra,
    }


# ----------------------------------------------------------------------------- main flow
def run_export(cfg: ExportConfig, src: Path, data: Path, out: Path, overwrite: bool = False,
               quiet: bool = False) -> dict:
    from training.models.student import StudentOutput
    from training.data.store import WindowStore

    def say(msg):
        if not quiet:
            print(f"[export] {msg}", file=sys.stderr)

    t_all = time.perf_counter()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    m: QATModel = load_qat_run(src)          # refuses non-students / ops off the int8 path
    student, folded, qg = m.student, m.folded, m.qg
    train = WindowStore(data, split="train")
    if train.spec.ppg_len != student.spec.ppg_len or train.spec.ppg_fs != student.spec.ppg_fs:
        raise ValueError(f"{data}: windows are {train.spec.ppg_fs} Hz x {train.spec.ppg_len}, the student "
                         f"expects {student.spec.ppg_fs} Hz x {student.spec.ppg_len}")
    calib = pick_windows(train, cfg.calib_windows, cfg.seed)
    sample = torch.from_numpy(calib[:1]).unsqueeze(1)
    names = list(StudentOutput._fields)
    spec = quant_spec(qg, sample)
    dep = deployable_float(folded, qg, sample)

    timings: dict[str, float] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        t = time.perf_counter()
        export_onnx(dep, tmp / "model.onnx", student.spec.ppg_len, output_names=names)
        timings["onnx_s"] = time.perf_counter() - t
        # the ONNX must compute what the deployable torch graph computes
        xb = calib[: cfg.bind_windows]
        onnx_out = run_onnx(tmp / "model.onnx", xb[:, None, :])
        with torch.no_grad():
            dep_out = [o.numpy() for o in dep(torch.from_numpy(xb).unsqueeze(1))]
        onnx_err = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-6)) for a, b in zip(onnx_out, dep_out))
        if onnx_err > 1e-3:
            raise ValueError(f"model.onnx disagrees with the torch graph (relative error {onnx_err:.2e})")

        say(f"onnx2tf on {len(calib)} calibration windows ...")
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
        binding, bind_info = bind_outputs(res.tflite, onnx_out, names, xb)
        tfl = res.tflite
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
        calib_file = finalize_io(tfl, binding, names)
        # tensor indices are unchanged by the rewrites above; outputs are now in field order
        out_points = {binding[n]: spec["outputs"][n] for n in names if spec["outputs"].get(n)}
        t = time.perf_counter()
        qat_file, rng_report = qat_ranges.apply_qat_ranges(calib_file, spec, output_points=out_points)
        timings["qat_ranges_s"] = time.perf_counter() - t

        (tmp / "model_int8_calib.tflite").write_bytes(calib_file)
        (tmp / "model_int8.tflite").write_bytes(qat_file)
        audits = {"model_int8.tflite": op_audit.audit(qat_file),
                  "model_int8_calib.tflite": op_audit.audit(calib_file)}
        bad = [f"{k}: {a['errors'][0]}" for k, a in audits.items() if not a["ok"]]
        if bad:
            raise ValueError(f"op audit failed: {bad[0]}")
        atomic_write_json(tmp / "audit.json", {k: {kk: vv for kk, vv in a.items() if kk != "op_sequence"}
                                               for k, a in audits.items()})
        atomic_write_json(tmp / "qat_ranges.json", rng_report)

        extra = {"source_qat_run": str(Path(src).resolve()),
                 "converter": {"onnx2tf_command": ["onnx2tf"] + list(res.args),
                               "onnx2tf_version": _onnx2tf_version()}}
        atomic_write_json(tmp / "model_int8.json",
                          sidecar(qat_file, "model_int8.tflite", names, student,
                                  {**extra, "quantisation": "QAT-faithful: activation ranges, weights and "
                                   "biases from brevitas QAT"}))
        atomic_write_json(tmp / "model_int8_calib.json",
                          sidecar(calib_file, "model_int8_calib.tflite", names, student,
                                  {**extra, "quantisation": "plain: TFLite calibration on store windows"}))

        say("parity ...")
        t = time.perf_counter()
        try:
            held = WindowStore(data, split=cfg.parity_split)
        except ValueError:
            held = None
        if held is None or len(held) == 0:
            held, held_split = train, "train"
        else:
            held_split = cfg.parity_split
        rows_sel = pick_rows(len(held), cfg.parity_windows, cfg.seed + 1)
        px = np.ascontiguousarray(held.column("ppg").astype(np.float32)[rows_sel])
        ys, _ = head_labels(held, student)
        ys = ys[rows_sel]
        labels = {f: ys[:, i] for i, f in enumerate(names[1:]) if f in ("hr", "rr", "sbp", "dbp")}
        io_q = tff.io_binding(tff.load_model(qat_file))
        pos_binding = {n: io_q["outputs"][k]["index"] for k, n in enumerate(names)}
        par = parity.run_parity(student.model, qg, tmp / "model.onnx",
                                {"qat": qat_file, "calib": calib_file},
                                {"qat": pos_binding, "calib": pos_binding}, px, labels, names,
                                tflm=cfg.tflm)
        par["split"] = held_split
        par["summary"] = parity.summary(par)
        parity.write_reports(par, tmp)
        timings["parity_s"] = time.perf_counter() - t

        # one self-describing file for a watch app: the sidecar also inside the .tflite metadata
        import json
        for stem in ("model_int8", "model_int8_calib"):
            emb, ext = tedit.embed_sidecar((tmp / f"{stem}.tflite").read_bytes(),
                                           json.loads((tmp / f"{stem}.json").read_text()))
            (tmp / f"{stem}.tflite").write_bytes(emb)
            atomic_write_json(tmp / f"{stem}.json", ext)
        qat_file, calib_file = ((tmp / f).read_bytes() for f in ("model_int8.tflite", "model_int8_calib.tflite"))
        metrics = {"summary": par["summary"], "timings": timings,
                   "file_bytes": {"model_int8.tflite": len(qat_file), "model_int8_calib.tflite": len(calib_file),
                                  "model.onnx": (tmp / "model.onnx").stat().st_size},
                   "ops": audits["model_int8.tflite"]["ops"],
                   "edgetpu": audits["model_int8.tflite"]["edgetpu"],
                   "depthwise_rewrite": dw_info, "gather_index_fixes": n_gather,
                   "output_binding": {"binding": binding, **bind_info},
                   "determinism": determinism,
                   "weights_changed_vs_calibration": rng_report["weights_changed_vs_calibration"],
                   "weight_mismatch_layers": rng_report["weight_mismatch_layers"],
                   "bias_saturated": rng_report["bias_saturated"]}
        timings["total_s"] = time.perf_counter() - t_all
        write_manifest(tmp, "export", to_dict(cfg),
                       {"qat_checkpoint": str(m.student.path), "store_index": str(Path(data) / "index.json")},
                       metrics, extra={"store": str(Path(data).resolve()), "model_name": student.name,
                                       "files": {"model_int8.tflite": _sha(qat_file),
                                                 "model_int8_calib.tflite": _sha(calib_file)}})
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg export", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="src", required=True, help="QAT run folder")
    p.add_argument("--data", required=True, help="window store (train: calibration; test: parity)")
    p.add_argument("--out", required=True, help="export folder")
    p.add_argument("--config", default=None, help="configs/export/<name>.yaml or a path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_config(ExportConfig(), "export", args.config, args.set)
        metrics = run_export(cfg, Path(args.src), Path(args.data), Path(args.out), args.overwrite, args.quiet)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, ConversionError,
            Int8PathError, StudentLoadError, qat_ranges.RangeMappingError) as e:
        print(f"anyppg export: error: {_one_line(e)}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(json.dumps({"summary": metrics["summary"], "file_bytes": metrics["file_bytes"],
                          "timings": metrics["timings"]}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
