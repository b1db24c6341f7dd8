"""Shared fixtures. Real recordings live in ../shared/data beside the project root; a fresh
clone of a user's may not have them, so every test that needs them skips with a reason."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ANYPPG_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of one dataset under ../shared/data, or skip the test saying what is missing."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"real data not present: {p} (see ../shared/data/README.md)")
    return p


@pytest.fixture
def shared_data():
    return shared_dataset


def set_args(*items: str) -> list[str]:
    """['a=1', 'b=2'] -> ['--set', 'a=1', '--set', 'b=2'] for a stage's command line."""
    return [tok for it in items for tok in ("--set", it)]


@pytest.fixture(scope="session")
def paired_store(tmp_path_factory):
    """A small synthetic store with paired ECG (8 subjects x 2 min), prepared once per session."""
    from training.prepare import main as prepare_main
    out = tmp_path_factory.mktemp("paired") / "store"
    assert prepare_main(["--source", "synthetic", "--input", "subjects=8,minutes=2,seed=11",
                         "--out", str(out), "--quiet", "--workers", "1"]) == 0
    return out
