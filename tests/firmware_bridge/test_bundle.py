"""`anyppg firmware`: the bundle from a real export (the session's export_dir), built on the host
with -Werror and the sanitizers, its example loop (preprocessing + generated inference) against
the bundled golden outputs of TFLite Micro, built for the Cortex-M4F, run on QEMU, regenerated
byte for byte; bad input gives one-line errors and no bundle."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.hr_refine import HRRefine
from firmware_bridge import bundle, dsp_check, example, golden, hr_check, qemu

pytestmark = [pytest.mark.slow, pytest.mark.toolchain]
HOST = ("gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all")


@pytest.fixture(scope="module")
def bundle_dir(export_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fw") / "bundle"
    assert bundle.main(["--from", str(export_dir), "--out", str(out), "--quiet"]) == 0
    return out


def check_against_golden(rows: list[dict], gold: dict) -> None:
    assert [r["start"] for r in rows] == gold["window_start"]
    assert [r["flags"] for r in rows] == gold["flags_data"].tolist()
    for e in gold["outputs"]:
        got = np.array([r[e["name"]] for r in rows], np.int8).reshape(e["data"].shape)
        assert np.array_equal(got, e["data"]), e["name"]


def check_shown(rows: list[dict], gold: dict, sidecar: dict) -> int:
    """The example's show / withheld bits are edge_runtime's decision for the same window, flags
    and network outputs (firmware_bridge.hr_check.reference_show), and its hr_bpm (printed to
    0.01) is edge_runtime's refined hr; the windows whose hr was shown."""
    n = len(rows)
    cases = np.zeros(n, hr_check.SHOW_CASE)
    cases["flags"] = [r["flags"] for r in rows]
    cases["window"] = np.arange(n)
    outs = {e["name"]: e["data"].reshape(n, -1)[:, 0] for e in gold["outputs"]}
    for name in ("quality_logit", "hr_confidence", "hr"):
        cases[name] = outs[name]
    ppg = next(e for e in gold["inputs"] if e["name"] == "ppg")
    want = hr_check.reference_show(cases, ppg["data"].reshape(n, -1), ppg["zero_point"], sidecar)
    assert [r["show"] for r in rows] == want["show"].tolist()
    assert [r["withheld"] for r in rows] == want["withheld"].tolist()
    shown = [i for i in range(n) if want["show"][i] & hr_check.SHOW_HR]
    assert [i for i in range(n) if "hr_bpm" in rows[i]] == shown
    for i in shown:
        assert abs(rows[i]["hr_bpm"] - want["hr_bpm"][i]) <= 0.005 + 0.002, (i, rows[i]["hr_bpm"], want[i])
    return len(shown)


def test_bundle_layout_and_manifest(bundle_dir):
    for rel in ("README.md", "manifest.json", "model_int8.tflite", "model_int8.json",
                "src/anyppg_dsp.c", "src/anyppg_dsp.h", "src/anyppg_dsp_tables.c",
                "src/anyppg_hr.c", "src/anyppg_hr.h",
                "src/anyppg_model_settings.h", "src/anyppg_model_data.c", "src/anyppg_model_data.h",
                "src/anyppg_model.c", "src/anyppg_model.h", "examples/anyppg_example.c",
                "examples/tflm_main.cc", "golden/golden.json"):
        assert (bundle_dir / rel).is_file(), rel
    side = json.loads((bundle_dir / "model_int8.json").read_text())
    settings = (bundle_dir / "src" / "anyppg_model_settings.h").read_text()
    for o in side["outputs"]:                 # every output by name, from the sidecar
        assert f"ANYPPG_OUTPUT_{o['name'].upper()}_SCALE" in settings
    data = (bundle_dir / "src" / "anyppg_model_data.c").read_text()
    assert data.count("0x") == (bundle_dir / "model_int8.tflite").stat().st_size
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["stage"] == "firmware" and m["metrics"]["golden_windows"] == 3
    readme = (bundle_dir / "README.md").read_text()
    assert re.search(r"\$[a-z_]{3,}", readme) is None      # every template field filled
    assert "| preprocessing |" in readme and "| hr_refine |" in readme
    has = HRRefine.from_sidecar(side) is not None
    assert f"#define ANYPPG_HAS_HR_REFINE {int(has)}" in settings
    # the session's export carries an af_beats block (conftest): its constants and README words
    assert side["af_beats"]["min_af_prob"] == 0.95 and "#define ANYPPG_HAS_AF_BEATS 1" in settings
    assert "from af_prob 0.95" in readme
    assert "## Which way up" in readme and bundle.polarity_text(side) in readme
    sizes = m["metrics"]["sizes"]
    if has and sizes:       # measured where arm-none-eabi-gcc and QEMU are installed
        assert sizes["hr_refine_insns"] > 0 and sizes["parts"]["hr_refine"]["text"] > 0
        assert f"{sizes['hr_refine_insns']:,} instructions per window" in readme
    if sizes:
        assert 0 < sizes["af_beats_insns"] and f"{sizes['af_beats_insns']:,} instructions" in readme


