"""Write the generated C: anyppg_model.h (ports, sizes, quantisation) and anyppg_model.c
(weights and per-layer constants as const arrays, the static arena, anyppg_invoke)."""
from __future__ import annotations

import re

import numpy as np

from .lower import Layer, Lowered
from .plan import Plan

PREFIX = "anyppg_model"


def c_ident(name: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    return s if s and not s[0].isdigit() else f"p_{s}"


def _array(ctype: str, name: str, values, per_line: int = 24) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{max(1, len(vals))}] = {{\n    {body}\n}};\n"


def conv_weights(l: Layer) -> tuple[np.ndarray, np.ndarray, int]:
    """(weights as laid out for the kernel, folded bias, kc4)."""
    p = l.p
    in_off = -p["in_zp"]
    w = p["w"]
    if l.kind == "conv":
        kc = p["k"] * p["in_ch"]
        kc4 = (kc + 3) // 4 * 4
        rows = np.zeros((p["out_ch"], kc4), np.int32)
        rows[:, :kc] = w.reshape(p["out_ch"], kc)
        folded = p["bias"] + in_off * w.reshape(p["out_ch"], kc).sum(axis=1).astype(np.int64)
        return rows, folded, kc4
    folded = p["bias"] + in_off * w.sum(axis=0).astype(np.int64)      # w is [K][OC]
    return w, folded, 0


