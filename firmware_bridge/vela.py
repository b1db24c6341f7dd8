"""Compile a .tflite for the Arm Ethos-U55 NPU with Vela (ethos-u-vela) and read its summary:
cycles, inference time, SRAM, flash, and the operators left to the CPU."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

ACCELERATOR = "ethos-u55-128"
SYSTEM = "Ethos_U55_High_End_Embedded"
MEMORY_MODE = "Shared_Sram"


class VelaError(RuntimeError):
    """Vela is missing or failed (one line)."""


def vela_exe() -> str | None:
    cand = Path(sys.executable).with_name("vela")
    return str(cand) if cand.exists() else shutil.which("vela")


def vela_command(tflite: Path, out_dir: Path, accelerator: str = ACCELERATOR) -> list[str]:
    exe = vela_exe()
    if exe is None:
        raise VelaError("vela not installed (pip package ethos-u-vela)")
    return [exe, str(tflite), "--accelerator-config", accelerator, "--config", "Arm/vela.ini",
            "--system-config", SYSTEM, "--memory-mode", MEMORY_MODE, "--output-dir", str(out_dir)]


def compile_u55(tflite: str | Path, out_dir: str | Path, accelerator: str = ACCELERATOR) -> dict:
    """Run Vela; returns cycles (total, npu), time_us at the config's clock, sram/flash KiB,
    macs, npu_ops / cpu_ops counts, the command, and the summary CSV path."""
    tflite, out_dir = Path(tflite), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = vela_command(tflite, out_dir, accelerator)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()
        raise VelaError(f"vela failed on {tflite.name}: {tail[-1] if tail else res.returncode}")
    csvs = sorted(out_dir.glob(f"{tflite.stem}_summary_*.csv"))
    if not csvs:
        raise VelaError(f"vela wrote no summary CSV into {out_dir}")
    with csvs[0].open() as f:
        row = next(csv.DictReader(f))
    text = res.stdout
    cpu = re.search(r"CPU operators = (\d+)", text)
    npu = re.search(r"NPU operators = (\d+)", text)
    clock = float(row["core_clock"])
    cycles = int(float(row["cycles_total"]))
    return {"accelerator": accelerator, "system_config": SYSTEM, "memory_mode": MEMORY_MODE,
            "clock_hz": clock, "cycles_total": cycles, "cycles_npu": int(float(row["cycles_npu"])),
            "time_us": float(row["inference_time"]) * 1e6, "macs": int(float(row["nn_macs"])),
            "sram_kib": float(row["sram_memory_used"]),
            "flash_kib": float(row["off_chip_flash_memory_used"]) + float(row["on_chip_flash_memory_used"]),
            "cpu_ops": int(cpu.group(1)) if cpu else None, "npu_ops": int(npu.group(1)) if npu else None,
            "cpu_fallback": _cpu_fallback(text), "command": " ".join(cmd[1:]), "summary_csv": str(csvs[0])}


def _cpu_fallback(text: str) -> list[str]:
    """Names of operators Vela reports as placed on the CPU (its warnings)."""
    ops = re.findall(r"Warning: (\w+) '.*?' is not supported on the NPU", text)
    return sorted(set(ops))
