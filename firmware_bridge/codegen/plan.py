"""Fusion and arena planning over lowered layers.

Fusion: a convolution whose only consumer is a non-overlapping MAX_POOL_2D / AVERAGE_POOL_2D
computes each pooling window's conv rows into scratch and pools them at once, so the conv
output (the stem's is the largest tensor) never exists whole; the integer result is the
same bytes, since pooling reads exactly those clamped int8 rows. A depthwise convolution feeding
a 1x1 convolution is made a chunk of rows at a time and consumed at once (its output never
exists whole), and an ADD feeding a MAX_POOL_2D pools before its output requantisation.

Arena: every activation buffer lives from the layer that writes it to the last layer that reads
it; RESHAPE-like layers alias their input. Buffers are placed largest first at the lowest
offset that overlaps no buffer whose lifetime overlaps (TFLite Micro's greedy planner rule),
4-byte aligned.
"""
from __future__ import annotations

from dataclasses import dataclass

from .lower import Layer, Lowered

ALIGN = 4


def _consumers(layers: list[Layer]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, l in enumerate(layers):
        for t in l.inputs:
            out.setdefault(t, []).append(i)
    return out


def _conv_pool(l: Layer, nxt: Layer) -> Layer | None:
    if l.kind in ("conv", "dwconv") and "pool" not in l.p and "then" not in l.p \
            and nxt.kind in ("maxpool", "avgpool") and nxt.p["stride"] >= nxt.p["k"]:
        pp = nxt.p
        fused = Layer(l.kind, l.op_index, l.inputs, nxt.output, dict(l.p), l.fused + [nxt.kind])
        fused.p["pool"] = dict(kind=nxt.kind, k=pp["k"], stride=pp["stride"], pad=pp["pad"],
                               out_len=pp["out_len"], act_min=pp["act_min"], act_max=pp["act_max"])
        return fused
    return None


def _dw_pointwise(l: Layer, nxt: Layer) -> Layer | None:
    """depthwise -> 1x1 conv (whose pool, if fused, has stride == k and no padding: the chunks
    of depthwise rows then hold whole pooling windows; anyppg_dwconv_pw)."""
    if l.kind != "dwconv" or "pool" in l.p or "then" in l.p or nxt.kind != "conv" or "then" in nxt.p:
        return None
    q, pool = nxt.p, nxt.p.get("pool")
    if q["k"] != 1 or q["stride"] != 1 or q["pad"] != 0 or q["in_len"] != l.p["out_len"]:
        return None
    if pool is not None and (pool["stride"] != pool["k"] or pool["pad"] != 0):
        return None
    fused = Layer("dwconv", l.op_index, l.inputs, nxt.output, dict(l.p), l.fused + [nxt.label])
    fused.p["then"] = nxt
    return fused


def _add_maxpool(l: Layer, nxt: Layer) -> Layer | None:
    """ADD -> MAX_POOL_2D: max commutes with the ADD's output requantisation, which is
    non-decreasing when its multiplier is positive and it shifts right (anyppg_add_maxpool)."""
    if l.kind != "add" or "pool" in l.p or nxt.kind != "maxpool":
        return None
    if l.p["out_mult"] <= 0 or l.p["out_shift"] > 0:
        return None
    fused = Layer("add", l.op_index, l.inputs, nxt.output, dict(l.p), l.fused + ["maxpool"])
    fused.p["pool"] = dict(nxt.p)
    return fused


def _fuse_pass(layers: list[Layer], ports: set[int], rule) -> list[Layer]:
    cons = _consumers(layers)
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        l = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        fused = None
        if nxt is not None and cons.get(l.output, []) == [i + 1] and l.output not in ports:
            fused = rule(l, nxt)
        out.append(fused or l)
        i += 2 if fused else 1
    return out


def fuse(low: Lowered, enable: bool = True) -> list[Layer]:
    """Layers after fusing conv -> pool, depthwise -> 1x1 conv (-> pool) and ADD -> max pool
    (see module docstring and each rule)."""
    layers = list(low.layers)
    if not enable:
        return layers
    ports = set(low.outputs.values())
    for rule in (_conv_pool, _dw_pointwise, _add_maxpool):
        layers = _fuse_pass(layers, ports, rule)
    return layers


def dwpw_rows(pool_k: int) -> int:
    """anyppg_nn.h ANYPPG_DWPW_ROWS: depthwise rows per chunk."""
    if pool_k <= 1:
        return 16
    windows = 16 // pool_k
    return pool_k * (windows & ~1 if windows > 1 else 1)


def scratch_bytes(l: Layer) -> int:
    """Per-call scratch (anyppg_nn.h): a conv's int32 accumulator rows (two pixels, or one
    pooling window), two int16 im2col columns and one int8 border window; a fused depthwise ->
    1x1 conv's chunk of depthwise rows before the conv's own; an ADD's two tables."""
    if l.kind == "add":      # anyppg_nn.h ANYPPG_ADD_SCRATCH from ANYPPG_ADD_TABLE_MIN_N elements
        return 2048 if l.p["n"] >= 512 or "pool" in l.p else 0
    if l.kind not in ("conv", "dwconv"):
        return 0
    then = l.p.get("then")
    if then is not None:
        pk = then.p["pool"]["k"] if "pool" in then.p else 1
        return (dwpw_rows(pk) * l.p["out_ch"] + 3) // 4 * 4 + scratch_bytes(then)
    pool = l.p.get("pool")
    kc4 = (l.p["k"] * l.p["in_ch"] + 3) // 4 * 4 if l.kind == "conv" else 0
    narrow = 4 * 16 + 4 * 16 * 4 * 4 + 8 if kc4 == 8 else 0     # anyppg_nn.c conv_narrow's columns
    return max(4 * l.p["out_ch"] * max(2, pool["k"] if pool else 2) + 4 * kc4 + kc4, narrow)


@dataclass
class Plan:
    root: dict[int, int]            # tensor -> the tensor whose buffer it uses (aliases)
    offset: dict[int, int]          # root tensor (arena) -> byte offset
    scratch_offset: dict[int, int]  # layer index -> scratch offset
    arena_bytes: int
    naive_bytes: int                # the sum of all buffers (no sharing), for comparison


def plan_arena(low: Lowered, layers: list[Layer]) -> Plan:
    root: dict[int, int] = {}

    def r(t: int) -> int:
        while t in root:
            t = root[t]
        return t
    for l in layers:
        if l.kind == "reshape":
            root[l.output] = r(l.inputs[0])
    external = {r(t) for t in low.inputs.values()}
    n = len(layers)
    life: dict[object, list[int]] = {}      # key -> [first, last, size]

    def touch(key, step, size):
        if key not in life:
            life[key] = [step, step, size]
        life[key][0] = min(life[key][0], step)
        life[key][1] = max(life[key][1], step)
    for s, l in enumerate(layers):
        for t in [*l.inputs, l.output]:
            rt = r(t)
            if rt not in external:
                touch(rt, s, low.tensors[rt].size)
        if scratch_bytes(l):
            touch(("scratch", s), s, scratch_bytes(l))
    for t in low.outputs.values():          # model outputs are read after the last layer
        if r(t) not in external:
            touch(r(t), n, low.tensors[r(t)].size)
    placed: list[tuple[int, int, int, int]] = []   # offset, size, first, last
    offsets: dict[object, int] = {}
    for key, (a, b, size) in sorted(life.items(), key=lambda kv: (-kv[1][2], kv[1][0])):
        size_al = (size + ALIGN - 1) // ALIGN * ALIGN
        off = 0
        for po, ps, pa, pb in sorted(placed):
            if pb < a or pa > b:
                continue
            if off + size_al <= po:
                break
            off = max(off, po + ps)
        placed.append((off, size_al, a, b))
        offsets[key] = off
    arena = max((o + s for o, s, _, _ in placed), default=0)
    naive = sum((v[2] + ALIGN - 1) // ALIGN * ALIGN for v in life.values())
    return Plan(root=root, offset={k: v for k, v in offsets.items() if isinstance(k, int)},
                scratch_offset={k[1]: v for k, v in offsets.items() if not isinstance(k, int)},
                arena_bytes=arena, naive_bytes=naive)
