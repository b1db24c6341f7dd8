"""Hostile input and fuzzing of the C preprocessing under AddressSanitizer and
UndefinedBehaviorSanitizer (incl. float-cast-overflow): bad arguments and rates, NaN/inf/huge
samples, flat and saturated windows, odd chunk sizes, an app that stops polling
(c/tests/anyppg_dsp_hostile.c), and a fuzz harness over the streaming API
(c/tests/anyppg_dsp_fuzz.c) run for a fixed number of iterations."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from firmware_bridge import dsp_check
from tests.firmware_bridge.test_dsp_golden import sidecar

pytestmark = pytest.mark.skipif(dsp_check.missing_host_compiler() is not None,
                                reason=str(dsp_check.missing_host_compiler()))


def hop_sidecar(hop_s: float) -> dict:
    sc = sidecar()
    sc["spec"]["hop_s"] = hop_s
    return sc


@pytest.mark.parametrize("fs,hop_s", [(125.0, 10.0), (64.0, 10.0), (25.0, 10.0), (64.0, 4.0)])
def test_hostile_inputs(fs, hop_s, tmp_path):
    """hop 4 s: overlapping windows, filtered out of the ring."""
    d = dsp_check.generate_sources(hop_sidecar(hop_s), fs, tmp_path)
    exe = dsp_check.build_host(d, "anyppg_dsp_hostile.c", sanitize=True)
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "ok: 0 failures" in res.stdout


@pytest.mark.slow
def test_fuzz_loop(tmp_path):
    """2000 random programs (raw bytes, pulse-like floats, sparse NaN/1e38) per rate class, and
    for overlapping windows."""
    for fs, hop_s in ((125.0, 10.0), (64.0, 10.0), (64.0, 4.0)):
        d = dsp_check.generate_sources(hop_sidecar(hop_s), fs, tmp_path / f"f{fs:g}_{hop_s:g}")
        exe = dsp_check.build_host(d, "anyppg_dsp_fuzz.c", sanitize=True,
                                   defines={"ANYPPG_FUZZ_LOOP": 2000})
        res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "2000 programs ok" in res.stdout


def seed_program(seconds: float, fs: float) -> bytes:
    """A fuzz program that streams a pulse in 250-sample pushes with polls, then finishes."""
    prog, t = bytearray(), 0
    while t < seconds * fs:
        x = 1000 + 50 * np.sin(2 * np.pi * 1.2 * np.arange(t, t + 250) / fs)
        prog += bytes([0, 250]) + np.asarray(x, "<f4").tobytes() + bytes([6])
        t += 250
    return bytes(prog + bytes([7]))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed (Debian clang)")
def test_libfuzzer(tmp_path):
    d = dsp_check.generate_sources(sidecar(), 64.0, tmp_path)
    try:
        exe = dsp_check.build_host(d, "anyppg_dsp_fuzz.c", sanitize=False, compiler="clang",
                                   extra=("-fsanitize=fuzzer,address,undefined,float-cast-overflow",),
                                   out=d / "libfuzz")
    except dsp_check.CheckError as e:
        pytest.skip(f"clang cannot build a libFuzzer target here ({e}; libclang-rt-14-dev)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(seed_program(40.0, 64.0))
    res = subprocess.run([str(exe), "-runs=300", "-seed=1", "-max_len=65536", "-len_control=0",
                          str(corpus)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done 300 runs" in res.stderr
