"""The int8 gate on students: refuse, before conversion, anything the int8 path cannot carry.

Loading itself lives in `training.models.student_io` (re-exported here for the stages below).
"""
from __future__ import annotations

from torch import nn

from training.models.student_io import (LoadedStudent, StudentLoadError, build_student,  # noqa: F401
                                        checkpoint_path, label_norm_simple, load_checkpoint)


def int8_problems(model: nn.Module) -> list[str]:
    """The student library's op check plus the quantisation graph's own check (both name the
    layer)."""
    from training.models import student as student_lib

    from .qmodel import check_int8_path
    probs = list(student_lib.unsupported_op_check(model))
    for p in check_int8_path(model):
        if p not in probs:
            probs.append(p)
    return probs


def require_int8_path(model: nn.Module, where: str) -> None:
    probs = int8_problems(model)
    if probs:
        more = f" (+{len(probs) - 1} more)" if len(probs) > 1 else ""
        raise StudentLoadError(f"{where}: the int8 path cannot carry this model: {probs[0]}{more}")


