"""Fusion and arena planning over lowered layers.

Fusion: a convolution whose only consumer is a non-overlapping MAX_POOL_2D / AVERAGE_POOL_2D
computes each pooling window's conv rows into scratch and pools them at once, so the conv
output (the stem's is the largest tensor) never exists whole; the integer result is the
same bytes, since pooling reads exactly those clamped int8 rows.

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


def fuse(low: Lowered, enable: bool = True) -> list[Layer]:
    """Layers after fusing conv -> pool pairs (see module docstring)."""
    layers = list(low.layers)
    if not enable:
        return layers
    ports = set(low.outputs.values())
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        l = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        cons = _consumers(layers).get(l.output, [])
        if (l.kind in ("conv", "dwconv") and "pool" not in l.p and nxt is not None
                and nxt.kind in ("maxpool", "avgpool") and cons == [i + 1]
                and l.output not in ports and nxt.p["stride"] >= nxt.p["k"]):
            pp = nxt.p
            fused = Layer(l.kind, l.op_index, l.inputs, nxt.output, dict(l.p), l.fused + [nxt.kind])
            fused.p["pool"] = dict(kind=nxt.kind, k=pp["k"], stride=pp["stride"], pad=pp["pad"],
                                   out_len=pp["out_len"], act_min=pp["act_min"], act_max=pp["act_max"])
            out.append(fused)
            i += 2
            continue
        out.append(l)
        i += 1
    return out


def scratch_bytes(l: Layer) -> int:
    """Per-call scratch of a conv (anyppg_nn.h ANYPPG_CONV_SCRATCH): int32 accumulator rows (two
    pixels, or one pooling window), two int16 im2col columns and one int8 border window."""
    if l.kind == "add":      # anyppg_nn.h ANYPPG_ADD_SCRATCH from ANYPPG_ADD_TABLE_MIN_N elements
        return 2048 if l.p["n"] >= 512 else 0
    if l.kind not in ("conv", "dwconv"):
        return 0
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
