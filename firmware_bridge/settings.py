"""Generate anyppg_model_settings.h and anyppg_dsp_tables.c from an export's sidecar and the
sensor rate chosen at build time: the one source of the C preprocessing's numbers.

Every constant comes from the Python definition it mirrors: the resampler's polyphase taps
from edge_runtime.resample, the band-pass sections and their steady state from
edge_runtime.preprocess.ppg_sos / scipy.signal.sosfilt_zi, the padding from scipy's
sosfiltfilt rule, the thresholds from the sidecar's SignalSpec, the input quantisation and the
outputs from the sidecar by name, the flag bits from edge_runtime.spec.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from edge_runtime import spec as spec_mod
from edge_runtime.contract import DEFAULT_DECISION, sidecar_inputs
from edge_runtime.preprocess import ppg_sos
from edge_runtime.resample import HALF_LEN_PER_RATE, polyphase_taps, resample_ratio
from edge_runtime.spec import SignalSpec


def cfloat(v: float) -> str:
    """A C float literal that reads back as exactly float32(v)."""
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise ValueError(f"constant {v!r} is not a finite float32")
    s = f"{f:.9g}"
    if not any(c in s for c in ".en"):
        s += ".0"
    return s + "f"


def cname(name: str) -> str:
    """An output/input name as a C macro part (upper case, non-alphanumerics to '_')."""
    return "".join(c if c.isalnum() else "_" for c in name).upper()


@dataclass(frozen=True)
class DspConstants:
    """What anyppg_dsp.c needs for one model spec and one sensor rate."""

    sensor_fs: float
    ppg_fs: float
    window: int
    hop: int
    up: int
    down: int
    half: int
    taps: np.ndarray          # (up, J) float64
    sos: np.ndarray           # (S, 6) float64, scipy's
    sos_q29: np.ndarray       # (S, 5) int64: b0 b1 b2 a1 a2 * 2^29, rounded
    dc_q29: np.ndarray        # (S,) int64: each section's DC gain * 2^29 (its steady state)
    bp_input_bits: int        # the window is scaled to |x| < 2^bits before filtering
    padlen: int
    flat_run_in: int
    flat_count_min: int
    clip_count_min: int
    runs_max: int
    hist: int

    @property
    def identity(self) -> bool:
        return self.up == 1 and self.down == 1


def sosfiltfilt_padlen(sos: np.ndarray) -> int:
    """scipy.signal.sosfiltfilt's default padlen for these sections."""
    n_zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - n_zeros)


