"""Distilling the accelerometer student: it trains on a store with accel windows (mix stores
without one are fed zeros) and refuses a primary store without accel in one line."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import set_args
from training import distill
from training.models import build_model

SETS = ["student_model=student-wrist-accel-s", "batch_size=8", "epochs=0", "max_steps=3",
        "warmup_steps=1", "log_every=1", "ckpt_every=3", "threads=1", "eval_every=0"]


def test_the_accel_input_changes_the_output():
    m = build_model("student-wrist-accel-s").model.eval()
    for p in m.accel_stem.parameters():          # make the accel path visible at init
        torch.nn.init.normal_(p, std=1.0)
    x, a = torch.randn(2, 1, 1250), torch.randn(2, 3, 1250)
    assert not torch.allclose(m(x, a).embedding, m(x).embedding)
    assert torch.equal(m(x).embedding, m(x, torch.zeros(2, 3, 1250)).embedding)


@pytest.mark.slow
def test_distills_with_accel_and_zero_fed_mix(wrist_store, qstore, tmp_path):
    out = tmp_path / "run"
    assert distill.main(["--config", "wrist-accel-s", "--from-scratch", "--data", str(wrist_store),
                         "--out", str(out), "--quiet",
                         *set_args(*SETS, f"mix=[{qstore}:0.25]")]) == 0
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 3 and any(k.startswith("accel_stem.") for k in ck["model"])


def test_refuses_a_store_without_accel(qstore, tmp_path, capsys):
    rc = distill.main(["--config", "wrist-accel-s", "--from-scratch", "--data", str(qstore),
                       "--out", str(tmp_path / "run"), "--quiet", *set_args(*SETS, "mix=[]")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err and "no accelerometer" in err
