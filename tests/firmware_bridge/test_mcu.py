"""The MCU stage on QEMU (Cortex-M4F, DSP and plain-C kernels): outputs bit-exact with the golden
vectors on the simulated board, instruction counts and memory reported; Vela for the U55."""
from __future__ import annotations

import json

import pytest

from edge_runtime.hr_refine import HRRefine
from firmware_bridge import mcu, qemu
from firmware_bridge.vela import compile_u55, vela_exe

from .mcu_fixtures import firmware_run


@pytest.mark.slow
def test_mcu_stage_bit_exact_on_m4(export_dir, tmp_path):
    why = qemu.missing_tools()
    if why:
        pytest.skip(why)
    from firmware_bridge.mcu import main
    run = firmware_run(export_dir, tmp_path / "fw", seconds=22.0)
    out = tmp_path / "mcu"
    rc = main(["--from", str(run), "--out", str(out), "--windows", "2", "--no-vela", "--quiet"])
    res = json.loads((out / "mcu.json").read_text())
    assert rc == 0, res["runs"]
    runs = {r["variant"]: r for r in res["runs"]}
    assert set(runs) == {"dsp", "portable"}
    for r in runs.values():
        assert r["bit_exact"] and r["outputs_mismatch"] == 0 and r["windows"] == 2
        assert r["inference_insns"] > 0 and r["preprocessing_insns"] > 0
        assert r["flash_bytes"] > res["codegen"]["weight_bytes"]
        assert r["stack_bytes"] > 0 and r["static_ram_bytes"] >= res["codegen"]["arena_bytes"]
    # the dual-MAC path runs fewer instructions than the plain C one on the same bytes
    assert runs["dsp"]["inference_insns"] < runs["portable"]["inference_insns"]
    md = (out / "mcu.md").read_text()
    assert md.count("mps2-an386") == 2
    side = json.loads((export_dir / "model_int8.json").read_text())
    if HRRefine.from_sidecar(side) is None:
        pytest.skip("this export's sidecar has no hr_refine block: the refinement is not measured")
    assert res["with_hr_refine"]
    for r in runs.values():      # counted apart, in the total, and checked against edge_runtime
        assert r["hr_refine_insns"] >= max(r["hr_refine_insns_all_windows"]) > 0
        assert r["total_insns"] == r["preprocessing_insns"] + r["inference_insns"] + r["hr_refine_insns"]
        assert r["hr_refine_max_abs_diff_bpm"] <= mcu.HR_TOL_BPM and r["stack_hr_bytes"] > 0
        assert r["by_group"]["hr_refine"]["flash"] > 0
    assert "HR refinement on the golden windows" in md


def test_mcu_rejects_missing_run(tmp_path, capsys):
    from firmware_bridge.mcu import main
    assert main(["--from", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such firmware run" in capsys.readouterr().err


def test_vela_u55(export_dir, tmp_path):
    if vela_exe() is None:
        pytest.skip("vela not installed (ethos-u-vela)")
    r = compile_u55(export_dir / "model_int8.tflite", tmp_path)
    assert r["cycles_total"] >= r["cycles_npu"] > 0 and r["time_us"] > 0
    assert r["cpu_ops"] == 0 and r["npu_ops"] > 0 and r["sram_kib"] > 0
