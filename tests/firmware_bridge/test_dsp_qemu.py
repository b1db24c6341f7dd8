"""The C preprocessing on the simulated Cortex-M4F (QEMU mps2-an386): output bytes identical to
the host build, at most 0.5 M instructions per 10-s window (exact counts under -icount
shift=0) and at most 12 KB of state, from a 25 Hz to a 500 Hz sensor (the full table of rates
comes from `python -m firmware_bridge.dsp_bench`)."""
from __future__ import annotations

import pytest

from firmware_bridge import dsp_bench, dsp_check, qemu

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif((qemu.missing_tools() or dsp_check.missing_host_compiler())
                                 is not None,
                                 reason=str(qemu.missing_tools() or dsp_check.missing_host_compiler()))]


@pytest.mark.parametrize("fs", [125.0, 64.0, 25.0, 500.0])
def test_board_bit_exact_with_host(fs, tmp_path):
    r = dsp_bench.bench_rate(dsp_bench.default_sidecar(), fs, 30.0, qemu.DEFAULT_BOARD, tmp_path)
    print(r)
    assert r["windows"] == 3
    assert r["bit_exact_host_vs_board"]
    assert r["vs_edge_runtime_max_abs_z"] <= 1e-4 and r["int8_equal"] >= 0.999
    assert r["insns_per_window"] <= dsp_bench.BUDGET_INSNS, r
    assert r["sizes"]["state_and_window_bytes"] <= 12 * 1024, r
