"""Reading .tflite flatbuffers: operators, tensors, quantisation, constants, I/O and metadata.

The schema is the generated object API that ai-edge-litert ships
(`ai_edge_litert.schema_py_generated`), so reading a model needs neither TensorFlow nor torch:
the edge runtime, the firmware generator and the quantisation stage all read files through here.
Editing and writing files is the quantisation stage's job (`quantization/tflite_edit.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def schema():
    """The TFLite flatbuffer schema module (object API)."""
    from ai_edge_litert import schema_py_generated
    return schema_py_generated


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def op_names() -> dict[int, str]:
    return _enum_names(schema().BuiltinOperator)


def type_names() -> dict[int, str]:
    return _enum_names(schema().TensorType)


def act_names() -> dict[int, str]:
    return _enum_names(schema().ActivationFunctionType)


NP_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
            "INT64": np.int64, "FLOAT32": np.float32, "FLOAT16": np.float16, "BOOL": np.bool_}


def load_model(src: str | Path | bytes):
    """ModelT of a .tflite file or bytes."""
    s = schema()
    buf = Path(src).read_bytes() if isinstance(src, (str, Path)) else bytes(src)
    return s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))


def opcode_name(model, op) -> str:
    oc = model.operatorCodes[op.opcodeIndex]
    code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    name = op_names().get(code, str(code))
    if name == "CUSTOM":
        cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
        return f"CUSTOM:{cc}"
    return name


def tensor_name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def tensor_type(t) -> str:
    return type_names().get(int(t.type), str(t.type))


def quant_of(t) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(scales, zero points, quantized dimension) of a tensor, or None if not quantised."""
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale)), np.int64)
    return np.asarray(q.scale, np.float32), zp, int(q.quantizedDimension)


def buffer_array(model, tensor_index: int, subgraph: int = 0) -> np.ndarray | None:
    """The constant data of a tensor (shaped), or None for activations."""
    t = model.subgraphs[subgraph].tensors[tensor_index]
    b = model.buffers[t.buffer]
    if b.data is None or len(b.data) == 0:
        return None
    dt = NP_TYPES[tensor_type(t)]
    arr = np.frombuffer(np.asarray(b.data, np.uint8).tobytes(), dtype=dt)
    shape = list(t.shape) if t.shape is not None else []
    return arr.reshape(shape) if shape else arr.reshape(())


@dataclass
class Graph:
    """Producer/consumer indices of subgraph 0."""
    producer: dict[int, int]            # tensor -> op index
    consumers: dict[int, list[int]]     # tensor -> op indices


def graph_of(model, subgraph: int = 0) -> Graph:
    sg = model.subgraphs[subgraph]
    prod, cons = {}, {}
    for i, op in enumerate(sg.operators):
        for t in op.outputs:
            prod[int(t)] = i
        for t in op.inputs:
            if int(t) >= 0:
                cons.setdefault(int(t), []).append(i)
    return Graph(prod, cons)


def describe(model) -> list[dict[str, Any]]:
    """One dict per operator: name, inputs/outputs (index, name, shape, type, quant)."""
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        def td(i):
            if i < 0:
                return None
            t = sg.tensors[i]
            q = quant_of(t)
            return {"index": int(i), "name": tensor_name(t), "shape": [int(v) for v in t.shape],
                    "type": tensor_type(t), "const": buffer_array(model, int(i)) is not None,
                    "quant": None if q is None else {"scale": q[0].tolist()[:4], "zp": q[1].tolist()[:4],
                                                     "n": len(q[0]), "dim": q[2]}}
        out.append({"op": opcode_name(model, op), "inputs": [td(int(i)) for i in op.inputs],
                    "outputs": [td(int(i)) for i in op.outputs]})
    return out


def io_binding(model) -> dict[str, Any]:
    """Input/output tensors of subgraph 0 with names, shapes, quantisation, and the
    signature names bound to them."""
    sg = model.subgraphs[0]
    sig_in, sig_out = {}, {}
    for sd in model.signatureDefs or []:
        for t in sd.inputs or []:
            sig_in[int(t.tensorIndex)] = t.name.decode() if isinstance(t.name, bytes) else t.name
        for t in sd.outputs or []:
            sig_out[int(t.tensorIndex)] = t.name.decode() if isinstance(t.name, bytes) else t.name

    def entry(i, sig):
        t = sg.tensors[i]
        q = quant_of(t)
        return {"index": int(i), "tensor_name": tensor_name(t), "signature_name": sig.get(int(i)),
                "shape": [int(v) for v in t.shape], "dtype": tensor_type(t).lower(),
                "scale": float(q[0][0]) if q is not None else None,
                "zero_point": int(q[1][0]) if q is not None else None}
    return {"inputs": [entry(int(i), sig_in) for i in sg.inputs],
            "outputs": [entry(int(i), sig_out) for i in sg.outputs]}


def read_metadata(model, name: str) -> bytes | None:
    """The bytes of the model's `Model.metadata` entry called `name`, or None."""
    for md in model.metadata or []:
        md_name = md.name.decode() if isinstance(md.name, bytes) else str(md.name)
        if md_name == name:
            data = model.buffers[int(md.buffer)].data
            return b"" if data is None else np.asarray(data, np.uint8).tobytes()
    return None
