"""`anyppg pipeline`: skipping, resuming, rerunning exactly what a change affects, and stages that
cannot run. Most tests replace the stage runner with a cheap fake that writes a manifest into
the stage's --out; one slow test runs the real tiny chain, interrupts it with SIGTERM, resumes it,
and checks that a third run redoes nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anyppg import pipeline
from tests.conftest import set_args

ALL = list(pipeline.STAGE_NAMES)


class FakeStages:
    """Stands in for `run_subprocess`: records calls, writes <--out>/manifest.json (+ a checkpoint)."""

    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: dict[str, str] = {}
        self.interrupt: str | None = None

    def __call__(self, stage, argv, log, env, launcher=None):
        self.calls.append((stage.name, list(argv)))
        out = Path(argv[argv.index("--out") + 1])
        if stage.name in self.fail:
            return 1, self.fail[stage.name]
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "latest.pt").write_text("step")
        if stage.name == self.interrupt:
            raise KeyboardInterrupt
        if stage.name == "prepare":
            (out / "index.json").write_text(json.dumps(argv))
            (out / "parts").mkdir(exist_ok=True)
        else:
            (out / "manifest.json").write_text(json.dumps({"argv": argv, "t": time.time_ns()}))
        return 0, "ok"

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def fake(monkeypatch):
    f = FakeStages()
    monkeypatch.setattr(pipeline, "RUNNER", f)
    monkeypatch.setattr(pipeline, "why_unavailable", lambda st, launcher=None: None)
    return f


def run(out: Path, *sets: str, extra: tuple[str, ...] = ()) -> int:
    return pipeline.main(["--config", "tiny", "--out", str(out), "--no-report", *set_args(*sets), *extra])


def state(out: Path) -> dict:
    return json.loads((out / "pipeline.json").read_text())["stages"]


def test_second_run_skips_every_stage(tmp_path, fake, capsys):
    assert run(tmp_path) == 0
    assert fake.names() == ALL
    fake.calls.clear()
    assert run(tmp_path) == 0
    assert fake.names() == []
    assert capsys.readouterr().out.count("unchanged, skipped") == len(ALL)
    assert all(s["status"] == "done" and s["action"] == "skipped" for s in state(tmp_path).values())


def test_changed_config_reruns_exactly_the_affected_stages(tmp_path, fake):
    assert run(tmp_path) == 0
    fake.calls.clear()
    assert run(tmp_path, "distill.set.max_steps=3") == 0
    assert fake.names() == ["distill", "qat", "export", "firmware", "mcu", "bench"]
    distill_argv = fake.calls[0][1]
    assert "max_steps=3" in distill_argv
    fake.calls.clear()
    assert run(tmp_path, "distill.set.max_steps=3", "probe.args=[--tasks,synthetic-rr]") == 0
    assert fake.names() == ["probe"]                      # nothing downstream reads the probe
    fake.calls.clear()
    assert run(tmp_path, "distill.set.max_steps=3", "probe.args=[--tasks,synthetic-rr]",
               "data.input=subjects=9,minutes=2,seed=3") == 0
    assert fake.names() == ALL                            # new data: everything


def test_interrupted_run_resumes_without_redoing_finished_stages(tmp_path, fake):
    fake.interrupt = "distill"
    assert run(tmp_path) == 130
    st = state(tmp_path)
    assert [st[s]["status"] for s in ("prepare", "pretrain", "probe", "distill")] == ["done"] * 3 + ["running"]
    fake.calls.clear()
    fake.interrupt = None
    assert run(tmp_path) == 0
    assert fake.names() == ["distill", "qat", "export", "firmware", "mcu", "bench"]
    assert fake.calls[0][1][-1] == "--resume"             # distill continues from its checkpoint
    assert state(tmp_path)["distill"]["action"] == "resumed"


def test_output_changed_on_disk_reruns_it_and_downstream(tmp_path, fake):
    assert run(tmp_path) == 0
    fake.calls.clear()
    (tmp_path / "export" / "manifest.json").write_text("{}")
    assert run(tmp_path) == 0
    assert fake.names() == ["export", "firmware", "mcu", "bench"]


def test_unavailable_and_failed_stages_are_recorded_with_reasons(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(pipeline, "why_unavailable",
                        lambda st, launcher=None: "qemu-system-arm not found on PATH" if st.name == "mcu" else None)
    fake.fail["firmware"] = "anyppg firmware: error: model_int8.tflite: unsupported op SQUARE"
    assert run(tmp_path) == 1                             # a failure is an error; a missing tool is not
    st = state(tmp_path)
    assert st["firmware"]["status"] == "failed" and "unsupported op SQUARE" in st["firmware"]["reason"]
    assert st["mcu"]["status"] == "not run" and "needs firmware, which is failed" in st["mcu"]["reason"]
    assert st["bench"]["status"] == "done"
    fake.fail.clear()
    assert run(tmp_path) == 0
    st = state(tmp_path)
    assert st["firmware"]["status"] == "done"
    assert st["mcu"] == {**st["mcu"], "status": "not run", "reason": "qemu-system-arm not found on PATH"}


def test_missing_command_is_not_run(monkeypatch):
    stage = pipeline.Stage("x", ("bench",), "x", (), lambda c: [])
    monkeypatch.setitem(pipeline.COMMANDS, ("bench",), ("no_such_package.bench", ""))
    assert "not available in this checkout" in pipeline.why_unavailable(stage)


def test_from_and_until_stage(tmp_path, fake):
    assert run(tmp_path, extra=("--until-stage", "qat")) == 0
    assert fake.names() == ALL[:ALL.index("qat") + 1]
    fake.calls.clear()
    assert run(tmp_path, extra=("--from-stage", "distill", "--until-stage", "export")) == 0
    assert fake.names() == ["distill", "qat", "export"]   # forced, though unchanged
    fake.calls.clear()
    assert run(tmp_path) == 0
    assert fake.names() == ["firmware", "mcu", "bench"]   # the rest is as the forced run left it


def test_teacher_checkpoint_replaces_pretraining(tmp_path, fake):
    ck = tmp_path / "anyppg_ckpt.pth"
    ck.write_bytes(b"weights v1")
    out = tmp_path / "run"
    assert run(out, f"teacher_checkpoint={ck}") == 0
    assert "pretrain" not in fake.names()
    assert state(out)["pretrain"]["status"] == "replaced"
    distill_argv = dict(fake.calls)["distill"]
    assert distill_argv[distill_argv.index("--teacher") + 1] == str(ck)
    fake.calls.clear()
    ck.write_bytes(b"weights v2")
    assert run(out, f"teacher_checkpoint={ck}") == 0
    assert fake.names() == ["probe", "distill", "qat", "export", "firmware", "mcu", "bench"]


def test_config_errors_are_one_line(tmp_path, capsys):
    assert pipeline.main(["--config", "tiny", "--out", str(tmp_path), "--set", "distil.config=x"]) == 2
    assert "unknown config key 'distil'" in capsys.readouterr().err
    assert pipeline.main(["--config", "no-such", "--out", str(tmp_path)]) == 2
    assert "known pipeline configs" in capsys.readouterr().err


def test_every_shipped_config_resolves():
    for p in sorted(pipeline.CONFIG_DIR.joinpath("pipeline").glob("*.yaml")):
        cfg = pipeline.resolve_config(p.stem, [])
        ctx = pipeline.Ctx(Path("/r"), cfg, Path("/d"))
        for st in pipeline.STAGE_LIST:
            assert "--out" in st.build(ctx), (p.stem, st.name)
    gpu = pipeline.resolve_config("gpu-full", [])
    assert gpu.pretrain.launcher[0] == "torchrun"


# ------------------------------------------------------------------ the real tiny chain, once
def _wait_for(pred, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_real_tiny_chain_interrupt_resume_and_skip(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "anyppg.cli", "pipeline", "--config", "tiny", "--out", str(out),
            "--no-report", "--set", "probe.enabled=false", "--until-stage"]

    def distill_running():
        try:
            return state(out).get("distill", {}).get("status") == "running"
        except (OSError, ValueError):
            return False

    proc = subprocess.Popen(base + ["distill"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert _wait_for(distill_running, 300), proc.communicate()[0]
    os.kill(proc.pid, signal.SIGTERM)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    st = state(out)
    assert st["pretrain"]["status"] == "done" and st["distill"]["status"] == "running"

    r = subprocess.run(base + ["qat"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "prepare   unchanged, skipped" in r.stdout and "pretrain  unchanged, skipped" in r.stdout
    assert "distill   done" in r.stdout and "qat       done" in r.stdout
    assert "probe     not run: disabled" in r.stdout
    assert (out / "qat" / "manifest.json").is_file()
    assert json.loads((out / "pipeline.json").read_text())["stages"]["distill"]["status"] == "done"

    r = subprocess.run(base + ["qat"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.count("unchanged, skipped") == 4, r.stdout
