"""Op audit of a full-int8 .tflite, the Edge TPU rules checked offline, and the grouped-conv
-> DEPTHWISE_CONV_2D rewrite.

    report = audit(tflite_bytes)          # dict; report["ok"] False lists report["errors"]
    fixed, info = grouped_to_depthwise(tflite_bytes)

What `audit` checks (errors make the file unfit to ship):
* every operator is a builtin with an int8 kernel in TFLite Micro (no Flex/custom ops);
* no float tensor anywhere (activations int8, weights int8, biases int32, shapes int32/int64);
* input and outputs are int8; no stray QUANTIZE / DEQUANTIZE / TRANSPOSE;
* static shapes, batch 1.
Warnings (the file runs, but slower or not everywhere): CONV_2D with groups > 1 (onnx2tf's
depthwise: CMSIS-NN runs it ~3x slower than DEPTHWISE_CONV_2D), MEAN (generic slow kernel
on TFLM; prefer AVERAGE_POOL_2D), GATHER with int64 indices (TFLM: int32 only).

Edge TPU (Coral) rules, from Coral's published model requirements, since the compiler is not
available here: tensors int8/uint8 including I/O, constant sizes, batch 1, only the 3
innermost dimensions of an activation tensor may exceed 1 (filters are 4-D by definition),
supported ops only; the compiler maps ops in graph order
until the first unsupported one, and everything from there on runs on the CPU.

`grouped_to_depthwise` rewrites each CONV_2D whose filter has one input channel per group
(filter [C*M, KH, KW, 1] over C input channels) into DEPTHWISE_CONV_2D (filter
[1, KH, KW, C*M], depth multiplier M, per-channel scales on dimension 3): same arithmetic,
so the output is bit-identical on the reference kernels (checked by `verify_same_outputs`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime import interpreters as interp, tflite_file as tff
from edge_runtime.int8_ops import TFLM_INT8_OPS

from . import tflite_edit as tedit


# Builtin ops with int8 kernels in TFLite Micro (the subset a 1-D CNN can plausibly use).
STRAY_OPS = {"QUANTIZE", "DEQUANTIZE", "TRANSPOSE"}
# Coral Edge TPU supported operations (coral.ai/docs/edgetpu/models-intro, "Supported operations").
EDGETPU_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}
INT_CONST_TYPES = {"INT32", "INT64"}


def _conv_groups(model, op) -> tuple[int, int] | None:
    """(groups, depth multiplier) of a CONV_2D op, or None if its shapes are unknown."""
    sg = model.subgraphs[0]
    x = sg.tensors[op.inputs[0]]
    w = sg.tensors[op.inputs[1]]
    if x.shape is None or w.shape is None or len(x.shape) != 4 or len(w.shape) != 4:
        return None
    cin, per_group, cout = int(x.shape[-1]), int(w.shape[-1]), int(w.shape[0])
    if per_group <= 0 or cin % per_group:
        return None
    groups = cin // per_group
    return groups, (cout // groups if groups else 0)


def audit(src) -> dict[str, Any]:
    """Audit a .tflite (path or bytes). Returns a JSON-able report (see module doc)."""
    model = tff.load_model(src)
    sg = model.subgraphs[0]
    errors: list[str] = []
    warnings: list[str] = []
    ops: dict[str, int] = {}
    names = [tff.opcode_name(model, op) for op in sg.operators]
    for n in names:
        ops[n] = ops.get(n, 0) + 1
    if len(model.subgraphs) != 1:
        errors.append(f"{len(model.subgraphs)} subgraphs (control flow); expected 1")

    grouped = []
    for i, (op, name) in enumerate(zip(sg.operators, names)):
        if name.startswith("CUSTOM"):
            errors.append(f"op {i} {name}: custom/Flex op (not a builtin; TFLM cannot run it)")
        elif name in STRAY_OPS:
            errors.append(f"op {i} {name}: stray {name} on the int8 path")
        elif name not in TFLM_INT8_OPS:
            errors.append(f"op {i} {name}: no int8 kernel in TFLite Micro")
        if name == "CONV_2D":
            gm = _conv_groups(model, op)
            if gm and gm[0] > 1:
                grouped.append(i)
                warnings.append(f"op {i} CONV_2D with groups={gm[0]} (multiplier {gm[1]}): grouped conv; "
                                "DEPTHWISE_CONV_2D is ~3x faster on CMSIS-NN")
        if name == "MEAN":
            warnings.append(f"op {i} MEAN: TFLM runs a generic slow kernel; prefer AVERAGE_POOL_2D")
        if name == "GATHER":
            idx = sg.tensors[op.inputs[1]]
            if tff.tensor_type(idx) == "INT64":
                warnings.append(f"op {i} GATHER with int64 indices: TFLite Micro supports int32 only")

    float_tensors = []
    for ti, t in enumerate(sg.tensors):
        ty = tff.tensor_type(t)
        const = tff.buffer_array(model, ti) is not None
        if ty in ("FLOAT32", "FLOAT16", "FLOAT64"):
            float_tensors.append(ti)
            errors.append(f"tensor {ti} {tff.tensor_name(t)[:60]}: {ty} on the int8 path")
        elif not const and ty != "INT8":
            errors.append(f"tensor {ti} {tff.tensor_name(t)[:60]}: activation of type {ty}, not int8")
        elif const and ty not in ("INT8", "INT32") and ty not in INT_CONST_TYPES:
            errors.append(f"tensor {ti} {tff.tensor_name(t)[:60]}: constant of type {ty}")
    io = tff.io_binding(model)
    for e in io["inputs"] + io["outputs"]:
        if e["dtype"] != "int8":
            errors.append(f"I/O tensor {e['index']} {e['tensor_name']}: {e['dtype']}, not int8")
    dynamic = [ti for ti, t in enumerate(sg.tensors)
               if t.shapeSignature is not None and len(t.shapeSignature) and (np.asarray(t.shapeSignature) < 0).any()]
    if dynamic:
        errors.append(f"{len(dynamic)} tensors with dynamic shape (first: {dynamic[0]})")
    for e in io["inputs"]:
        if not e["shape"] or e["shape"][0] != 1:
            errors.append(f"input {e['tensor_name']}: batch {e['shape'][:1]}, expected 1")

    return {"ok": not errors, "errors": errors, "warnings": warnings, "ops": dict(sorted(ops.items())),
            "n_ops": len(sg.operators), "grouped_conv_ops": grouped,
            "op_sequence": names, "edgetpu": edgetpu_check(model, names),
            "io": io}


def edgetpu_check(model, names: list[str] | None = None) -> dict[str, Any]:
    """Coral Edge TPU rules, offline. `mapped_ops` run on the TPU, the rest on the CPU."""
    sg = model.subgraphs[0]
    names = names or [tff.opcode_name(model, op) for op in sg.operators]
    problems: list[str] = []
    first_bad = None
    for i, (op, name) in enumerate(zip(sg.operators, names)):
        why = None
        if name not in EDGETPU_OPS:
            why = f"{name} is not an Edge TPU op"
        elif name == "CONV_2D":
            gm = _conv_groups(model, op)
            if gm and gm[0] > 1:
                why = "CONV_2D with groups > 1 (grouped conv) is not supported"
        if why is None:
            for ti in list(op.inputs) + list(op.outputs):
                if ti < 0:
                    continue
                t = sg.tensors[ti]
                ty = tff.tensor_type(t)
                const = tff.buffer_array(model, ti) is not None
                if ty not in ("INT8", "UINT8") and not (const and ty in ("INT32", "INT64")):
                    why = f"tensor {ti} is {ty} (Edge TPU needs 8-bit tensors)"
                    break
                shape = [int(v) for v in (t.shape if t.shape is not None else [])]
                if not const and len(shape) > 3 and any(d != 1 for d in shape[:-3]):
                    why = f"tensor {ti} shape {shape}: more than the 3 innermost dims exceed 1"
                    break
        if why is not None:
            problems.append(f"op {i} {name}: {why}")
            if first_bad is None:
                first_bad = i
    io = tff.io_binding(model)
    full_int8 = all(e["dtype"] in ("int8", "uint8") for e in io["inputs"] + io["outputs"])
    batch1 = all(e["shape"][:1] == [1] for e in io["inputs"])
    n = len(sg.operators)
    mapped = n if first_bad is None else first_bad
    return {"full_int8_io": full_int8, "batch_1": batch1, "static_shapes": all(
        t.shapeSignature is None or not len(t.shapeSignature) or (np.asarray(t.shapeSignature) >= 0).all()
        for t in sg.tensors), "mapped_ops": mapped, "cpu_ops": n - mapped,
        "first_unsupported_op": first_bad, "problems": problems,
        "all_on_tpu": first_bad is None and full_int8 and batch1}


# ---------------------------------------------------------------------------------- rewrites
def grouped_to_depthwise(src) -> tuple[bytes, dict[str, Any]]:
    """Rewrite every depthwise-shaped grouped CONV_2D into DEPTHWISE_CONV_2D.

    Returns (new bytes, {"rewritten": [op indices], "skipped": [reasons]}). Grouped convs with
    more than one input channel per group cannot be depthwise and are left (and reported).
    """
    s = tff.schema()
    model = tff.load_model(src)
    sg = model.subgraphs[0]
    rewritten, skipped = [], []
    for i, op in enumerate(sg.operators):
        if tff.opcode_name(model, op) != "CONV_2D":
            continue
        gm = _conv_groups(model, op)
        if gm is None or gm[0] <= 1:
            continue
        groups, mult = gm
        w_t = sg.tensors[op.inputs[1]]
        if int(w_t.shape[-1]) != 1:
            skipped.append(f"op {i}: groups={groups} with {int(w_t.shape[-1])} channels per group "
                           "is a grouped conv, not depthwise")
            continue
        w = tff.buffer_array(model, op.inputs[1])          # [C*M, KH, KW, 1]
        if w is None:
            skipped.append(f"op {i}: filter is not constant")
            continue
        new_w = np.ascontiguousarray(np.transpose(w, (3, 1, 2, 0)))   # [1, KH, KW, C*M]
        tedit.set_buffer(model, op.inputs[1], new_w)
        q = tff.quant_of(w_t)
        if q is not None:
            tedit.set_quant(w_t, q[0], q[1], dim=3)
        o = op.builtinOptions
        d = s.DepthwiseConv2DOptionsT()
        d.padding = o.padding
        d.strideW = o.strideW
        d.strideH = o.strideH
        d.depthMultiplier = int(mult)
        d.fusedActivationFunction = o.fusedActivationFunction
        d.dilationWFactor = o.dilationWFactor
        d.dilationHFactor = o.dilationHFactor
        op.builtinOptionsType = s.BuiltinOptions.DepthwiseConv2DOptions
        op.builtinOptions = d
        op.opcodeIndex = tedit.opcode_index(model, "DEPTHWISE_CONV_2D", version=3)
        rewritten.append(i)
    if rewritten:
        tedit.drop_unused_opcodes(model)
        tedit.drop_unused_buffers(model)
    return tedit.save_model(model), {"rewritten": rewritten, "skipped": skipped}


def fix_gather_indices(src) -> tuple[bytes, int]:
    """Give GATHER ops with constant int64 indices int32 indices (TFLM supports only int32)."""
    model = tff.load_model(src)
    sg = model.subgraphs[0]
    s = tff.schema()
    n = 0
    for op in sg.operators:
        if tff.opcode_name(model, op) != "GATHER":
            continue
        t = sg.tensors[op.inputs[1]]
        a = tff.buffer_array(model, op.inputs[1])
        if a is None or tff.tensor_type(t) != "INT64":
            continue
        tedit.set_buffer(model, op.inputs[1], a.astype(np.int32))
        t.type = s.TensorType.INT32
        n += 1
    if n:
        tedit.drop_unused_buffers(model)
        return tedit.save_model(model), n
    return bytes(src) if isinstance(src, (bytes, bytearray)) else tedit.save_model(model), 0


def verify_same_outputs(a, b, windows: np.ndarray, tflm: bool = True) -> dict[str, Any]:
    """Run two int8 files on the same windows with the reference kernels (LiteRT BUILTIN_REF
    and, if `tflm`, TFLite Micro); report whether every raw int8 output is identical."""
    ia, ib = interp.litert(a, ref=True), interp.litert(b, ref=True)
    ra, rb = interp.run_int8(ia, windows), interp.run_int8(ib, windows)
    same_ref = all(np.array_equal(x, y) for x, y in zip(ra, rb))
    out = {"litert_ref_identical": bool(same_ref), "windows": int(len(windows))}
    if tflm:
        d = ib.get_input_details()[0]
        s, z = d["quantization"]
        ta = interp.run_tflm(a, windows, s, z, len(ra))
        tb = interp.run_tflm(b, windows, s, z, len(rb))
        out["tflm_identical"] = bool(all(np.array_equal(x, y) for x, y in zip(ta, tb)))
        out["tflm_equals_litert_ref"] = bool(all(np.array_equal(x.reshape(y.shape), y)
                                                 for x, y in zip(tb, rb)))
    return out
