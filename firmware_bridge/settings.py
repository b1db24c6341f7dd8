"""Generate anyppg_model_settings.h and anyppg_dsp_tables.c from an export's sidecar and the
sensor rate chosen at build time: the one source of the C preprocessing's numbers.

Every constant comes from the Python definition it mirrors: the resampler's polyphase taps
from edge_runtime.resample, the band-pass sections and their steady state from
edge_runtime.preprocess.ppg_sos (in integer / Q32 form, with each section's DC gain for the
steady state scipy.signal.sosfilt_zi gives), the padding from scipy's
sosfiltfilt rule, the thresholds from the sidecar's SignalSpec, the input quantisation and the
outputs from the sidecar by name, the flag bits from edge_runtime.spec, the HR refinement's
parameters (anyppg_hr.c) from the sidecar's "hr_refine" block through HRRefine.from_sidecar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from edge_runtime import spec as spec_mod
from edge_runtime.af_beats import LEVEL_PERCENT, AFBeats, min_gap
from edge_runtime.contract import DEFAULT_DECISION, HR_BIN_MAX_BPM, HR_BIN_MIN_BPM, sidecar_inputs
from edge_runtime.hr_refine import HRRefine
from edge_runtime.preprocess import ppg_sos
from edge_runtime.resample import HALF_LEN_PER_RATE, polyphase_taps, resample_ratio
from edge_runtime.show import GATES, LOW_QUALITY_FLAGS, int8_minimum, int8_minimums
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
    taps: np.ndarray          # (up, J) float64: row p holds h[p + j*up] (edge_runtime's order)
    sos: np.ndarray           # (S, 6) float64, scipy's
    bp: dict                  # fixed_point_bandpass: per-section integer constants
    bp_input_bits: int        # the window is scaled to |x| < 2^bits before filtering
    padlen: int
    flat_run_in: int
    flat_count_min: int
    clip_count_min: int
    runs_max: int
    hist: int
    ring: int                 # resampled samples the ring holds
    in_place: bool            # hop >= window: each window is filtered in the ring itself

    @property
    def identity(self) -> bool:
        return self.up == 1 and self.down == 1


def sosfiltfilt_padlen(sos: np.ndarray) -> int:
    """scipy.signal.sosfiltfilt's default padlen for these sections."""
    n_zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - n_zeros)


