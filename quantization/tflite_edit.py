"""Editing and writing .tflite flatbuffers (the export's rewrites).

Reading lives in `edge_runtime.tflite_file` (shared with the runtime and the firmware
generator). `save_model` writes every buffer 16-byte aligned (the schema's `force_align: 16`,
which the Python object API ignores), so int32 biases stay aligned for MCU loads.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.tflite_file import schema


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


def embed_sidecar(tfl: bytes, sidecar: dict) -> tuple[bytes, dict]:
    """Store `sidecar` (JSON) in the file's `Model.metadata` entry that the edge runtime reads
    (`edge_runtime.sidecar.SIDECAR_METADATA_NAME`), replacing an earlier one. The embedded copy
    carries `sha256_blanked` (the file's sha256 with the JSON bytes zeroed: a file cannot hold
    its own hash). Returns (new file, the external sidecar: same fields plus `sha256`, `bytes`)."""
    import json

    from edge_runtime.sidecar import SIDECAR_METADATA_NAME, blanked_sha256, sha256
    from edge_runtime.tflite_file import load_model
    s = schema()
    model = load_model(tfl)
    model.metadata = [m for m in (model.metadata or [])
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name) != SIDECAR_METADATA_NAME]
    inner = {k: v for k, v in sidecar.items() if k not in ("sha256", "bytes", "sha256_blanked")}
    placeholder = "0" * 64
    raw = json.dumps({**inner, "sha256_blanked": placeholder}, sort_keys=True).encode()
    b = s.BufferT()
    b.data, b.offset, b.size = np.frombuffer(raw, np.uint8).copy(), 0, 0
    model.buffers.append(b)
    md = s.MetadataT()
    md.name, md.buffer = SIDECAR_METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(md)
    drop_unused_buffers(model)
    out = save_model(model)
    digest = blanked_sha256(out, raw)
    final = raw.replace(placeholder.encode(), digest.encode(), 1)
    out = out.replace(raw, final, 1)
    return out, {**inner, "sha256_blanked": digest, "sha256": sha256(out), "bytes": len(out)}