def test_host_build_runs_golden(bundle_dir, tmp_path):
    """All of src/ + the example, -Werror + sanitizers: outputs equal TFLite Micro's."""
    src = bundle_dir / "src"
    exe = tmp_path / "example"
    sources = [str(p) for p in sorted(src.glob("*.c")) if p.name != "anyppg_model_data.c"]
    res = subprocess.run([*HOST, f"-I{src}", *sources, str(src / "anyppg_model_data.c"),
                          str(bundle_dir / "examples" / "anyppg_example.c"), "-lm", "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    run = subprocess.run([str(exe)], cwd=bundle_dir, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    gold = golden.load_golden(bundle_dir / "golden")
    check_against_golden(example.parse(run.stdout), gold)
    side = json.loads((bundle_dir / "model_int8.json").read_text())
    assert check_shown(example.parse(run.stdout), gold, side) > 0


@pytest.mark.skipif(qemu.missing_tools() is not None, reason=str(qemu.missing_tools()))
def test_cortex_m4_build_and_qemu_run(bundle_dir, tmp_path):
    """The same example for the Cortex-M4F: sizes reported, same outputs on QEMU."""
    sizes = json.loads((bundle_dir / "manifest.json").read_text())["metrics"]["sizes"]
    assert sizes["parts"]["preprocessing"]["text"] > 1000
    assert sizes["example_elf"]["text"] > sizes["parts"]["inference"]["text"]
    src = bundle_dir / "src"
    sources = [p for p in sorted(src.glob("*.c")) if p.name != "anyppg_model_data.c"]
    elf = qemu.build_elf([*sources, bundle_dir / "examples" / "anyppg_example.c"],
                         tmp_path / "example.elf", include_dirs=[src],
                         cflags=["-Werror", "-ffp-contract=off"])
    res = qemu.run_elf(elf, cwd=bundle_dir, timeout_s=300)
    assert res.returncode == 0, res.stdout[-2000:]
    gold = golden.load_golden(bundle_dir / "golden")
    check_against_golden(example.parse(res.stdout), gold)
    check_shown(example.parse(res.stdout), gold, json.loads((bundle_dir / "model_int8.json").read_text()))


def test_regeneration_is_byte_identical(export_dir, tmp_path):
    """Everything but the run record (manifest.json: time, commit) is the same bytes."""
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        assert bundle.main(["--from", str(export_dir), "--out", str(out), "--quiet",
                            "--set", "measure_size=false"]) == 0
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert len(files) > 20
    differ = [str(f) for f in files if f.name != "manifest.json"
              and (outs[0] / f).read_bytes() != (outs[1] / f).read_bytes()]
    assert differ == []


def test_other_sensor_rate(export_dir, tmp_path):
    out = tmp_path / "b64"
    assert bundle.main(["--from", str(export_dir), "--out", str(out), "--sensor-fs", "64",
                        "--quiet", "--set", "measure_size=false"]) == 0
    settings = (out / "src" / "anyppg_model_settings.h").read_text()
    assert "#define ANYPPG_SENSOR_FS_HZ 64.0f" in settings
    assert "#define ANYPPG_RS_UP 125" in settings and "#define ANYPPG_RS_DOWN 64" in settings
    g = golden.load_golden(out / "golden")
    gen = dsp_check.generate_sources(json.loads((out / "model_int8.json").read_text()), 64.0,
                                     tmp_path / "gen")
    got = dsp_check.run_golden(dsp_check.build_host(gen, "anyppg_dsp_run.c"), out / "golden",
                               g["window"], tmp_path / "run")
    c = dsp_check.compare(got, g)
    assert c["same_windows"] and c["max_abs_z"] <= 1e-4 and c["int8_max_step"] <= 1


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_inputs(export_dir, tmp_path, capsys):
    assert bundle.main(["--from", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "no model_int8.tflite" in one_error_line(capsys)
    bad = tmp_path / "bad"
    shutil.copytree(export_dir, bad)
    side = json.loads((bad / "model_int8.json").read_text())
    side["sha256"] = "0" * 64
    (bad / "model_int8.json").write_text(json.dumps(side))
    assert bundle.main(["--from", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "sha256 does not match" in one_error_line(capsys)
    assert bundle.main(["--from", str(export_dir), "--out", str(tmp_path / "o"),
                        "--sensor-fs", "64.0137"]) == 1
    assert "cannot resample" in one_error_line(capsys)
    assert not (tmp_path / "o").exists()
    side = json.loads((export_dir / "model_int8.json").read_text())
    side["hr_refine"] = {**HRRefine().to_dict(), "window": "hann"}      # a copy in tmp_path only
    (bad / "model_int8.json").write_text(json.dumps(side))
    assert bundle.main(["--from", str(bad), "--out", str(tmp_path / "o")]) == 1
    msg = one_error_line(capsys)
    assert "model_int8.json" in msg and "unknown key(s) ['window']" in msg
    side = json.loads((export_dir / "model_int8.json").read_text())
    for block, words in (({"min_af_prob": 2}, "min_af_prob must be a number in (0, 1]"),
                         ({"min_af_prob": 0.9, "window": 3}, "unknown fields")):
        (bad / "model_int8.json").write_text(json.dumps({**side, "af_beats": block}))
        assert bundle.main(["--from", str(bad), "--out", str(tmp_path / "o")]) == 1
        msg = one_error_line(capsys)
        assert "model_int8.json" in msg and words in msg
    (bad / "model_int8.json").write_text(json.dumps({**side, "decision": {"hr_confidence_min": "high"}}))
    assert bundle.main(["--from", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "thresholds must be finite numbers" in one_error_line(capsys)
    (tmp_path / "o").mkdir()
    assert bundle.main(["--from", str(export_dir), "--out", str(tmp_path / "o")]) == 1
    assert "already exists" in one_error_line(capsys)


def test_polarity_sentence_follows_the_sidecar():
    auto = {"polarity": {"default": "auto", "vote_windows": 60, "chosen_on": "vote right on 20 of 21"}}
    up = {"polarity": {"default": "up", "vote_windows": 60, "chosen_on": "vote right on 6 of 8"}}
    assert "finds the way up itself by default" in bundle.polarity_text(auto) and "20 of 21" in bundle.polarity_text(auto)
    assert "unreliable (vote right on 6 of 8)" in bundle.polarity_text(up)
    assert "no `polarity` block" in bundle.polarity_text({})
