"""What the student's shape costs on the Ethos-U55: Vela on student-s-shaped Keras mirrors, in one run.

    python -m benchmarks.bench_u55_variants --out DIR [--variants v0,v1,v2]

Each variant is a full-int8 Keras mirror of student-s (1250-sample PPG window, a one-channel
stem, depthwise + 1x1 stages 24 -> 32 -> 64 -> 128 with residual ADDs, global average pool,
six scalar heads), quantised with a random representative set (weights random: Vela's cycles
depend on shapes, not values), then compiled by Vela with the project's settings
(firmware_bridge.vela: ethos-u55-128, Ethos_U55_High_End_Embedded, Shared_Sram):

    v0  as exported: stride 1 everywhere, MAX_POOL_2D (2, 5, 5, 5) between stages
    v1  every pool folded into the stride of the next convolution (stem 2, stages 5)
    v2  U55-friendly: strides <= 3 (Vela's depthwise limit) with more stages of stride 2-3
        instead of the stride-5 steps, and a last stage of 96 channels instead of 128

Prints cycles, time at 500 MHz, MACs, SRAM, flash and the operators left on the CPU per
variant; writes DIR/u55_variants.json. The exported student itself is measured by
`anyppg mcu` (benchmarks/bench_mcu.py); v0 checks that the mirror matches it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_write_json
from firmware_bridge import vela


@dataclass
class Variant:
    name: str
    note: str
    stem_stride: int = 1
    stem_pool: int = 2                        # MAX_POOL after the stem (1: none)
    # (channels, depthwise kernel, first block's stride, pool after the stage, blocks)
    stages: list[tuple[int, int, int, int, int]] = field(default_factory=list)


VARIANTS = {
    "v0": Variant("v0", "as exported (max pools)", 1, 2,
                  [(24, 7, 1, 5, 1), (32, 7, 1, 5, 2), (64, 5, 1, 5, 2), (128, 5, 1, 1, 2)]),
    "v1": Variant("v1", "pools folded into strides (stride 5)", 2, 1,
                  [(24, 7, 1, 1, 1), (32, 7, 5, 1, 2), (64, 5, 5, 1, 2), (128, 5, 5, 1, 2)]),
    "v2": Variant("v2", "strides <= 3, last stage 96 channels", 2, 1,
                  [(24, 7, 2, 1, 1), (32, 7, 3, 1, 2), (64, 5, 3, 1, 2), (96, 5, 3, 1, 2)]),
}


def build(v: Variant, n: int = 1250):
    """The Keras mirror of variant v: (1, n, 1) -> embedding + six scalar heads."""
    import tensorflow as tf
    k = tf.keras
    x0 = k.Input((n, 1), batch_size=1)
    h = k.layers.Conv1D(16, 7, strides=v.stem_stride, padding="same", activation="relu")(x0)
    if v.stem_pool > 1:
        h = k.layers.MaxPool1D(v.stem_pool)(h)
    for ch, kdw, stride, pool, blocks in v.stages:
        for b in range(blocks):
            y = k.layers.DepthwiseConv1D(kdw, strides=stride if b == 0 else 1, padding="same",
                                         activation="relu")(h)
            y = k.layers.Conv1D(ch, 1, activation="relu" if b == 0 else None)(y)
            h = y if b == 0 else k.layers.Add()([y, h])
        if pool > 1:
            h = k.layers.MaxPool1D(pool)(h)
    h = k.layers.AveragePooling1D(h.shape[1])(h)
    h = k.layers.Reshape((h.shape[-1],))(h)
    return k.Model(x0, [h] + [k.layers.Dense(1)(h) for _ in range(6)])


def to_int8(model, seed: int = 0) -> bytes:
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    shape = (1, *model.input_shape[1:])

    def rep():
        for _ in range(8):
            yield [rng.normal(0, 1, shape).astype(np.float32)]
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = c.inference_output_type = tf.int8
    return c.convert()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [s for s in a.variants.split(",") if s]
    bad = [s for s in names if s not in VARIANTS]
    if bad:
        print(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
        return 2
    rows = []
    for name in names:
        v = VARIANTS[name]
        path = out / f"{name}.tflite"
        path.write_bytes(to_int8(build(v)))
        try:
            r = vela.compile_u55(path, out / f"vela_{name}")
        except vela.VelaError as e:
            print(f"{name}: {e}")
            return 1
        rows.append({"variant": asdict(v), **r})
    atomic_write_json(out / "u55_variants.json", {"variants": rows})
    print(f"Ethos-U55-128 (Vela, {vela.SYSTEM}, {vela.MEMORY_MODE}), student-s-shaped mirrors\n")
    print("| variant | shape | cycles (NPU) | us | MACs | SRAM KiB | flash KiB | NPU / CPU ops | CPU ops |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = r["variant"]
        print(f"| {v['name']} | {v['note']} | {r['cycles_total']} ({r['cycles_npu']}) | {r['time_us']:.1f} | "
              f"{r['macs']} | {r['sram_kib']:.1f} | {r['flash_kib']:.1f} | {r['npu_ops']} / {r['cpu_ops']} | "
              f"{', '.join(r['cpu_fallback']) or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