def fixed_point_bandpass(sos: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Q29 sections for anyppg_dsp.c's filter, their DC gains, and the input headroom.

    The headroom bound: each pass can grow a signal by at most G, the largest l1 norm of the
    impulse response of the first k sections; two passes G^2. Products of a Q29 coefficient
    (|c| <= 2) and a sample below 2^29 then stay below 2^59, and five of them below 2^62."""
    if np.abs(sos[:, [0, 1, 2, 4, 5]]).max() > 2.0:
        raise ValueError("band-pass coefficients beyond +-2 do not fit the Q29 filter")
    q = np.round(sos[:, [0, 1, 2, 4, 5]] * 2.0**29).astype(np.int64)
    qs = np.concatenate([q[:, :3], np.ones((len(q), 1)) * 2.0**29, q[:, 3:]], axis=1) / 2.0**29
    dc = np.array([r[:3].sum() / r[3:].sum() for r in qs])
    imp = np.zeros(20000)
    imp[0] = 1.0
    gain = max(np.abs(sps.sosfilt(np.ascontiguousarray(qs[:k]), imp)).sum() for k in range(1, len(qs) + 1))
    bits = 29 - int(math.ceil(math.log2(max(gain, 1.0) ** 2))) - 1
    if bits < 16:
        raise ValueError(f"band-pass gain {gain:.1f} leaves only {bits} bits for the fixed-point filter")
    return q, np.round(dc * 2.0**29).astype(np.int64), bits


def dsp_constants(spec: SignalSpec, sensor_fs: float) -> DspConstants:
    """Every number of the C preprocessing for `spec` and a sensor at `sensor_fs` Hz.

    Raises ValueError (one line) for a rate the resampler cannot reach exactly."""
    up, down = resample_ratio(sensor_fs, spec.ppg_fs)
    win = spec.ppg_len
    hop = max(1, int(round(spec.hop_s * spec.ppg_fs)))
    if up == 1 and down == 1:
        half, taps = 0, np.ones((1, 1))
    else:
        half, taps = HALF_LEN_PER_RATE * max(up, down), polyphase_taps(up, down)
    sos = ppg_sos(spec)
    padlen = sosfiltfilt_padlen(sos)
    if padlen >= win:
        raise ValueError(f"window of {win} samples is too short for the band-pass (padlen {padlen})")
    # Thresholds as integer counts, found with the same float64 expressions Python evaluates.
    flat_run_in = max(2, int(round(spec.flat_run_s * sensor_fs)))
    flat_count_min = math.ceil(spec.flat_run_s * spec.ppg_fs)
    clip_count_min = next(c for c in range(win + 2) if c / win > spec.clip_fraction)
    ring = win + hop
    span_in = ring * down // up + 2 * taps.shape[1] + 8
    runs_max = span_in // flat_run_in + 4
    hist = 1 << max(2, (max(taps.shape[1] + 3, half // up + 4) - 1).bit_length())
    q29, dc29, bits = fixed_point_bandpass(sos)
    return DspConstants(float(sensor_fs), float(spec.ppg_fs), win, hop, up, down, half, taps, sos,
                        q29, dc29, bits, padlen, flat_run_in, flat_count_min,
                        clip_count_min, runs_max, hist)


def _io_macros(sidecar: dict) -> list[str]:
    lines = ["/* Model inputs (by name from the sidecar; position = place in the subgraph) */",
             f"#define ANYPPG_NUM_INPUTS {len(sidecar_inputs(sidecar))}"]
    for i, e in enumerate(sidecar_inputs(sidecar)):
        n = cname(e["name"])
        size = int(np.prod(e.get("shape", [1])[1:]))
        lines += [f"#define ANYPPG_INPUT_{n}_POSITION {int(e.get('position', i))}",
                  f"#define ANYPPG_INPUT_{n}_SIZE {size}",
                  f"#define ANYPPG_INPUT_{n}_SCALE {cfloat(e['scale'])}",
                  f"#define ANYPPG_INPUT_{n}_ZERO_POINT ({int(e['zero_point'])})"]
    outs = sidecar.get("outputs", [])
    lines += ["", "/* Model outputs: real value = scale * (q - zero_point), in `unit` */",
              f"#define ANYPPG_NUM_OUTPUTS {len(outs)}"]
    xs = []
    for i, e in enumerate(outs):
        n = cname(e["name"])
        size = int(np.prod(e.get("shape", [1])[1:]))
        pos = int(e.get("position", i))
        unit = str(e.get("unit", "")).replace('"', "'")
        lines += [f"#define ANYPPG_OUTPUT_{n}_POSITION {pos}",
                  f"#define ANYPPG_OUTPUT_{n}_SIZE {size}",
                  f"#define ANYPPG_OUTPUT_{n}_SCALE {cfloat(e['scale'])}",
                  f"#define ANYPPG_OUTPUT_{n}_ZERO_POINT ({int(e['zero_point'])})",
                  f'#define ANYPPG_OUTPUT_{n}_UNIT "{unit}"']
        xs.append(f'    X({e["name"]}, {pos}, {size}, {cfloat(e["scale"])}, '
                  f'({int(e["zero_point"])}), "{unit}")')
    lines += ["/* X(name, position, size, scale, zero_point, unit) for each output */",
              "#define ANYPPG_OUTPUTS(X) \\", " \\\n".join(xs) if xs else "    /* none */"]
    return lines


def settings_header(sidecar: dict, sensor_fs: float) -> str:
    """anyppg_model_settings.h for this sidecar and sensor rate (deterministic text)."""
    spec = SignalSpec.from_dict(sidecar["spec"])
    k = dsp_constants(spec, sensor_fs)
    dec = {**DEFAULT_DECISION, **sidecar.get("decision", {})}
    flags = [f"#define ANYPPG_FLAG_{name.upper()} {bit}u" for name, bit in spec_mod.FLAG_NAMES.items()]
    lines = [
        "/* anyppg_model_settings.h: generated by firmware_bridge/settings.py from the model's",
        f" * sidecar ({sidecar.get('file', 'model_int8.tflite')}, sha256 {sidecar.get('sha256', '?')}).",
        " * Do not edit: regenerate with `anyppg firmware`. */",
        "#ifndef ANYPPG_MODEL_SETTINGS_H", "#define ANYPPG_MODEL_SETTINGS_H", "",
        "#include <stdint.h>", "",
        "/* Signal spec: rates, window, hop */",
        f"#define ANYPPG_SENSOR_FS_HZ {cfloat(k.sensor_fs)}",
        f"#define ANYPPG_PPG_FS_HZ {cfloat(k.ppg_fs)}",
        f"#define ANYPPG_WINDOW_LEN {k.window}",
        f"#define ANYPPG_HOP_LEN {k.hop}",
        "#define ANYPPG_RING_LEN (ANYPPG_WINDOW_LEN + ANYPPG_HOP_LEN)", "",
        "/* Polyphase resampler (edge_runtime/resample.py): fs_out / fs_in = UP / DOWN */",
        f"#define ANYPPG_RS_IDENTITY {int(k.identity)}",
        f"#define ANYPPG_RS_UP {k.up}",
        f"#define ANYPPG_RS_DOWN {k.down}",
        f"#define ANYPPG_RS_HALF {k.half}",
        f"#define ANYPPG_RS_TAPS {k.taps.shape[1]}",
        f"#define ANYPPG_RS_HIST {k.hist}",
        "extern const float anyppg_rs_taps[ANYPPG_RS_UP * ANYPPG_RS_TAPS]; /* [phase][j] */",
        "extern const float anyppg_rs_gain_m1[ANYPPG_RS_UP]; /* sum of a phase's taps - 1 */", "",
        f"/* Band-pass {spec.ppg_band_hz[0]:g}-{spec.ppg_band_hz[1]:g} Hz, Butterworth order "
        f"{spec.ppg_filter_order}, zero phase (sosfiltfilt) */",
        f"#define ANYPPG_BP_SECTIONS {len(k.sos)}",
        f"#define ANYPPG_BP_PADLEN {k.padlen} /* odd extension at each end (sosfiltfilt) */",
        f"#define ANYPPG_BP_INPUT_BITS {k.bp_input_bits}",
        "extern const int32_t anyppg_bp_q29[ANYPPG_BP_SECTIONS][5]; /* b0 b1 b2 a1 a2, Q29 */",
        "extern const int32_t anyppg_bp_dc_q29[ANYPPG_BP_SECTIONS]; /* DC gain, Q29 */", "",
        "/* Normalisation and quality thresholds (SignalSpec) */",
        f"#define ANYPPG_ZSCORE_EPS {cfloat(spec.zscore_eps)}",
        f"#define ANYPPG_FLAT_REL_STD {cfloat(spec.flat_rel_std)}",
        f"#define ANYPPG_FLAT_RUN_IN {k.flat_run_in} /* identical sensor samples = a flat run */",
        f"#define ANYPPG_FLAT_COUNT_MIN {k.flat_count_min} /* window samples in flat runs -> flat */",
        f"#define ANYPPG_FLAT_RUNS_MAX {k.runs_max}",
        f"#define ANYPPG_CLIP_COUNT_MIN {k.clip_count_min} /* samples at min or max -> clipping */",
        f"#define ANYPPG_MAX_ABS_Z {cfloat(spec.max_abs_z)}", "",
        "/* Quality flag bits (edge_runtime/spec.py) */", *flags, "",
        *_io_macros(sidecar), "",
        "/* Decision thresholds: below these a device withholds the number */",
        *(f"#define ANYPPG_DECISION_{cname(n)} {cfloat(v)}" for n, v in sorted(dec.items())), "",
        "#endif /* ANYPPG_MODEL_SETTINGS_H */", ""]
    return "\n".join(lines)


def _c_array(values, per_line: int = 6) -> str:
    """Initialiser body: a flat list for 1-D values, one braced row per row for 2-D."""
    a = np.asarray(values, np.float64)
    if a.ndim == 2:
        return ",\n".join("    {" + ", ".join(cfloat(v) for v in row) + "}" for row in a)
    items = [cfloat(v) for v in a.reshape(-1)]
    rows = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "    " + ",\n    ".join(rows)


def dsp_tables_c(sidecar: dict, sensor_fs: float) -> str:
    """anyppg_dsp_tables.c: the resampler taps and band-pass coefficients (deterministic text)."""
    k = dsp_constants(SignalSpec.from_dict(sidecar["spec"]), sensor_fs)
    gain = k.taps.sum(axis=1) - 1.0
    q29 = ",\n".join("    {" + ", ".join(f"{int(v)}" for v in row) + "}" for row in k.sos_q29)
    dc29 = ", ".join(f"{int(v)}" for v in k.dc_q29)
    return "\n".join([
        "/* anyppg_dsp_tables.c: generated by firmware_bridge/settings.py for a "
        f"{k.sensor_fs:g} Hz sensor. Do not edit. */",
        '#include "anyppg_model_settings.h"', "",
        f"/* scipy.signal.firwin({2 * k.half + 1}, 1/{max(k.up, k.down)}, window=('kaiser', 5.0))"
        f" * {k.up}, by phase */",
        "const float anyppg_rs_taps[ANYPPG_RS_UP * ANYPPG_RS_TAPS] = {", _c_array(k.taps.reshape(-1)),
        "};",
        "const float anyppg_rs_gain_m1[ANYPPG_RS_UP] = {", _c_array(gain), "};", "",
        "/* scipy.signal.butter sections (sos) * 2^29: b0 b1 b2 a1 a2 */",
        "const int32_t anyppg_bp_q29[ANYPPG_BP_SECTIONS][5] = {", q29, "};",
        "const int32_t anyppg_bp_dc_q29[ANYPPG_BP_SECTIONS] = {" + dc29 + "};", ""])
