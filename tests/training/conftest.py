"""Fixtures of the training tests that more than one file uses."""
from __future__ import annotations

import pytest

from tests.conftest import prepared_store


@pytest.fixture(scope="session")
def wrist_store(tmp_path_factory):
    """A tiny synthetic-wrist store with accelerometer windows (4 wearers x 1 min)."""
    return prepared_store(tmp_path_factory, "wacc", "synthetic-wrist", "subjects=4,minutes=1,seed=2")
