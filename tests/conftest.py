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
