"""TFLite's integer quantisation arithmetic, in Python, for the facts the generator computes once
(multipliers, shifts, activation ranges) and for the reference the tests check the C against.

Facts follow TFLite Micro's int8 kernels: QuantizeMultiplier (frexp, round half away from zero,
Q31), the double-rounding MultiplyByQuantizedMultiplier, and CalculateActivationRangeQuantized.
"""
from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> float:
    """std::round / TfLiteRound: halves away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) with real == multiplier * 2**(shift - 31) (TFLite QuantizeMultiplier)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def f32(x) -> float:
    """A Python float holding the float32 value of x (TFLite keeps scales as float)."""
    return float(np.float32(x))


def conv_multipliers(in_scale: float, w_scales: np.ndarray, out_scale: float) -> tuple[list[int], list[int]]:
    """Per-channel (multiplier, shift) lists: double(in) * double(w[c]) / double(out)."""
    mults, shifts = [], []
    for ws in np.asarray(w_scales, np.float32):
        m, s = quantize_multiplier(f32(in_scale) * float(ws) / f32(out_scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def activation_range(act: str, scale: float, zero_point: int) -> tuple[int, int]:
    """(min, max) int8 clamp of a fused activation (CalculateActivationRangeQuantized:
    quantize in float32, round half away from zero)."""
    def q(f: float) -> int:
        return int(zero_point + round_half_away(float(np.float32(f) / np.float32(scale))))
    if act == "NONE":
        return INT8_MIN, INT8_MAX
    if act == "RELU":
        return max(INT8_MIN, q(0.0)), INT8_MAX
    if act == "RELU6":
        return max(INT8_MIN, q(0.0)), min(INT8_MAX, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(INT8_MIN, q(-1.0)), min(INT8_MAX, q(1.0))
    raise ValueError(f"fused activation {act} not supported")
