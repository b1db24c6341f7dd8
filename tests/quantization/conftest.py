"""Helpers of the quantisation tests. The tiny store -> distill -> QAT -> export chain they use is
in tests/conftest.py (shared with the runtime and firmware tests)."""
from __future__ import annotations

from tests.conftest import randomise_bn, write_distill_run  # noqa: F401  (re-exported for the tests)


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines ('anyppg <stage>: error: ...'), ignoring Python warnings that
    libraries may print to stderr; each error must be exactly one line."""
    return [l for l in stderr.splitlines() if l.startswith("anyppg ") and ": error:" in l]
