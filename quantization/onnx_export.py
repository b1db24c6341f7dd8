"""Plain float ONNX of the folded student carrying the QAT weights (the input of onnx2tf).

    export_onnx(model, "model.onnx", input_len=1250)      # -> list of output names

Why plain float and not brevitas' QCDQ export: onnx2tf drops QuantizeLinear/DequantizeLinear
pairs and the float graph it builds from a QCDQ model does not compute what onnxruntime computes
on the same graph (reported in ../shared/DESIGN.md; no test here reproduces a figure, so none is
quoted). What works: the BN-folded float graph
whose weights and biases already are brevitas' dequantised integers (w_int * w_scale,
b_int * in_scale * w_scale), exported with the TorchScript exporter (dynamo=False) at opset 13.
TFLite's converter then recovers exactly those integer weights (per-channel scale = max|w|/127),
and `quantization.qat_ranges` puts the QAT activation ranges back into the file.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from anyppg.runs import atomic_path

OPSET = 13
INPUT_NAME = "ppg"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
           "QLinearMatMul", "ConvInteger", "MatMulInteger")


class _TupleOut(nn.Module):
    """Return a plain tuple (ONNX outputs in field order), whatever the model returns."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def output_names_of(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """Field names of the model's output (NamedTuple fields, else output_0..)."""
    with torch.no_grad():
        out = model(torch.zeros(input_shape))
    if hasattr(out, "_fields"):
        return list(out._fields)
    n = len(out) if isinstance(out, (tuple, list)) else 1
    return [f"output_{i}" for i in range(n)]


def export_onnx(model: nn.Module, path: str | Path, input_len: int, in_channels: int = 1,
                input_name: str = INPUT_NAME, output_names: list[str] | None = None) -> list[str]:
    """Write `model` (float, eval) as ONNX opset 13, batch 1, static shapes, named I/O.

    The file is written atomically. Returns the output names. Raises ValueError if the graph
    contains any quantise/dequantise node (we never take the QCDQ route).
    """
    import onnx
    model = model.eval()
    shape = (1, in_channels, input_len)
    names = output_names or output_names_of(model, shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TupleOut(model), (torch.zeros(shape),), buf, dynamo=False,
                          opset_version=OPSET, input_names=[input_name], output_names=names,
                          do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    bad = sorted({n.op_type for n in proto.graph.node if n.op_type in QDQ_OPS})
    if bad:
        raise ValueError(f"ONNX graph has quantisation nodes {bad}: onnx2tf mis-converts QCDQ graphs; "
                         "export the float graph carrying dequantised QAT weights instead")
    onnx.checker.check_model(proto)
    # Strip the producer version / doc strings that vary between torch builds: same weights ->
    # same bytes.
    proto.producer_version = ""
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return names


def onnx_op_counts(path: str | Path) -> dict[str, int]:
    """{op_type: count} of an ONNX file."""
    import onnx
    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def run_onnx(path: str | Path, x, input_name: str = INPUT_NAME) -> list:
    """onnxruntime outputs for x (N, C, L) float32, one window at a time (batch 1 graph)."""
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {input_name: np.asarray(x[i:i + 1], np.float32)}) for i in range(len(x))]
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]
