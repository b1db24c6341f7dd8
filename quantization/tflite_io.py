"""Reading, editing and writing .tflite flatbuffers; running them on LiteRT and TFLite Micro.

The schema is TensorFlow's generated object API (`tensorflow/lite/python/schema_py_generated`,
TF 2.19), loaded from its file so importing this module does not import TensorFlow itself.
`save_model` writes every buffer 16-byte aligned (the schema's `force_align: 16`, which the
Python object API ignores), so int32 biases stay aligned for MCU loads.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_SCHEMA = None


def schema():
    """The TFLite flatbuffer schema module (object API)."""
    global _SCHEMA
    if _SCHEMA is None:
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("tensorflow is not installed: its TFLite schema is needed to edit .tflite files")
        path = Path(list(spec.submodule_search_locations)[0]) / "lite" / "python" / "schema_py_generated.py"
        mspec = importlib.util.spec_from_file_location("_anyppg_tflite_schema", path)
        mod = importlib.util.module_from_spec(mspec)
        sys.modules["_anyppg_tflite_schema"] = mod
        mspec.loader.exec_module(mod)
        _SCHEMA = mod
    return _SCHEMA


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


def _aligned_buffer_class():
    s = schema()

    class AlignedBufferT(s.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                payload = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            s.BufferStart(builder)
            if data is not None:
                s.BufferAddData(builder, data)
            s.BufferAddOffset(builder, self.offset)
            s.BufferAddSize(builder, self.size)
            return s.BufferEnd(builder)
    return AlignedBufferT


def save_model(model) -> bytes:
    """Serialise a ModelT (buffers 16-byte aligned, file identifier TFL3). Deterministic."""
    import flatbuffers
    cls = _aligned_buffer_class()
    for b in model.buffers:
        b.__class__ = cls
    builder = flatbuffers.Builder(1024)
    off = model.Pack(builder)
    builder.Finish(off, file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---------------------------------------------------------------------------------- graph views
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


def set_buffer(model, tensor_index: int, arr: np.ndarray, subgraph: int = 0) -> None:
    """Give a tensor new constant data in a buffer of its own (never edits a shared buffer)."""
    s = schema()
    t = model.subgraphs[subgraph].tensors[tensor_index]
    b = s.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8).copy()
    b.offset = 0
    b.size = 0
    model.buffers.append(b)
    t.buffer = len(model.buffers) - 1
    t.shape = np.asarray(arr.shape, np.int32) if arr.ndim else np.zeros(0, np.int32)


def set_quant(t, scales, zero_points, dim: int = 0) -> None:
    s = schema()
    q = s.QuantizationParametersT()
    q.scale = np.asarray(scales, np.float32).reshape(-1)
    q.zeroPoint = np.asarray(zero_points, np.int64).reshape(-1)
    q.quantizedDimension = int(dim)
    t.quantization = q


def drop_unused_buffers(model) -> None:
    """Remove buffers no tensor refers to (keeps buffer 0, the empty sentinel, and metadata
    buffers), renumbering references. Deterministic: keeps the original order."""
    used = {0}
    for sg in model.subgraphs:
        for t in sg.tensors:
            used.add(int(t.buffer))
    for md in model.metadata or []:
        used.add(int(md.buffer))
    keep = [i for i in range(len(model.buffers)) if i in used]
    remap = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = remap[int(t.buffer)]
    for md in model.metadata or []:
        md.buffer = remap[int(md.buffer)]


def drop_unused_opcodes(model) -> None:
    used = sorted({op.opcodeIndex for sg in model.subgraphs for op in sg.operators})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sg in model.subgraphs:
        for op in sg.operators:
            op.opcodeIndex = remap[op.opcodeIndex]


def opcode_index(model, name: str, version: int = 1) -> int:
    """Index of builtin operator `name` in the model's opcode table, added if missing."""
    s = schema()
    code = getattr(s.BuiltinOperator, name)
    for i, oc in enumerate(model.operatorCodes):
        if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == code:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


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


# ---------------------------------------------------------------------------------- signatures
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


def rename_io(model, inputs: dict[int, str], outputs: dict[int, str]) -> None:
    """Rename I/O tensors and their signature entries (tensor index -> name)."""
    sg = model.subgraphs[0]
    for idx, name in {**inputs, **outputs}.items():
        sg.tensors[idx].name = name.encode()
    for sd in model.signatureDefs or []:
        for t in sd.inputs or []:
            if int(t.tensorIndex) in inputs:
                t.name = inputs[int(t.tensorIndex)].encode()
        for t in sd.outputs or []:
            if int(t.tensorIndex) in outputs:
                t.name = outputs[int(t.tensorIndex)].encode()


# ---------------------------------------------------------------------------------- running
def litert(src: str | Path | bytes, ref: bool = False, preserve: bool = False, threads: int = 1):
    """An allocated ai-edge-litert interpreter: XNNPACK (default kernels) or BUILTIN_REF."""
    from ai_edge_litert import interpreter as lr
    kw: dict[str, Any] = {"num_threads": threads,
                          "experimental_preserve_all_tensors": preserve}
    if ref:
        kw["experimental_op_resolver_type"] = lr.OpResolverType.BUILTIN_REF
    if isinstance(src, (bytes, bytearray)):
        it = lr.Interpreter(model_content=bytes(src), **kw)
    else:
        it = lr.Interpreter(model_path=str(src), **kw)
    it.allocate_tensors()
    return it


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 with TFLite's rounding (half away from zero) and saturation."""
    q = np.round(np.asarray(x, np.float64) / scale)   # numpy rounds half to even
    frac = np.asarray(x, np.float64) / scale
    ties = np.abs(frac - np.trunc(frac)) == 0.5
    q = np.where(ties, np.trunc(frac) + np.sign(frac), q)
    return np.clip(q + zero_point, -128, 127).astype(np.int8)


def run_int8(it, x: np.ndarray) -> list[np.ndarray]:
    """Run windows x (N, L) float through a full-int8 LiteRT interpreter, one at a time.
    Returns the raw int8 outputs, one array per model output (N, ...), in subgraph order."""
    inp = it.get_input_details()[0]
    s, z = inp["quantization"]
    outs = it.get_output_details()
    res: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        xq = quantize_input(np.asarray(x[i], np.float32).reshape(inp["shape"]), s, z)
        it.set_tensor(inp["index"], xq)
        it.invoke()
        for k, d in enumerate(outs):
            res[k].append(it.get_tensor(d["index"]).copy())
    return [np.concatenate(r) for r in res]


def run_tflm(src: str | Path | bytes, x: np.ndarray, in_scale: float, in_zp: int,
             n_outputs: int) -> list[np.ndarray]:
    """Run windows x (N, L) float through TFLite Micro's reference kernels (tflite-micro wheel)."""
    import tflite_micro
    rt = tflite_micro.runtime
    it = (rt.Interpreter.from_bytes(bytes(src)) if isinstance(src, (bytes, bytearray))
          else rt.Interpreter.from_file(str(src)))
    shape = it.get_input_details(0)["shape"]
    res: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for i in range(len(x)):
        it.set_input(quantize_input(np.asarray(x[i], np.float32).reshape(shape), in_scale, in_zp), 0)
        it.invoke()
        for k in range(n_outputs):
            res[k].append(np.array(it.get_output(k)).copy())
        it.reset()
    return [np.concatenate(r) for r in res]


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
