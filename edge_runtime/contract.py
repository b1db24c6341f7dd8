"""The model's I/O contract: what every shipped model takes and returns, by name.

One module defines the facts the whole chain shares (training heads, the export's sidecar, the
edge runtime, the C bundle, the MCU harness): input and output names, units, kinds, the order
in which an exported graph lists its outputs, and the decision thresholds a device uses to
withhold a number. Consumers read a model's actual I/O from its sidecar (`model_int8.json`,
also embedded in the `.tflite` metadata) *by name*, and use this module only to know what a
name means; a model may omit optional outputs, never rename required ones.

Sidecar (schema_version 2), the part this contract fixes:

    "inputs":  [{"name": "ppg", "index", "position", "shape": [1, L, 1], "layout": "NWC",
                 "dtype": "int8", "scale", "zero_point", "unit": "z-score"}, ...]
    "outputs": [{"name", "index", "position", "shape", "dtype", "scale", "zero_point",
                 "unit", "kind"}, ...]
    "decision": {"quality_min_prob": 0.5, "hr_confidence_min": 0.5}
    "hr_refine": {"sigma_bpm", "power", "radius_bpm", "step_bpm", "method"}   (optional: the HR a
                 device shows is the network's hr refined on the window's spectrum,
                 edge_runtime.hr_refine; absent: the network's hr as it is)
    "polarity": {"default": "up"|"auto", "vote_windows"}   (optional: the stream's polarity when
                 the caller declares none, chosen by the export on validation recordings,
                 edge_runtime.polarity; absent: "up", the contract's way up)

Schema version 1 (one "input" object, no "decision") is still read: `sidecar_inputs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SIDECAR_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Port:
    """One named model input or output.

    kind: 'embedding' (a vector), 'regression' (label units), 'probability' (0-1, already a
          probability), 'logit' (apply a sigmoid for a probability), 'signal' (an input window).
    """

    name: str
    unit: str
    kind: str
    required: bool
    doc: str


# The accelerometer input's fixed scale (edge_runtime.accel): each axis in g, resampled and
# band-passed exactly like the PPG, divided by ACCEL_SCALE_G and clipped to +-ACCEL_CLIP. Not
# z-scored: per-window z-scoring would blow a still wrist's sensor noise up to look like motion
# and would discard how hard the arm moves, which is what a confidence head needs. A still (or
# absent) accelerometer reads 0.
ACCEL_SCALE_G = 0.5
ACCEL_CLIP = 8.0
ACCEL_PREPROCESSING = (f"ppg-band-pass per window, g / {ACCEL_SCALE_G:g}, "
                       f"clipped to +-{ACCEL_CLIP:g}")

# Inputs. `ppg` is the preprocessed window of edge_runtime (band-passed, z-scored, quantised);
# `accel` is an optional second input for motion-aware students: 3-axis acceleration resampled
# to the PPG rate and cut on the same window, then ACCEL_PREPROCESSING.
INPUTS: dict[str, Port] = {
    "ppg": Port("ppg", "z-score", "signal", True, "(1, L, 1) preprocessed PPG window, NWC"),
    "accel": Port("accel", f"g/{ACCEL_SCALE_G:g}", "signal", False,
                  "(1, L, 3) accelerometer x, y, z on the PPG window's samples, NWC: "
                  + ACCEL_PREPROCESSING),
}

# Outputs in the order an exported graph lists them (optional ones only when present).
OUTPUTS: dict[str, Port] = {
    "embedding": Port("embedding", "embedding", "embedding", True,
                      "(1, D) the feature vector probes and distillation use"),
    "hr": Port("hr", "bpm", "regression", True,
               "heart rate: the expectation of the HR distribution over HR_BINS_BPM"),
    "hr_confidence": Port("hr_confidence", "probability", "probability", True,
                          "0-1: the model's own estimate that its hr is within "
                          "HR_CONFIDENT_WITHIN_BPM of the truth (trained on the network's hr); "
                          "below the sidecar's decision.hr_confidence_min (chosen on the errors "
                          "of the HR a device shows) a device withholds the number"),
    "af_logit": Port("af_logit", "logit", "logit", True, "atrial fibrillation logit"),
    "quality_logit": Port("quality_logit", "logit", "logit", True,
                          "signal-quality logit (sigmoid -> P(usable window))"),
    "rr": Port("rr", "breaths/min", "regression", False, "respiratory rate"),
    "sbp": Port("sbp", "mmHg", "regression", False, "systolic blood pressure"),
    "dbp": Port("dbp", "mmHg", "regression", False, "diastolic blood pressure"),
}
OUTPUT_ORDER: tuple[str, ...] = tuple(OUTPUTS)
REQUIRED_OUTPUTS: tuple[str, ...] = tuple(n for n, p in OUTPUTS.items() if p.required)
UNITS: dict[str, str] = {n: p.unit for n, p in {**INPUTS, **OUTPUTS}.items()}

# HR as a distribution: bin centres 30, 34, ..., 230 bpm (51 bins), wide enough for a resting
# adult at night and a runner at full effort, read out as the expectation.
HR_BIN_MIN_BPM = 30.0
HR_BIN_MAX_BPM = 230.0
HR_BIN_STEP_BPM = 4.0
HR_CONFIDENT_WITHIN_BPM = 10.0

# Defaults of the sidecar's "decision" block (a model's sidecar may carry tuned values).
DEFAULT_DECISION = {"quality_min_prob": 0.5, "hr_confidence_min": 0.5}


def hr_bin_centres() -> list[float]:
    """Centres of the HR bins in bpm, ascending."""
    n = int(round((HR_BIN_MAX_BPM - HR_BIN_MIN_BPM) / HR_BIN_STEP_BPM)) + 1
    return [HR_BIN_MIN_BPM + i * HR_BIN_STEP_BPM for i in range(n)]


class ContractError(ValueError):
    """A model's declared I/O does not satisfy the contract (one line, names the problem)."""


def sidecar_inputs(sidecar: dict[str, Any]) -> list[dict[str, Any]]:
    """The sidecar's inputs as a list (schema 2 "inputs", or schema 1's single "input")."""
    if "inputs" in sidecar:
        return list(sidecar["inputs"])
    if "input" in sidecar:
        return [dict(sidecar["input"], name=sidecar["input"].get("name") or "ppg")]
    raise ContractError("sidecar declares no inputs")


def check_ports(sidecar: dict[str, Any], require: tuple[str, ...] = ("embedding",)) -> None:
    """Raise ContractError unless every input/output name is known, unique and `require`d
    outputs are present. Older models lack hr_confidence; callers pass what they need."""
    ins = [e.get("name") for e in sidecar_inputs(sidecar)]
    outs = [e.get("name") for e in sidecar.get("outputs", [])]
    for kind, names, known in (("input", ins, INPUTS), ("output", outs, OUTPUTS)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ContractError(f"unknown model {kind}(s) {unknown}; known: {', '.join(known)}")
        if len(set(names)) != len(names):
            raise ContractError(f"duplicate model {kind} names in {names}")
    if "ppg" not in ins:
        raise ContractError(f"model has no 'ppg' input (inputs: {ins})")
    missing = [n for n in require if n not in outs]
    if missing:
        raise ContractError(f"model lacks required output(s) {missing} (outputs: {outs})")
