"""Carry what QAT learned into the .tflite: activation ranges, weights, biases.

onnx2tf + TFLite's converter recover brevitas' integer weights, but every activation scale and
zero point in the file comes from TFLite's own calibration, not from QAT — so the shipped file
does not compute what was trained. `apply_qat_ranges` rewrites the flatbuffer so it does:

* every activation tensor gets the scale / zero point of the brevitas quantiser it
  corresponds to (uint8 quantisers map to int8 with zero point - 128);
* every conv / depthwise / fully-connected op gets brevitas' int8 weights and per-channel
  scales exactly, and int32 biases = brevitas' integers, with bias scale = input scale x
  weight scale per channel (TFLite's rule; the input scale is now the QAT one).

Mapping TFLite tensors to brevitas quantisers — by structure, never by name or position:
* conv / depthwise / FC ops are matched to torch layers by their integer weights (exact
  equality after the layout change: CONV_2D [O,1,K,I] <-> Conv1d (O,I,K); DEPTHWISE_CONV_2D
  [1,1,K,C] <-> (C,1,K); FULLY_CONNECTED [O,I] <-> Linear (O,I));
* an op's output is the quantiser (layer, fused activation) — NONE -> the layer's plain
  quantiser, RELU/RELU6 -> the one after the activation (TFLite duplicates a layer whose output
  is used both raw and through a ReLU; brevitas has both quantisers, see qmodel);
* an ADD's output is the add-quantiser whose two inputs are the ADD's inputs' quantisers;
* SOFTMAX / LOGISTIC outputs are the fixed 1/256 grid quantisers (qmodel.FixedQuant) fed by
  their input's quantiser;
* RESHAPE, MAX/AVERAGE_POOL_2D, PAD, SQUEEZE, EXPAND_DIMS, GATHER, STRIDED_SLICE keep their
  input's quantisation (TFLite requires it);
* consistency checks: each layer's input tensor must map to the quantiser brevitas feeds that
  layer with, every activation tensor must be mapped, and each output tensor must map to the
  quantiser of the output it is bound to. Any failure raises RangeMappingError.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime import tflite_file as tff

from . import tflite_edit as tedit


LAYER_OPS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "linear"}
SAME_QUANT_OPS = {"RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "SQUEEZE", "EXPAND_DIMS",
                  "GATHER", "STRIDED_SLICE", "SLICE"}
ACT_OF_FUSED = {"NONE": "none", "RELU": "relu", "RELU6": "relu6"}


class RangeMappingError(ValueError):
    pass


def tflite_weight_to_torch(kind: str, w: np.ndarray) -> np.ndarray:
    """TFLite filter layout -> torch weight layout (see module doc)."""
    if kind == "CONV_2D":           # [O, 1, K, I] -> (O, I, K)
        return np.ascontiguousarray(w[:, 0, :, :].transpose(0, 2, 1))
    if kind == "DEPTHWISE_CONV_2D":  # [1, 1, K, C] -> (C, 1, K)
        return np.ascontiguousarray(w[0, 0, :, :].T[:, None, :])
    if kind == "FULLY_CONNECTED":
        return w
    raise ValueError(kind)


def torch_weight_to_tflite(kind: str, w: np.ndarray) -> np.ndarray:
    if kind == "CONV_2D":           # (O, I, K) -> [O, 1, K, I]
        return np.ascontiguousarray(w.transpose(0, 2, 1)[:, None, :, :])
    if kind == "DEPTHWISE_CONV_2D":  # (C, 1, K) -> [1, 1, K, C]
        return np.ascontiguousarray(w[:, 0, :].T[None, None, :, :])
    if kind == "FULLY_CONNECTED":
        return np.ascontiguousarray(w)
    raise ValueError(kind)


def _fused(op) -> str:
    o = op.builtinOptions
    code = getattr(o, "fusedActivationFunction", 0) if o is not None else 0
    name = tff.act_names().get(int(code), str(code))
    if name not in ACT_OF_FUSED:
        raise RangeMappingError(f"fused activation {name} has no brevitas counterpart here")
    return ACT_OF_FUSED[name]


def map_tensors(model, spec: dict[str, Any]) -> tuple[dict[int, str], dict[int, str], dict]:
    """(tensor -> quant point, op -> layer name, stats). See module doc for the rules."""
    sg = model.subgraphs[0]
    points = spec["points"]
    layers = spec["layers"]
    point_of: dict[int, str] = {}
    layer_of_op: dict[int, str] = {}
    used_layers: set[str] = set()
    weight_mismatch: dict[str, int] = {}

    def find_point(**want) -> str:
        hits = [n for n, p in points.items()
                if all((sorted(p[k]) == sorted(v)) if k == "inputs" else p[k] == v
                       for k, v in want.items())]
        if len(hits) != 1:
            raise RangeMappingError(f"{len(hits)} brevitas quantisers match {want}")
        return hits[0]

    inputs = [int(i) for i in sg.inputs]
    if len(inputs) != 1:
        raise RangeMappingError(f"expected one graph input, found {len(inputs)}")
    point_of[inputs[0]] = find_point(role="input")

    for i, op in enumerate(sg.operators):
        name = tff.opcode_name(model, op)
        ins = [int(t) for t in op.inputs]
        outs = [int(t) for t in op.outputs]
        if name in LAYER_OPS:
            w = tff.buffer_array(model, ins[1])
            if w is None:
                raise RangeMappingError(f"op {i} {name}: filter is not a constant")
            wt = tflite_weight_to_torch(name, w)
            kind = LAYER_OPS[name]
            cands = [ln for ln, L in layers.items() if L["weight_int"].shape == wt.shape
                     and (L["kind"] == kind or (kind == "conv" and L["kind"] == "depthwise"))]
            exact = [ln for ln in cands if np.array_equal(layers[ln]["weight_int"], wt)]
            if not exact:
                # TFLite's converter widens a layer's weight scale when the int32 bias would not
                # fit otherwise (large bias, small input scale: e.g. a head whose bias carries a
                # label mean); the integers then differ but the real-valued weights agree to
                # within half a step of the coarser scale.
                wq = tff.quant_of(sg.tensors[ins[1]])
                dim = wq[2]
                s_t = np.asarray(wq[0], np.float64)
                s_t_v = s_t.reshape([-1 if d == dim else 1 for d in range(w.ndim)])
                w_real = tflite_weight_to_torch(name, (w.astype(np.float64) * s_t_v))
                for ln in cands:
                    L = layers[ln]
                    sb = np.asarray(L["weight_scale"], np.float64).reshape(-1, *([1] * (wt.ndim - 1)))
                    b_real = L["weight_int"].astype(np.float64) * sb
                    tol = 0.51 * np.maximum(sb, tflite_weight_to_torch(name, np.broadcast_to(
                        s_t_v, w.shape)).max(axis=tuple(range(1, wt.ndim)), keepdims=True))
                    if np.all(np.abs(w_real - b_real) <= tol):
                        exact.append(ln)
                        weight_mismatch[ln] = int(np.sum(L["weight_int"] != wt))
            # A layer may legitimately appear twice (TFLite duplicates a layer whose output is
            # used raw and through a fused ReLU); prefer one not used yet.
            pick = [ln for ln in exact if ln not in used_layers] or exact
            if not pick:
                scores = sorted(((float(np.mean(layers[ln]["weight_int"] == wt)), ln) for ln in cands),
                                reverse=True)
                raise RangeMappingError(f"op {i} {name}: its int8 weights match no brevitas layer "
                                        f"(best {scores[0] if scores else 'none'})")
            ln = pick[0]
            used_layers.add(ln)
            layer_of_op[i] = ln
            if ins[0] not in point_of:
                raise RangeMappingError(f"op {i} {name} ({ln}): its input tensor {ins[0]} is not mapped")
            if point_of[ins[0]] != layers[ln]["input_point"]:
                raise RangeMappingError(
                    f"op {i} {name} ({ln}): input maps to {point_of[ins[0]]}, but brevitas feeds "
                    f"this layer from {layers[ln]['input_point']}")
            point_of[outs[0]] = find_point(role="layer", source=ln, kind=_fused(op))
        elif name in ("ADD",):
            for t in ins:
                if t not in point_of:
                    raise RangeMappingError(f"op {i} ADD: input tensor {t} is not mapped")
            point_of[outs[0]] = find_point(role="add", kind=_fused(op),
                                           inputs=[point_of[t] for t in ins])
        elif name in SAME_QUANT_OPS:
            if ins[0] not in point_of:
                raise RangeMappingError(f"op {i} {name}: input tensor {ins[0]} is not mapped")
            for t in outs:
                point_of[t] = point_of[ins[0]]
        elif name in ("RELU", "RELU6", "SOFTMAX", "LOGISTIC"):
            p_in = point_of.get(ins[0])
            point_of[outs[0]] = find_point(role="act", kind=name.lower(), inputs=[p_in])
        else:
            raise RangeMappingError(f"op {i} {name}: no rule maps its output to a QAT quantiser")

    unmapped = [ti for ti, t in enumerate(sg.tensors)
                if tff.buffer_array(model, ti) is None and ti not in point_of
                and tff.tensor_type(t) == "INT8"]
    if unmapped:
        raise RangeMappingError(f"{len(unmapped)} activation tensors not mapped (first {unmapped[0]})")
    missing = sorted(set(layers) - used_layers)
    if missing:
        raise RangeMappingError(f"brevitas layers with no TFLite op: {missing}")
    return point_of, layer_of_op, {"weight_mismatch": weight_mismatch}


def apply_qat_ranges(src, spec: dict[str, Any], output_points: dict[int, str] | None = None
                     ) -> tuple[bytes, dict[str, Any]]:
    """Rewrite a full-int8 file (path or bytes) with the QAT quantisation of `spec`
    (`quantization.qmodel.quant_spec`). `output_points`: {output tensor index: expected
    quant point} to cross-check the output binding. Returns (bytes, report)."""
    model = tff.load_model(src)
    sg = model.subgraphs[0]
    point_of, layer_of_op, stats = map_tensors(model, spec)
    points, layers = spec["points"], spec["layers"]

    if output_points:
        for ti, want in output_points.items():
            if point_of.get(int(ti)) != want:
                raise RangeMappingError(f"output tensor {ti} maps to {point_of.get(int(ti))}, "
                                        f"but its bound output is quantised by {want}")

    changes = []
    for ti, pname in sorted(point_of.items()):
        t = sg.tensors[ti]
        p = points[pname]
        old = tff.quant_of(t)
        tedit.set_quant(t, [p["tflite_scale"]], [p["tflite_zero_point"]], 0)
        changes.append({"tensor": ti, "point": pname,
                        "calib": None if old is None else [float(old[0][0]), int(old[1][0])],
                        "qat": [float(p["tflite_scale"]), int(p["tflite_zero_point"])]})

    weights_changed = 0
    bias_saturated: dict[str, int] = {}
    for i, ln in sorted(layer_of_op.items()):
        op = sg.operators[i]
        name = tff.opcode_name(model, op)
        L = layers[ln]
        wt_idx, b_idx = int(op.inputs[1]), int(op.inputs[2]) if len(op.inputs) > 2 else -1
        old_w = tff.buffer_array(model, wt_idx)
        new_w = torch_weight_to_tflite(name, L["weight_int"].astype(np.int8))
        if old_w.shape != new_w.shape:
            raise RangeMappingError(f"op {i}: weight shape {old_w.shape} vs brevitas {new_w.shape}")
        weights_changed += int(np.sum(old_w != new_w))
        tedit.set_buffer(model, wt_idx, new_w)
        dim = 3 if name == "DEPTHWISE_CONV_2D" else 0
        wq = tff.quant_of(sg.tensors[wt_idx])
        n_ch = new_w.shape[dim]
        ws = np.asarray(L["weight_scale"], np.float32).reshape(-1)
        if len(ws) == 1 and n_ch > 1:
            ws = np.repeat(ws, n_ch)
        if wq is not None and len(wq[0]) != len(ws):
            raise RangeMappingError(f"op {i}: {len(wq[0])} weight scales in the file vs {len(ws)} in brevitas")
        tedit.set_quant(sg.tensors[wt_idx], ws, np.zeros(len(ws), np.int64), dim)
        in_scale = float(points[point_of[int(op.inputs[0])]]["tflite_scale"])
        if b_idx < 0:
            raise RangeMappingError(f"op {i} {name}: no bias tensor (TFLite int8 kernels expect one)")
        b_int = np.asarray(L["bias_int"], np.int32).reshape(-1)
        n_sat = int(np.sum(np.abs(b_int.astype(np.int64)) >= 2 ** 31 - 1))
        if n_sat:   # the bias did not fit int32 at in_scale x w_scale (fake-quant clamps too)
            bias_saturated[ln] = n_sat
        # brevitas quantised the bias with its own input scale; that is the scale just written
        # into the input tensor, so the integers carry over unchanged.
        if abs(in_scale - float(L["input_scale"])) > 1e-6 * abs(in_scale):
            raise RangeMappingError(f"op {i}: input scale {in_scale} != brevitas' {L['input_scale']}")
        bs = (np.float32(in_scale) * ws).astype(np.float32)
        tedit.set_buffer(model, b_idx, b_int)
        tedit.set_quant(sg.tensors[b_idx], bs, np.zeros(len(bs), np.int64), 0)

    tedit.drop_unused_buffers(model)
    out = tedit.save_model(model)
    report = {"activation_tensors": len(point_of), "layers": len(layer_of_op),
              "weights_changed_vs_calibration": weights_changed,
              "weight_mismatch_layers": stats["weight_mismatch"],
              "bias_saturated": bias_saturated,
              "tensors": changes,
              "layer_of_op": {str(k): v for k, v in sorted(layer_of_op.items())}}
    return out, report
