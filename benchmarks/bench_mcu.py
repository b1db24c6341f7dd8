"""Generated inference on the simulated watch against the issue's targets, in one run:

    python -m benchmarks.bench_mcu --from FIRMWARE_RUN --out DIR [--windows N]

runs `anyppg mcu` on every board (Cortex-M4F with DSP-extension and plain-C kernels, M7, M55)
plus Vela for the Ethos-U55-128, and prints per 10-s window: instructions (preprocessing,
inference, the HR refinement where the sidecar has one, total), the ratio to TFLite Micro + CMSIS-NN's 7.14 M instructions on the same
simulated M4 (../shared/DESIGN.md: a given figure, its sources cannot be built here), flash,
RAM, and each target met or missed. Figures go to DIR/mcu.json and DIR/mcu.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from firmware_bridge import mcu

TARGETS = {"total_insns": 2_000_000, "speedup": 3.5, "flash_bytes": 64 * 1024, "ram_bytes": 32 * 1024,
           "u55_us": 100.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--windows", type=int, default=3)
    a = ap.parse_args(argv)
    rc = mcu.main(["--from", a.src, "--out", a.out, "--windows", str(a.windows), "--all-boards", "--quiet"])
    p = Path(a.out) / "mcu.json"
    if not p.is_file():
        return rc or 1
    res = json.loads(p.read_text())
    print((Path(a.out) / "mcu.md").read_text())
    m4 = next((r for r in res["runs"] if r.get("board") == "mps2-an386" and r.get("variant") == "dsp"
               and "error" not in r), None)
    if m4 is None:
        print("no Cortex-M4 result")
        return 1
    speed = mcu.ANCHOR_TFLM_CMSIS_NN_INSNS / m4["inference_insns"]
    what = "preprocessing + inference" + (" + HR refinement" if res.get("with_hr_refine") else "")
    checks = [(f"{what} <= 2 M insns", m4["total_insns"], m4["total_insns"] <= TARGETS["total_insns"]),
              (">= 3.5x fewer than TFLM + CMSIS-NN (7.14 M)", f"{speed:.2f}x", speed >= TARGETS["speedup"]),
              ("flash <= 64 KB", m4["flash_bytes"], m4["flash_bytes"] <= TARGETS["flash_bytes"]),
              ("RAM <= 32 KB (static + stack)", m4["ram_bytes"], m4["ram_bytes"] <= TARGETS["ram_bytes"])]
    u = res.get("ethos_u55") or {}
    if "time_us" in u:
        checks.append(("Ethos-U55 <= 100 us, all ops on the NPU", f"{u['time_us']:.1f} us, CPU ops {u['cpu_ops']}",
                       u["time_us"] <= TARGETS["u55_us"] and u["cpu_ops"] == 0))
    print("| target | measured | met |\n|---|---|---|")
    for name, val, ok in checks:
        print(f"| {name} | {val} | {'yes' if ok else 'no'} |")
    return rc


if __name__ == "__main__":
    sys.exit(main())
