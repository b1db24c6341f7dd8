"""The MCU stage on QEMU (Cortex-M4F, DSP and plain-C kernels): outputs bit-exact with the golden
vectors on the simulated board, instruction counts and memory reported; Vela for the U55."""
from __future__ import annotations

import json

import pytest

from firmware_bridge import qemu
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
    assert (out / "mcu.md").read_text().count("mps2-an386") == 2


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
