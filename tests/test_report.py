"""`anyppg report`: the side-by-side table filled from the stages' outputs, "not run" where a
stage did not run (never a blank cell), and report.html rendered by headless Chromium with the
table and the figures visible in the screenshot.

The run folder is assembled from the session's real tiny chain (store, distilled student-tiny,
int8 export from tests/conftest.py) plus stage outputs written here in the shapes the firmware,
MCU and bench stages write them."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report


def _png(path: Path, colour: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.arange(50), np.sin(np.arange(50) / 5), color=colour, lw=3)
    fig.savefig(path)
    plt.close(fig)


def _teacher(run: Path) -> None:
    import torch
    (run / "pretrain" / "checkpoints").mkdir(parents=True)
    torch.save({"model_config": {"ppg_model": "net1d-tiny"}}, run / "pretrain" / "checkpoints" / "latest.pt")
    (run / "pretrain" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 4.0 / s}) + "\n" for s in range(1, 30)))
    (run / "pretrain" / "manifest.json").write_text(json.dumps({"config": {"ppg_model": "net1d-tiny"}}))


def _probe(run: Path) -> None:
    (run / "probe").mkdir()
    _png(run / "probe" / "synthetic-hr.png", "tab:purple")
    (run / "probe" / "probe.json").write_text(json.dumps({
        "encoders": [{"name": "pretrain"}, {"name": "random:net1d-tiny"}],
        "tasks": {"synthetic-hr": {"metric": "mae", "status": "ok", "plot": "synthetic-hr.png",
                                   "encoders": {"pretrain": {"value": 5.0, "ci": [4.0, 6.0]},
                                                "random:net1d-tiny": {"value": 9.0, "ci": [8.0, 10.0]}},
                                   "baselines": {"subject-mean": {"value": 11.0}}}}}))


def _device_stages(run: Path) -> None:
    """firmware/manifest.json and mcu/mcu.json as `anyppg firmware` and `anyppg mcu` write them."""
    (run / "firmware").mkdir()
    (run / "firmware" / "manifest.json").write_text(json.dumps(
        {"stage": "firmware", "metrics": {
            "sensor_fs": 125.0, "golden_windows": 6,
            "inference": {"arena_bytes": 12_000, "weight_bytes": 9_000, "macs": 44_800},
            "sizes": {"board": "mps2-an386", "parts": {"preprocessing": {"text": 4000, "data": 0, "bss": 6000},
                                                       "inference": {"text": 20000, "data": 0, "bss": 12000},
                                                       "hr_refine": {"text": 1536, "data": 0, "bss": 0}}}}}))
    (run / "mcu").mkdir()
    m4 = {"board": "mps2-an386", "variant": "dsp", "preprocessing_insns": 310_000, "inference_insns": 1_500_000,
          "hr_refine_insns": 420_000,
          "total_insns": 2_230_000, "latency_ms": 28.3, "duty_cycle_pct": 0.28, "flash_bytes": 60_000,
          "ram_bytes": 30_000, "bit_exact": True, "preprocessing_exact": True}
    (run / "mcu" / "mcu.json").write_text(json.dumps(
        {"assumptions": {"clock_hz": 64e6, "cycles_per_instruction": 1.2},
         "runs": [m4, {**m4, "variant": "portable", "inference_insns": 3_000_000},
                  {"board": "mps2-an500", "variant": "dsp", "error": "no such board"}],
         "ethos_u55": {"time_us": 80.0, "cpu_ops": 0}}))
    (run / "bench").mkdir()                               # as `anyppg bench` writes it
    rng = np.random.default_rng(0)
    lat = [{"model": "int8 LiteRT XNNPACK, 1 thread", "p50_us": 52.0, "p99_us": 60.0, "cpu_p50_us": 50.0,
            "samples_us": (50 + 5 * rng.random(200)).tolist()},
           {"model": "float student, PyTorch", "error": "not given"},
           {"model": "run's teacher, PyTorch float", "p50_us": 9000.0, "p99_us": 9900.0,
            "samples_us": (9000 + 900 * rng.random(200)).tolist()}]
    acc = [{"task": "troika_test hr (wrist, exercise)", "metric": "MAE bpm", "windows": 300,
            "int8_runtime": 19.5, "float_student": 19.1, "teacher_ridge": float("nan")}]
    (run / "bench" / "results.json").write_text(json.dumps(
        {"latency": lat, "accuracy": acc, "headline": {"speedup_vs run's teacher, PyTorch float": 173.1},
         "load_average": [3.0, 2.5, 2.0]}))


def _pipeline_state(run: Path, **status) -> None:
    stages = {s: {"status": status.get(s, "done"), "reason": None, "seconds": 1.0, "action": "ran"}
              for s in report.rd.STAGE_FOLDERS}
    for s, st in status.items():
        stages[s]["reason"] = "arm-none-eabi-gcc not found on PATH" if st == "not run" else None
    (run / "pipeline.json").write_text(json.dumps({"state_version": 1, "config_name": "test", "stages": stages}))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, qstore, distill_run, export_dir) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    run.mkdir()
    (run / "store").symlink_to(qstore)
    shutil.copytree(distill_run, run / "distill")
    (run / "distill" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in range(1, 30)))
    (run / "export").symlink_to(export_dir)
    _teacher(run)
    _probe(run)
    _device_stages(run)
    _pipeline_state(run)
    report.write_report(run)
    return run


def _table(run: Path) -> dict[str, list[str]]:
    facts = json.loads((run / "figures" / "report_facts.json").read_text())
    return {r[0]: r[1:] for r in facts["table"]}


@pytest.mark.slow
def test_table_is_filled_from_the_stage_outputs(full_run):
    t = _table(full_run)
    assert all(c.strip() for row in t.values() for c in row)           # never a blank cell
    hr = next(v for k, v in t.items() if k.startswith("HR MAE"))
    assert hr[0] == "5.00 [4.00, 6.00] (linear probe)"
    ci = r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]"
    num_ci = re.compile(f"^{ci}$")
    assert num_ci.match(hr[1]), hr                                     # float, with its CI
    # int8: the number a device shows; refined where the export chose an hr_refine block,
    # with the network's own beside it (the tiny chain's sidecar has one or not, by its val MAE)
    assert re.match(f"^{ci}( \\(refined on the window's spectrum; network alone {ci}\\))?$", hr[2]), hr
    assert hr[3] == "not measured" and hr[4] == "as int8 (bit-exact with TFLM)"
    assert t["model"][:2] == ["net1d-tiny", "student-tiny"]
    assert t["parameters"][1] == t["parameters"][2] and t["parameters"][1] != "not measured"
    assert t["weights / file size"][2].endswith(".tflite")
    assert t["instructions per window"][4] == "1.50 M inference + 310.0 k preprocessing + 420.0 k HR refinement"
    assert t["flash"][3:] == ["24.9 KB (M4 objects)", "58.6 KB"]
    assert t["RAM"][3:] == ["11.7 KB arena", "29.3 KB (static + stack)"]
    assert t["latency per window"][4] == "28.3 ms (estimate at 64 MHz, CPI 1.2)"
    assert t["latency per window"][:3] == ["9.0 ms (p50 wall, 1 thread)", "not measured (not given)",
                                           "52 us (p50 wall, CPU time 50 us, 1 thread)"]
    for name in ("training_curves", "coverage", "latency", "window"):
        assert (full_run / "figures" / f"{name}.png").is_file(), name
    md = (full_run / "report.md").read_text()
    assert "![Probe: synthetic-hr" in md and "(probe/synthetic-hr.png)" in md
    assert "| troika_test hr (wrist, exercise) | MAE bpm | 300 | 19.500 | 19.100 | not measured |" in md
    assert "speedup vs run's teacher, PyTorch float: 173.1x" in md


@pytest.mark.slow
def test_stages_that_did_not_run_show_as_not_run(full_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for sub in ("store", "pretrain", "probe", "distill", "export"):
        src = full_run / sub
        (run / sub).symlink_to(src.resolve())
    _pipeline_state(run, firmware="not run", mcu="not run", bench="not run")
    report.write_report(run)
    t = _table(run)
    assert all(c.strip() for row in t.values() for c in row)
    assert t["model"][3:] == ["not run", "not run"]
    assert all(c == "not run" for c in t["latency per window"])
    md = (run / "report.md").read_text()
    assert "arm-none-eabi-gcc not found on PATH" in md
    assert "_not run: bench not run_" in md


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package chromium)")
def test_report_html_renders_in_headless_chromium(full_run, tmp_path):
    from PIL import Image
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,3600",
           "--hide-scrollbars", (full_run / "report.html").resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def near(rgb, tol=24):
        return (np.abs(img - np.array(rgb)).sum(axis=2) < tol)

    header = near((0x1F, 0x4E, 0x79))                   # the table's header row colour
    rows = np.flatnonzero(header.sum(axis=1) > 600)     # rows where the header spans the table
    assert len(rows) >= 10, "main table header not visible"
    table_bottom = rows.max()
    below = img[table_bottom:]
    # figures: plotted lines in matplotlib's colours, below the tables
    colours = {"tab:blue": (31, 119, 180), "tab:orange": (255, 127, 14), "tab:purple": (148, 103, 189)}
    for name, rgb in colours.items():
        n = int((np.abs(below - np.array(rgb)).sum(axis=2) < 30).sum())
        assert n > 150, f"{name} plot lines not visible in the screenshot ({n} px)"
    ink = below.sum(axis=2) < 600
    content = below[: np.flatnonzero(ink.any(axis=1)).max() + 1]    # down to the last drawn row
    non_white = (content.sum(axis=2) < 600).mean()
    assert non_white > 0.015, f"figures area nearly blank ({non_white:.3f} non-white)"
