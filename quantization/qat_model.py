"""A student on the int8 path: the gate that refuses what int8 cannot carry, the folded float
graph and its brevitas twin, rebuilt from a distill run (for QAT) or a QAT run (for export).

Loading the float student itself is `training.checkpoint`'s (probes and benchmarks use it too).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.checkpoint import LoadedStudent, StudentLoadError, build_student, load_checkpoint
from training.models import student as student_lib

from . import qmodel as qm


def int8_problems(model: nn.Module) -> list[str]:
    """The student library's op check plus the folded graph's own check (both name the layer;
    both read the one allow-list of `training.models.int8_layers`)."""
    probs = list(student_lib.unsupported_op_check(model))
    for p in qm.check_int8_path(model):
        if p not in probs:
            probs.append(p)
    return probs


def require_int8_path(model: nn.Module, where: str) -> None:
    probs = int8_problems(model)
    if probs:
        more = f" (+{len(probs) - 1} more)" if len(probs) > 1 else ""
        raise StudentLoadError(f"{where}: the int8 path cannot carry this model: {probs[0]}{more}")


@dataclass
class QATModel:
    student: LoadedStudent
    folded: torch.fx.GraphModule     # float, BN folded (the teacher and the ONNX graph)
    qg: qm.QuantGraph                # brevitas twin


def prepare(student: LoadedStudent) -> QATModel:
    """Gate, fold and quantise a float student (BN folded before QAT, so the weights QAT trains
    are exactly the weights that ship)."""
    require_int8_path(student.model, student.name)
    folded = qm.fold_for_int8(student.model)
    return QATModel(student, folded, qm.build_quant_model(folded))


def load_distilled(src: str | Path) -> tuple[LoadedStudent, dict]:
    """The float student of a distill run (refusing a QAT run) and its checkpoint dict."""
    ck, ck_path = load_checkpoint(src)
    if ck.get("stage") == "qat":
        raise StudentLoadError(f"{ck_path}: already a QAT checkpoint; --from takes a distill run")
    return build_student(ck, ck_path), ck


def load_qat_run(run: str | Path) -> QATModel:
    """Rebuild the brevitas student of a QAT run (float student from 'float_model', then the
    quantised graph, then its state)."""
    ck, path = load_checkpoint(run)
    if "float_model" not in ck or ck.get("stage") != "qat":
        raise StudentLoadError(f"{path}: not a QAT checkpoint (run `anyppg qat` first)")
    student = build_student(ck, path, state_key="float_model")
    m = prepare(student)
    m.qg.load_state_dict(ck["model"], strict=True)
    m.qg.eval()
    return m
