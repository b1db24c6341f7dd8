"""The C preprocessing on the simulated Cortex-M4F: instructions per 10-s window at several
sensor rates, bit-exactness with the host build, and its flash/RAM.

    python -m firmware_bridge.dsp_bench [--export runs/<x>/export] [--rates 25,64,...]
                                        [--seconds 60] [--board mps2-an386] [--json out.json]

For each rate: a synthetic recording (training.data.synthetic, fixed seed) at that rate is
run through the host build (gcc -O2) and the board build (arm-none-eabi-gcc -O2, QEMU with
-icount shift=0); the output files must be identical bytes. Instructions are counted exactly
(SysTick x 40, firmware_bridge/qemu.py) around every push and every poll, and reported per
window: push (resampling into the ring, for one hop of samples) + poll (filter, z-score,
flags, quantisation). QEMU models no pipeline: these are instructions, not cycles (a VLDM of
twelve registers is one instruction, and about thirteen cycles on a Cortex-M4).

RAM: sizeof the state and the window struct on the board, and the same plus the int8 model
input poll() writes (an app that hands poll() its model's own input tensor does not add it).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import dsp_check, golden, qemu

BUDGET_INSNS = 500_000            # per 10-s window (issue 13)
SENSOR_RATES = "25,32,50,64,100,125,128,200,250,256,500,1000"   # PPG front ends, and PPG-BP's 1 kHz
DEFAULT_SIDECAR = {"spec": None, "inputs": [{"name": "ppg", "position": 0, "shape": [1, 1250, 1],
                                             "scale": 0.0225, "zero_point": -29}], "outputs": []}


def default_sidecar() -> dict:
    from edge_runtime.spec import SignalSpec
    return {**DEFAULT_SIDECAR, "spec": SignalSpec().to_dict()}


def synthetic(fs: float, seconds: float) -> np.ndarray:
    from training.data.synthetic import generate_subject
    sig = generate_subject(2, seed=5, duration_s=seconds, ppg_fs=fs).signals["ppg"]
    return np.asarray(getattr(sig, "data", getattr(sig, "values", None))) * 500.0 + 20000.0


def dsp_object_sizes(gen_dir: Path, board: str) -> dict:
    """text/data/bss of anyppg_dsp.o + tables, and sizeof the state and window structs."""
    include = [gen_dir, dsp_check.C_DIR]
    objs = qemu.object_sizes(dsp_check.dsp_sources(gen_dir), include, board)
    code = {k: objs["anyppg_dsp.c"][k] + objs["anyppg_dsp_tables.c"][k] for k in ("text", "data", "bss")}
    return {"code": code, "state_and_window_bytes": qemu.state_ram(include, board),
            "with_model_input_bytes": qemu.state_ram(include, board, with_input=True)}


def bench_rate(sidecar: dict, fs: float, seconds: float, board: str, work: Path) -> dict:
    gen = dsp_check.generate_sources(sidecar, fs, work / "gen")
    gdir = work / "golden"
    meta = golden.write_golden(gdir, synthetic(fs, seconds), fs, sidecar, None, "bench")
    window = meta["window"]
    host = dsp_check.run_golden(dsp_check.build_host(gen, "anyppg_dsp_run.c", sanitize=False),
                                gdir, window, work / "host")
    elf = dsp_check.build_board(gen, board, bench=True, max_samples=int(seconds * fs) + 16)
    dev = dsp_check.run_board(elf, gdir, window, work / "board", board)
    same = all((work / "host" / f).read_bytes() == (work / "board" / f).read_bytes()
               for f in dsp_check.OUTPUT_FILES)
    k = len(dev["z"])
    cmp = dsp_check.compare(host, golden.load_golden(gdir))
    return {"sensor_fs": fs, "windows": k, "bit_exact_host_vs_board": bool(same),
            "insns_per_window": round((dev["insns"]["push"] + dev["insns"]["poll"]) / k),
            "within_budget": (dev["insns"]["push"] + dev["insns"]["poll"]) / k <= BUDGET_INSNS,
            "push_insns_per_window": round(dev["insns"]["push"] / k),
            "poll_insns_per_window": round(dev["insns"]["poll"] / k),
            "vs_edge_runtime_max_abs_z": cmp["max_abs_z"], "int8_equal": cmp["int8_equal"],
            "sizes": dsp_object_sizes(gen, board)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m firmware_bridge.dsp_bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--export", help="an export folder (its sidecar's spec and quantisation)")
    p.add_argument("--rates", default=SENSOR_RATES)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--board", default=qemu.DEFAULT_BOARD)
    p.add_argument("--json")
    args = p.parse_args(argv)
    why = qemu.missing_tools() or dsp_check.missing_host_compiler()
    if why:
        print(f"dsp_bench: error: {why}", file=sys.stderr)
        return 1
    sidecar = (json.loads((Path(args.export) / "model_int8.json").read_text()) if args.export
               else default_sidecar())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fs in (float(r) for r in args.rates.split(",")):
            rows.append(bench_rate(sidecar, fs, args.seconds, args.board, Path(tmp) / f"{fs:g}"))
    print(f"C preprocessing on {args.board} (QEMU -icount shift=0, exact instruction counts), "
          f"{args.seconds:g} s synthetic recording per rate")
    print(f"| sensor Hz | instructions / 10-s window | <= {BUDGET_INSNS / 1e6:g} M | push | poll | "
          "host = board bytes | max |z| vs edge_runtime | int8 equal | code+tables text | "
          "state+window RAM | + int8 input |")
    print("|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        sz = r["sizes"]
        print(f"| {r['sensor_fs']:g} | {r['insns_per_window']:,} | {r['within_budget']} | "
              f"{r['push_insns_per_window']:,} | {r['poll_insns_per_window']:,} | "
              f"{r['bit_exact_host_vs_board']} | {r['vs_edge_runtime_max_abs_z']:.2e} | "
              f"{r['int8_equal']:.5f} | {sz['code']['text']} | {sz['state_and_window_bytes']} | "
              f"{sz['with_model_input_bytes']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