def q32_split(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """c as k + f / 2^32: k an integer, f an integer in [-2^31, 2^31)."""
    k = np.floor(np.asarray(c, np.float64) + 0.5)
    f = np.round((c - k) * 2.0**32)
    carry = f >= 2.0**31                     # c - k a hair under 0.5 rounds up to 2^31
    return (k + carry).astype(np.int64), np.where(carry, f - 2.0**32, f).astype(np.int64)


def numerator_taps(b: np.ndarray) -> tuple[float, np.ndarray]:
    """b0 b1 b2 as g * (c0, c1, c2) with small integers c (Butterworth sections: (1, 2, 1),
    (1, 0, -1), (1, -2, 1)); ValueError for any other numerator."""
    lead = b[np.flatnonzero(np.abs(b) > 1e-300)[0]] if np.any(b) else 1.0
    c = b / lead
    ci = np.round(c)
    if not (np.allclose(c, ci, rtol=0, atol=1e-9) and np.abs(ci).max() <= 2):
        raise ValueError(f"band-pass section numerator {b.tolist()} is not g * small integers")
    return float(lead), ci.astype(np.int64)


def fixed_point_bandpass(sos: np.ndarray) -> dict:
    """Integer/Q32 constants of anyppg_dsp.c's sections and the input bits (see below).

    A section computes w = c0 x + c1 x1 + c2 x2 (integers), then y from g w - a1 y1 - a2 y2
    with g, -a1, -a2 each k + f / 2^32: the k terms are integer adds into the high word of a
    64-bit sum and the f terms multiply-accumulates, the high word is y, the low word the error
    fed back. Headroom: with steady-state initial conditions a pass maps |x| <= X to at most
    (2 G_k + D_k) X after section k (G_k: l1 norm of the impulse response of the first k
    sections, D_k: their DC gain); so every value of both passes stays below F X with
    F = max_k (2 G_k + D_k)^2, and a section's w below (sum |c|) T P_k X (T: the forward
    pass's factor, P_k: the factor before section k). Both must stay below 2^31 (the sums
    wrap; only these values must fit in 32 bits)."""
    gains, cs = zip(*(numerator_taps(row[:3]) for row in sos))
    kg, fg = q32_split(np.array(gains))
    ka, fa = q32_split(-sos[:, 4:6])
    g = kg + fg / 2.0**32
    a = ka + fa / 2.0**32
    qs = np.concatenate([g[:, None] * np.array(cs), np.ones((len(sos), 1)), -a], axis=1)
    dc = np.array([r[:3].sum() / r[3:].sum() for r in qs])
    kdc, fdc = q32_split(dc)
    imp = np.zeros(20000)
    imp[0] = 1.0
    g_l1 = [np.abs(sps.sosfilt(np.ascontiguousarray(qs[:i]), imp)).sum() for i in range(1, len(qs) + 1)]
    after = [2.0 * gi + abs(float(np.prod(dc[:i + 1]))) for i, gi in enumerate(g_l1)]
    before = [1.0, *after[:-1]]
    grow = max(after) ** 2
    w_grow = max([np.abs(c).sum() * after[-1] * p for c, p, f in zip(cs, before, fg) if f] or [0.0])
    bits = int(math.floor(31 - math.log2(max(grow, w_grow) * 1.01)))
    if bits < 16:
        raise ValueError(f"band-pass growth {grow:.1f} leaves only {bits} bits for the fixed-point filter")
    return {"c": np.array(cs), "kg": kg, "fg": fg, "ka": ka, "fa": fa,
            "kdc": kdc, "fdc": fdc, "bits": bits}


def ring_length(window: int, hop: int) -> tuple[int, bool]:
    """Samples the ring holds and whether windows are filtered in it.

    It holds a window and, behind it, one hop of newer samples (an app may poll once per hop).
    hop >= window: 2 * hop, so that every window (starting on the hop grid) lies in one piece
    and nothing later needs its samples: the filter works in place. Overlapping windows
    (hop < window): window + hop, and poll copies the window out first."""
    return (2 * hop, True) if hop >= window else (window + hop, False)


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
    ring, in_place = ring_length(win, hop)
    span_in = ring * down // up + 2 * taps.shape[1] + 8
    runs_max = span_in // flat_run_in + 4
    hist = 1 << max(2, (max(taps.shape[1] + 3, half // up + 4) - 1).bit_length())
    bp = fixed_point_bandpass(sos)
    return DspConstants(float(sensor_fs), float(spec.ppg_fs), win, hop, up, down, half, taps, sos,
                        bp, bp["bits"], padlen, flat_run_in, flat_count_min,
                        clip_count_min, runs_max, hist, ring, in_place)


def check_quantisation(window: int, scale: float) -> None:
    """anyppg_dsp.c rounds 2 x / scale with a plain float-to-int conversion: a z-scored window
    has |x| <= sqrt(window), so that must stay far inside int32."""
    if not (scale > 0 and 2.0 * math.sqrt(window) / scale < 2.0**30):
        raise ValueError(f"input scale {scale!r} is too small for a {window}-sample window "
                         "(the int8 quantisation would overflow int32)")


def _section_macros(k: DspConstants) -> list[str]:
    """One macro per band-pass section with its constants as literals (the C filter is then
    specialised per section: zero terms vanish, +-1 and +-2 become adds and shifts)."""
    lines = ["/* ANYPPG_BP_S<s>(X) calls X(s, KDC, FDC, C0, C1, C2, KG, FG, KA1, KA2, FA1, FA2):",
             " * b = g * (C0, C1, C2); the DC gain, g, -a1, -a2 = K + F / 2^32. */"]
    bp = k.bp

    def lit(v: int) -> str:
        return f"({int(v)})" if int(v) > -2**31 else "(-2147483647 - 1)"
    for i in range(len(k.sos)):
        vals = [bp["kdc"][i], bp["fdc"][i], *bp["c"][i], bp["kg"][i], bp["fg"][i], *bp["ka"][i], *bp["fa"][i]]
        lines.append(f"#define ANYPPG_BP_S{i}(X) X({i}, " + ", ".join(lit(v) for v in vals) + ")")
    lines.append("#define ANYPPG_BP_FOR_EACH(X) " + " ".join(f"ANYPPG_BP_S{i}(X)" for i in range(len(k.sos))))
    return lines


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


def hr_refine_macros(sidecar: dict, ppg_fs: float) -> list[str]:
    """ANYPPG_HAS_HR_REFINE and, with a sidecar "hr_refine" block, anyppg_hr.c's constants.

    Raises edge_runtime.hr_refine.RefineConfigError (one line) for a block the runtime refuses,
    ValueError for a model rate below four times the highest candidate (anyppg_hr.c's sine
    polynomial covers angles per sample up to pi / 2 only: 15 fs bpm; 1875 bpm at 125 Hz)."""
    cfg = HRRefine.from_sidecar(sidecar)
    if cfg is None:
        return ["/* HR refinement (anyppg_hr.c): none in this sidecar, the network's hr as it is */",
                "#define ANYPPG_HAS_HR_REFINE 0"]
    g = cfg.candidates()
    if g[-1] > 15.0 * ppg_fs:
        raise ValueError(f"hr_refine: candidates up to {g[-1]:g} bpm need a model input of at least "
                         f"{g[-1] / 15.0:g} Hz for the C refinement, not {ppg_fs:g} Hz")
    # A window uses the candidates within radius of its hr: at most 2 radius / step + 1 of them
    # (one more for float32's rounding of the candidates; anyppg_hr.c caps at this anyway).
    used = min(len(g), int(math.floor(2.0 * cfg.radius_bpm / cfg.step_bpm + 1e-9)) + 2)
    return ["/* HR refinement (anyppg_hr.c, edge_runtime/hr_refine.py): the sidecar's hr_refine */",
            "#define ANYPPG_HAS_HR_REFINE 1",
            f"#define ANYPPG_HR_REFINE_SIGMA_BPM {cfloat(cfg.sigma_bpm)}",
            f"#define ANYPPG_HR_REFINE_POWER {cfloat(cfg.power)}",
            f"#define ANYPPG_HR_REFINE_RADIUS_BPM {cfloat(cfg.radius_bpm)}",
            f"#define ANYPPG_HR_REFINE_STEP_BPM {cfloat(cfg.step_bpm)}",
            f"#define ANYPPG_HR_BIN_MIN_BPM {cfloat(HR_BIN_MIN_BPM)}",
            f"#define ANYPPG_HR_BIN_MAX_BPM {cfloat(HR_BIN_MAX_BPM)}",
            f"#define ANYPPG_HR_REFINE_N_CANDIDATES {len(g)} /* BIN_MIN + k STEP <= BIN_MAX */",
            f"#define ANYPPG_HR_REFINE_MAX_USED {used} /* candidates one window can use */",
            "/* half the DFT's angle per sample for 1 bpm: pi / (60 * ANYPPG_PPG_FS_HZ) */",
            f"#define ANYPPG_HR_REFINE_HALF_RAD_PER_BPM {cfloat(math.pi / (60.0 * ppg_fs))}"]


def show_macros(sidecar: dict, decision: dict) -> list[str]:
    """anyppg_hr_show's constants: the low-quality flag mask and, per gated output, the smallest
    int8 code the Python runtime shows (edge_runtime.show.int8_minimums; -128 where the model
    has no such output)."""
    mins = int8_minimums(sidecar.get("outputs", []), decision)
    return ["/* ... as the int8 codes anyppg_hr_show compares (edge_runtime/show.py) */",
            f"#define ANYPPG_FLAGS_LOW_QUALITY {LOW_QUALITY_FLAGS}u",
            *(f"#define ANYPPG_SHOW_{cname(n)}_MIN_Q ({mins.get(n, -128)})" for n in GATES)]


def af_beats_macros(sidecar: dict, spec: SignalSpec, window: int) -> list[str]:
    """ANYPPG_HAS_AF_BEATS and, with a sidecar "af_beats" block, anyppg_hr.c's constants for the
    beat count in AF (edge_runtime/af_beats.py). Raises AFBeatsConfigError (one line) for a
    block the runtime refuses, ValueError for a model without an af_logit output."""
    cfg = AFBeats.from_sidecar(sidecar)
    if cfg is None:
        return ["/* HR by beat count in AF (anyppg_hr.c): none in this sidecar */",
                "#define ANYPPG_HAS_AF_BEATS 0"]
    af = next((e for e in sidecar.get("outputs", []) if e["name"] == "af_logit"), None)
    if af is None:
        raise ValueError("af_beats needs an af_logit output; the sidecar has none")
    fs = float(spec.ppg_fs)
    return ["/* HR by beat count where the model calls AF (anyppg_hr.c, edge_runtime/af_beats.py) */",
            "#define ANYPPG_HAS_AF_BEATS 1",
            f"#define ANYPPG_AF_BEATS_AF_LOGIT_MIN_Q ({int8_minimum(af, cfg.min_af_prob)}) "
            f"/* af_prob >= {cfg.min_af_prob:g} */",
            f"#define ANYPPG_AF_BEATS_FRACTION {cfloat(np.float32(cfg.fraction))}",
            f"#define ANYPPG_AF_BEATS_LEVEL_RANK {(LEVEL_PERCENT * (window - 1)) // 100} "
            f"/* the {LEVEL_PERCENT}th-percentile sample, in ascending order */",
            f"#define ANYPPG_AF_BEATS_MIN_GAP {min_gap(fs)} /* samples: 60 / {HR_BIN_MAX_BPM:g} bpm */",
            f"#define ANYPPG_AF_BEATS_60FS {cfloat(np.float32(60.0 * fs))}"]


def settings_header(sidecar: dict, sensor_fs: float) -> str:
    """anyppg_model_settings.h for this sidecar and sensor rate (deterministic text)."""
    spec = SignalSpec.from_dict(sidecar["spec"])
    k = dsp_constants(spec, sensor_fs)
    ppg = [e for e in sidecar_inputs(sidecar) if e["name"] == "ppg"]
    if not ppg:
        raise ValueError("the sidecar has no `ppg` input: nothing for the C preprocessing to feed")
    check_quantisation(k.window, float(ppg[0]["scale"]))
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
        f"#define ANYPPG_RING_LEN {k.ring} /* resampled samples kept: a window + a hop behind it */",
        f"#define ANYPPG_DSP_IN_PLACE {int(k.in_place)} /* 1: windows are filtered in the ring */", "",
        "/* Polyphase resampler (edge_runtime/resample.py): fs_out / fs_in = UP / DOWN */",
        f"#define ANYPPG_RS_IDENTITY {int(k.identity)}",
        f"#define ANYPPG_RS_UP {k.up}",
        f"#define ANYPPG_RS_DOWN {k.down}",
        f"#define ANYPPG_RS_HALF {k.half}",
        f"#define ANYPPG_RS_TAPS {k.taps.shape[1]}",
        f"#define ANYPPG_RS_HIST {k.hist}",
        "/* [phase][i]: h[phase + (TAPS - 1 - i) * UP], oldest input first */",
        "extern const float anyppg_rs_taps[ANYPPG_RS_UP * ANYPPG_RS_TAPS];",
        "extern const float anyppg_rs_gain_m1[ANYPPG_RS_UP]; /* sum of a phase's taps - 1 */", "",
        f"/* Band-pass {spec.ppg_band_hz[0]:g}-{spec.ppg_band_hz[1]:g} Hz, Butterworth order "
        f"{spec.ppg_filter_order}, zero phase (sosfiltfilt) */",
        f"#define ANYPPG_BP_SECTIONS {len(k.sos)}",
        f"#define ANYPPG_BP_PADLEN {k.padlen} /* odd extension at each end (sosfiltfilt) */",
        f"#define ANYPPG_BP_INPUT_BITS {k.bp_input_bits}",
        *_section_macros(k), "",
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
        *(f"#define ANYPPG_DECISION_{cname(n)} {cfloat(v)}" for n, v in sorted(dec.items())),
        *show_macros(sidecar, dec), "",
        *hr_refine_macros(sidecar, spec.ppg_fs), "",
        *af_beats_macros(sidecar, spec, k.window), "",
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
    """anyppg_dsp_tables.c: the resampler's taps by phase (deterministic text)."""
    k = dsp_constants(SignalSpec.from_dict(sidecar["spec"]), sensor_fs)
    gain = k.taps.sum(axis=1) - 1.0
    return "\n".join([
        "/* anyppg_dsp_tables.c: generated by firmware_bridge/settings.py for a "
        f"{k.sensor_fs:g} Hz sensor. Do not edit. */",
        '#include "anyppg_model_settings.h"', "",
        f"/* scipy.signal.firwin({2 * k.half + 1}, 1/{max(k.up, k.down)}, window=('kaiser', 5.0))"
        f" * {k.up}, by phase, each row oldest input first */",
        "const float anyppg_rs_taps[ANYPPG_RS_UP * ANYPPG_RS_TAPS] = {",
        _c_array(k.taps[:, ::-1].reshape(-1)), "};",
        "const float anyppg_rs_gain_m1[ANYPPG_RS_UP] = {", _c_array(gain), "};", ""])
