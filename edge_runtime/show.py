"""What a device shows for one window: which numbers it withholds, and why.

One decision, three places: `PPGStream` applies it, the C bundle's `anyppg_hr_show` mirrors it
on the int8 outputs (with the integer thresholds of `int8_minimums`, generated into
anyppg_model_settings.h), and the tests compare the two on every int8 code. In order:

1. quality flags in LOW_QUALITY_FLAGS: no inference, nothing shown (reasons: the flag names);
2. `quality_prob` < decision.quality_min_prob: nothing but quality_prob ('model_quality');
3. `hr_confidence` < decision.hr_confidence_min: everything but hr ('hr_confidence').

`too_short` (a recording shorter than one window, padded) is not low quality: its numbers are
shown, its hr unrefined (edge_runtime.hr_refine). Which hr is shown (refined, or counted where
the model calls AF) is EdgeModel.refined_hr's part (edge_runtime.af_beats).
"""
from __future__ import annotations

import numpy as np

from .sidecar import sigmoid
from .spec import FLAG_AMPLITUDE, FLAG_CLIPPING, FLAG_FLAT, FLAG_NAN_GAP

LOW_QUALITY_FLAGS = FLAG_NAN_GAP | FLAG_FLAT | FLAG_CLIPPING | FLAG_AMPLITUDE

# output -> (its value as readout shows it, the decision key it is held against, the reason)
GATES = {
    "quality_logit": ("quality_prob", "quality_min_prob", "model_quality"),
    "hr_confidence": ("hr_confidence", "hr_confidence_min", "hr_confidence"),
}


def dequantize_scalar(q: int, zero_point: int, scale: float) -> np.float32:
    """A scalar head's real value, as EdgeModel.dequantize gives it: (q - zp) is a small integer,
    so its product with the float32 scale is exact in float64 and rounds once to float32, as
    float32 arithmetic on a device does."""
    return np.float32((int(q) - int(zero_point)) * float(scale))


def shown_value(output: str, real: float) -> float:
    """The number a gate compares: a logit through the sigmoid (readout's `_prob`), else itself."""
    return float(sigmoid(real)) if output.endswith("_logit") else float(real)


def withheld(values: dict, decision: dict) -> str | None:
    """The reason a usable window's numbers are (partly) withheld, from readout `values`:
    'model_quality' (all but quality_prob), 'hr_confidence' (hr only) or None. An output the
    model lacks withholds nothing."""
    for output, (name, key, reason) in GATES.items():
        if name in values and values[name] < decision[key]:
            return reason
    return None


def int8_minimum(entry: dict, threshold: float) -> int:
    """The smallest int8 code of a scalar output (a sidecar `outputs` entry) whose shown value
    (`shown_value`) reaches `threshold`: -128 where every code does, 128 where none does. Found by
    evaluating the runtime's own comparison at each of the 256 codes, so a device comparing
    integers decides exactly as the runtime does."""
    codes = np.arange(-128, 128)
    ok = np.array([shown_value(entry["name"], dequantize_scalar(q, entry["zero_point"], entry["scale"]))
                   >= threshold for q in codes])
    if ok.any() and not ok[int(np.argmax(ok)):].all():
        raise ValueError(f"output {entry['name']!r}: its gate is not monotone in the int8 code "
                         f"(scale {entry['scale']})")
    return int(codes[ok][0]) if ok.any() else 128


def int8_minimums(outputs: list[dict], decision: dict) -> dict[str, int]:
    """{output: int8_minimum against its decision threshold} for the gated outputs (GATES) of a
    sidecar's `outputs` list."""
    return {e["name"]: int8_minimum(e, decision[GATES[e["name"]][1]]) for e in outputs if e["name"] in GATES}
