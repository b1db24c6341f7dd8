"""Fixtures of the training tests that more than one file uses."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def wrist_store(tmp_path_factory):
    """A tiny synthetic-wrist store with accelerometer windows (4 wearers x 1 min)."""
    from training.prepare import main as prepare_main
    out = tmp_path_factory.mktemp("wacc") / "store"
    assert prepare_main(["--source", "synthetic-wrist", "--input", "subjects=4,minutes=1,seed=2",
                         "--out", str(out), "--quiet", "--workers", "1"]) == 0
    return out