def pair_interleaved(rows: np.ndarray) -> np.ndarray:
    """(OC, kc4) conv rows in the kernels' layout: each channel pair's two rows interleaved
    per 4 window positions (one LDRD feeds both), an odd last row plain."""
    oc, kc4 = rows.shape
    n = oc // 2 * 2
    pairs = rows[:n].reshape(n // 2, 2, kc4 // 4, 4).transpose(0, 2, 1, 3).reshape(-1)
    return np.concatenate([pairs, rows[n:].reshape(-1)])


def dw_weights16(w: np.ndarray) -> np.ndarray:
    """Depthwise [K][OC] weights in the kernels' int16 layout (anyppg_nn.h): groups of 4 channels,
    per tap (c0, c2, c1, c3), missing channels of the last group 0. Returns (G, K, 4)."""
    k, oc = w.shape
    g = (oc + 3) // 4
    padded = np.zeros((k, g * 4), np.int32)
    padded[:, :oc] = w
    return padded.reshape(k, g, 4)[:, :, [0, 2, 1, 3]].transpose(1, 0, 2)


RQ_MAX_SHIFT = 22    # anyppg_nn.c rq_fast: out_zp * 2^e folded into the rounding term fits int32


def rq_fast(l: Layer) -> bool:
    """Whether the kernels may requantise `l`'s accumulators the short way (anyppg_nn.c rq_fast):
    every channel shifts right by 1..22 and no accumulator can reach 2^30 in magnitude
    (|folded bias| + 128 * sum|w| per channel, over any int8 input)."""
    p = l.p
    if max(p["shift"]) > -1 or min(p["shift"]) < -RQ_MAX_SHIFT or min(p["mult"]) <= 0:
        return False
    w, folded, _ = conv_weights(l)
    w_abs = np.abs(w).sum(axis=1) if l.kind == "conv" else np.abs(w).sum(axis=0)
    return bool(np.all(np.abs(folded) + 128 * w_abs.astype(np.int64) < 2**30))


def rq_pairs(p: dict) -> np.ndarray:
    """Per channel (mult, 2^(e-1) + out_zp * 2^e) with e = -shift (anyppg_nn.c rq_fast)."""
    e = -np.asarray(p["shift"], np.int64)
    return np.stack([np.asarray(p["mult"], np.int64), (1 << (e - 1)) + p["out_zp"] * (1 << e)], axis=1)


def _check_i32(v: np.ndarray, what: str):
    if np.any(v > 2**31 - 1) or np.any(v < -2**31):
        from .lower import CodegenError
        raise CodegenError(f"{what}: folded bias overflows int32")


def _conv_params(name: str, l: Layer, consts: list[str]) -> None:
    """Emit `l`'s constants and its anyppg_conv_params block `name`."""
    p = l.p
    w, folded, kc4 = conv_weights(l)
    _check_i32(folded, f"layer {name}")
    fast = rq_fast(l)
    if l.kind == "conv":
        consts.append(_array("int8_t", f"{name}_w", pair_interleaved(w)))
        wfield = f".w = {name}_w"
    else:
        consts.append(_array("int16_t", f"{name}_w", dw_weights16(w)))
        wfield = f".w16 = {name}_w"
    consts.append(_array("int32_t", f"{name}_b", folded))
    if fast:          # the short requantisation's constants only
        consts += [_array("int32_t", f"{name}_q", rq_pairs(p)), _array("uint8_t", f"{name}_e", -np.asarray(p["shift"]))]
        rq = f".rq = {name}_q, .rq_e = {name}_e"
    else:
        consts += [_array("int32_t", f"{name}_m", p["mult"]), _array("int8_t", f"{name}_s", p["shift"])]
        rq = f".mult = {name}_m, .shift = {name}_s"
    pool = p.get("pool")
    kinds = {"maxpool": "ANYPPG_POOL_MAX", "avgpool": "ANYPPG_POOL_AVG"}
    pool_fields = (f", .pool_kind = {kinds[pool['kind']]}, .pool_act_min = {pool['act_min']}, "
                   f".pool_act_max = {pool['act_max']}, .pool_k = {pool['k']}, "
                   f".pool_stride = {pool['stride']}, .pool_pad = {pool['pad']}, "
                   f".pool_out_len = {pool['out_len']}, .pool_max_raw = {int(max(p['shift']) <= 0)}") if pool else ""
    full = int(p["act_min"] == -128 and p["act_max"] == 127)
    consts.append(
        f"static const anyppg_conv_params {name} = {{ {wfield}, .bias = {name}_b, {rq},\n"
        f"    .in_len = {p['in_len']}, .in_ch = {p['in_ch']}, .out_len = {p['out_len']}, "
        f".out_ch = {p['out_ch']}, .k = {p['k']}, .stride = {p['stride']}, .dil = {p['dil']}, "
        f".pad = {p['pad']}, .kc4 = {kc4}, .depth_mult = {p['depth_mult']},\n"
        f"    .in_off = {-p['in_zp']}, .out_zp = {p['out_zp']}, .act_min = {p['act_min']}, "
        f".act_max = {p['act_max']}, .rq_fast = {int(fast)}, .full_range = {full}{pool_fields} }};\n")


def _emit_conv(i: int, l: Layer, consts: list[str]) -> str:
    _conv_params(f"c{i}", l, consts)
    then = l.p.get("then")
    if then is not None:          # depthwise -> 1x1 conv (plan.fuse)
        _conv_params(f"c{i}_pw", then, consts)
        return f"anyppg_dwconv_pw(&c{i}, &c{i}_pw, {{in0}}, {{out}}, {{scratch}});"
    fn = "anyppg_conv" if l.kind == "conv" else "anyppg_dwconv"
    return f"{fn}(&c{i}, {{in0}}, {{out}}, {{scratch}});"


def _emit_fc(i: int, l: Layer, consts: list[str]) -> str:
    p = l.p
    folded = p["bias"] + (-p["in_zp"]) * p["w"].sum(axis=1).astype(np.int64)
    _check_i32(folded, f"layer {i}")
    consts += [_array("int8_t", f"w{i}", p["w"]), _array("int32_t", f"b{i}", folded),
               _array("int32_t", f"m{i}", p["mult"]), _array("int8_t", f"s{i}", p["shift"])]
    consts.append(f"static const anyppg_fc_params c{i} = {{ .w = w{i}, .bias = b{i}, .mult = m{i}, "
                  f".shift = s{i}, .n_in = {p['n_in']}, .n_out = {p['n_out']}, .out_zp = {p['out_zp']}, "
                  f".act_min = {p['act_min']}, .act_max = {p['act_max']} }};\n")
    return f"anyppg_fc(&c{i}, {{in0}}, {{out}});"


def _emit_pool(i, l: Layer, consts: list[str]) -> str:
    p = l.p
    consts.append(f"static const anyppg_pool_params c{i} = {{ .in_len = {p['in_len']}, .ch = {p['ch']}, "
                  f".out_len = {p['out_len']}, .k = {p['k']}, .stride = {p['stride']}, .pad = {p['pad']}, "
                  f".act_min = {p['act_min']}, .act_max = {p['act_max']} }};\n")
    return f"anyppg_{l.kind}(&c{i}, {{in0}}, {{out}});"


def _emit_add(i: int, l: Layer, consts: list[str]) -> str:
    p = l.p
    consts.append(f"static const anyppg_add_params c{i} = {{ .n = {p['n']}, .left_shift = {p['left_shift']}, "
                  f".a_off = {-p['a_zp']}, .b_off = {-p['b_zp']}, .out_zp = {p['out_zp']}, "
                  f".a_mult = {p['a_mult']}, .b_mult = {p['b_mult']}, .out_mult = {p['out_mult']}, "
                  f".a_shift = {p['a_shift']}, .b_shift = {p['b_shift']}, .out_shift = {p['out_shift']}, "
                  f".act_min = {p['act_min']}, .act_max = {p['act_max']} }};\n")
    pool = p.get("pool")
    if pool is not None:          # ADD -> MAX_POOL_2D (plan.fuse)
        _emit_pool(f"{i}_pool", Layer("maxpool", l.op_index, [], l.output, pool), consts)
        return f"anyppg_add_maxpool(&c{i}, &c{i}_pool, {{in0}}, {{in1}}, {{out}}, {{scratch}});"
    return f"anyppg_add(&c{i}, {{in0}}, {{in1}}, {{out}}, {{scratch}});"


def _emit_misc(i: int, l: Layer, consts: list[str]) -> str:
    p = l.p
    if l.kind == "pad":
        return (f"anyppg_pad({p['in_len']}, {p['ch']}, {p['out_len']}, {p['before']}, {p['value']}, "
                f"{{in0}}, {{out}});")
    if l.kind == "logistic":
        consts.append(f"static const anyppg_logistic_params c{i} = {{ .n = {p['n']}, .in_zp = {p['in_zp']}, "
                      f".mult = {p['mult']}, .left_shift = {p['left_shift']}, .radius = {p['radius']} }};\n")
        return f"anyppg_logistic(&c{i}, {{in0}}, {{out}});"
    if l.kind == "softmax":
        consts.append(f"static const anyppg_softmax_params c{i} = {{ .rows = {p['rows']}, .depth = {p['depth']}, "
                      f".mult = {p['mult']}, .left_shift = {p['left_shift']}, .diff_min = {p['diff_min']} }};\n")
        return f"anyppg_softmax(&c{i}, {{in0}}, {{out}});"
    raise AssertionError(l.kind)


_EMIT = {"conv": _emit_conv, "dwconv": _emit_conv, "fc": _emit_fc, "maxpool": _emit_pool,
         "avgpool": _emit_pool, "add": _emit_add, "pad": _emit_misc, "logistic": _emit_misc,
         "softmax": _emit_misc}


def header(low: Lowered, plan: Plan) -> str:
    ins = [(n, low.tensors[t]) for n, t in low.inputs.items()]
    outs = [(n, low.tensors[t]) for n, t in low.outputs.items()]
    lines = ["/* Generated by firmware_bridge.codegen from an int8 .tflite: do not edit. */",
             "#ifndef ANYPPG_MODEL_H", "#define ANYPPG_MODEL_H", "", "#include <stddef.h>",
             "#include <stdint.h>", "", '#ifdef __cplusplus', 'extern "C" {', "#endif", "",
             f"#define ANYPPG_MODEL_ARENA_BYTES {plan.arena_bytes}",
             f"#define ANYPPG_MODEL_N_INPUTS {len(ins)}", f"#define ANYPPG_MODEL_N_OUTPUTS {len(outs)}"]
    for kind, ports in (("INPUT", ins), ("OUTPUT", outs)):
        for n, t in ports:
            u = c_ident(n).upper()
            lines += [f"#define ANYPPG_MODEL_{kind}_{u}_LEN {t.size}",
                      f"#define ANYPPG_MODEL_{kind}_{u}_SCALE {t.scale!r}f",
                      f"#define ANYPPG_MODEL_{kind}_{u}_ZERO_POINT ({t.zero_point})"]
    lines += ["", "/* Inputs: quantised int8 windows (the caller keeps them alive during invoke). */",
              "typedef struct {"] + [f"    const int8_t *{c_ident(n)};   /* {t.size} */" for n, t in ins] + \
             ["} anyppg_model_inputs;", "", "/* Outputs, by name: int8, real = scale * (q - zero_point). */",
              "typedef struct {"] + [f"    int8_t {c_ident(n)}[{t.size}];" for n, t in outs] + \
             ["} anyppg_model_outputs;", "",
              "typedef struct { const char *name; size_t offset; int len; float scale; int zero_point; } anyppg_model_port;",
              "extern const anyppg_model_port anyppg_model_output_ports[ANYPPG_MODEL_N_OUTPUTS];", "",
              "/* Runs the model once; returns 0. Not reentrant (one static arena). */",
              "int anyppg_invoke(const anyppg_model_inputs *in, anyppg_model_outputs *out);", "",
              "/* Define ANYPPG_MODEL_LAYER_HOOK(i, name) when compiling anyppg_model.c to observe each layer. */",
              "", '#ifdef __cplusplus', "}", "#endif", "#endif /* ANYPPG_MODEL_H */", ""]
    return "\n".join(lines)


def source(low: Lowered, layers: list[Layer], plan: Plan) -> str:
    consts: list[str] = []
    body: list[str] = []
    ext = {t: n for n, t in low.inputs.items()}

    def ref(t: int) -> str:
        while t in plan.root:
            t = plan.root[t]
        if t in ext:
            return f"in->{c_ident(ext[t])}"
        return f"(arena + {plan.offset[t]})"
    for i, l in enumerate(layers):
        if l.kind == "reshape":
            continue
        call = _EMIT[l.kind](i, l, consts)
        scratch = f"(arena + {plan.scratch_offset[i]})" if i in plan.scratch_offset else "0"
        call = call.format(in0=ref(l.inputs[0]), in1=ref(l.inputs[1]) if len(l.inputs) > 1 else "",
                           out=ref(l.output), scratch=scratch)
        body.append(f"    {call}   /* {l.label}, TFLite op {l.op_index} */")
        body.append(f'    ANYPPG_MODEL_LAYER_HOOK({i}, "{l.label}");')
    outs = [(n, t) for n, t in low.outputs.items()]
    for n, t in outs:
        body.append(f"    memcpy(out->{c_ident(n)}, {ref(t)}, {low.tensors[t].size});")
    ports = ",\n    ".join(
        f'{{"{n}", offsetof(anyppg_model_outputs, {c_ident(n)}), {low.tensors[t].size}, '
        f"{low.tensors[t].scale!r}f, {low.tensors[t].zero_point}}}" for n, t in outs)
    return "\n".join([
        "/* Generated by firmware_bridge.codegen from an int8 .tflite: do not edit. */",
        '#include "anyppg_model.h"', "", "#include <string.h>", "", '#include "anyppg_nn.h"', "",
        "#ifndef ANYPPG_MODEL_LAYER_HOOK", "#define ANYPPG_MODEL_LAYER_HOOK(i, name) ((void)0)", "#endif", "",
        f"static int8_t arena[ANYPPG_MODEL_ARENA_BYTES > 0 ? ANYPPG_MODEL_ARENA_BYTES : 1] __attribute__((aligned(4)));",
        "", *consts,
        f"const anyppg_model_port anyppg_model_output_ports[ANYPPG_MODEL_N_OUTPUTS] = {{\n    {ports}\n}};", "",
        "int anyppg_invoke(const anyppg_model_inputs *in, anyppg_model_outputs *out)", "{",
        *body, "    return 0;", "}", ""])
