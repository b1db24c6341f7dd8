"""The C HR refinement (firmware_bridge/c/anyppg_hr.c) against its definition,
edge_runtime.hr_refine.refine_hr, on the int8 windows a device feeds the model: BIDMC recordings
(where ../shared/data has them) and the session's synthetic store, with hr values near and far
from each window's pulse, at and beyond the ends of 30-230 bpm, NaN, and an all-zero window.

Tolerance: TOL_BPM = 0.002. The C works in float32 (Reinsch's recurrence over 1250 samples,
float32 sums of at most 121 weights, 1-ulp polynomials for sin, log and exp); edge_runtime in
float64. Measured here: at most about 1e-4 bpm (printed by the tests), i.e. a few float32 ulps
of the hr itself (1.5e-5 at 200 bpm); the tolerance leaves 20x of that and is 50x below the
0.1 bpm a watch might show. A header with a 10% wrong sigma or power misses it by far more
(test_wrong_header_is_caught), so the comparison can fail.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import replace

import numpy as np
import pytest

from edge_runtime.contract import sidecar_inputs
from edge_runtime.hr_refine import HRRefine, RefineConfigError
from edge_runtime.interpreters import quantize_input
from edge_runtime.preprocess import ppg_windows
from edge_runtime.spec import SignalSpec
from firmware_bridge import hr_check, qemu
from firmware_bridge.dsp_check import missing_host_compiler
from firmware_bridge.settings import hr_refine_macros, settings_header
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(missing_host_compiler() is not None,
                                reason=str(missing_host_compiler()))
TOL_BPM = 0.002
# the sidecar's own block (or the runtime's default), and two corners of the export's grid
VARIANTS = {"own": None,
            "sigma15-power0.5": HRRefine(sigma_bpm=15.0, power=0.5, radius_bpm=60.0),
            "sigma5-power1-step0.5": HRRefine(sigma_bpm=5.0, power=1.0, radius_bpm=20.0, step_bpm=0.5)}


def with_refine(sidecar: dict, cfg: HRRefine | None) -> dict:
    """A copy of the sidecar carrying `cfg` (its own block, or the default where it has none).
    In memory only: a modified sidecar is never written next to a model file."""
    out = json.loads(json.dumps(sidecar))
    if cfg is not None or HRRefine.from_sidecar(out) is None:
        out["hr_refine"] = (cfg or HRRefine()).to_dict()
    return out


def bidmc_windows(spec: SignalSpec, records: int = 5) -> list[np.ndarray]:
    """Preprocessed windows of the first BIDMC recordings, or none without ../shared/data."""
    import pandas as pd
    root = SHARED_DATA / "bidmc"
    if not root.exists():
        return []
    out = []
    for n in range(1, records + 1):
        with gzip.open(root / f"bidmc_{n:02d}_Signals.csv.gz", "rt") as f:
            df = pd.read_csv(f)
        df.columns = [c.strip() for c in df.columns]
        out.append(ppg_windows(df["PLETH"].to_numpy(np.float64), 125.0, spec)["x"])
    return out


@pytest.fixture(scope="module")
def cases(export_dir, qstore):
    """(q (N, L) int8, zero_point, hr (N,) float32, what): every window twice (once near its
    spectral peak, once anywhere in 20-250 bpm), plus the edge cases."""
    from training.data.store import WindowStore
    sidecar = json.loads((export_dir / "model_int8.json").read_text())
    spec = SignalSpec.from_dict(sidecar["spec"])
    ppg = next(e for e in sidecar_inputs(sidecar) if e["name"] == "ppg")
    z = np.concatenate([*bidmc_windows(spec), WindowStore(qstore, split=None).column("ppg")])
    q = quantize_input(z.astype(np.float32), float(ppg["scale"]), int(ppg["zero_point"]))
    zp = int(ppg["zero_point"])
    rng = np.random.default_rng(0)
    freqs = np.fft.rfftfreq(z.shape[1], 1.0 / spec.ppg_fs) * 60.0
    band = (freqs >= 40) & (freqs <= 220)
    peak = freqs[band][np.argmax(np.abs(np.fft.rfft(q.astype(np.float64) - zp))[:, band], axis=1)]
    near = peak + rng.normal(0.0, 8.0, len(q))
    far = rng.uniform(20.0, 250.0, len(q))
    edges = np.array([30.0, 230.0, 29.0, 231.0, 0.0, 259.0, 260.0, 261.0, 300.0, -40.0, 60.0,
                      np.nextafter(np.float32(60.0), np.float32(100.0)), 200.0, 1e-40, 3.4e38,
                      np.nan, np.inf, -np.inf], np.float32)
    zero = np.full((len(edges), q.shape[1]), zp, np.int8)
    pick = rng.choice(len(q), len(edges))
    rail = np.stack([np.full(q.shape[1], 127), np.where(np.arange(q.shape[1]) % 2, 127, -128)]).astype(np.int8)
    qs = np.concatenate([q, q, q[pick], rail, zero])        # zero: the all-zero window (x = q - zp)
    hr = np.concatenate([near, far, edges, [100.0, 100.0], edges]).astype(np.float32)
    n_bidmc = len(z) - len(WindowStore(qstore, split=None).column("ppg"))
    return {"q": qs, "zp": zp, "hr": hr, "sidecar": sidecar, "windows": len(q), "bidmc": n_bidmc}


def compare(cases, cfg: HRRefine | None, tmp_path, header_cfg: HRRefine | None = None) -> float:
    """max |C - edge_runtime| (bpm) with the header of `header_cfg` (default: cfg itself)."""
    side = with_refine(cases["sidecar"], cfg)
    gen = hr_check.generate_header(with_refine(cases["sidecar"], header_cfg or cfg), tmp_path / "gen")
    got, _ = hr_check.run(hr_check.build_host(gen), cases["q"], cases["zp"], cases["hr"], tmp_path / "run")
    ref = hr_check.reference(cases["q"], cases["zp"], cases["hr"], side)
    fin = np.isfinite(ref)
    assert np.array_equal(got[~fin], ref[~fin], equal_nan=True)     # NaN and +-inf kept as given
    return float(np.abs(got[fin].astype(np.float64) - ref[fin]).max())


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_c_matches_edge_runtime(cases, variant, tmp_path):
    assert len(cases["hr"]) >= 200
    diff = compare(cases, VARIANTS[variant], tmp_path)
    print(f"\n{variant}: max |C - edge_runtime| {diff:.2e} bpm over {len(cases['hr'])} (window, hr) "
          f"pairs of {cases['windows']} windows ({cases['bidmc']} BIDMC)")
    assert diff <= TOL_BPM


@pytest.mark.slow
@pytest.mark.parametrize("field", ["sigma_bpm", "power"])
def test_wrong_header_is_caught(cases, field, tmp_path):
    cfg = HRRefine.from_sidecar(with_refine(cases["sidecar"], None))
    wrong = replace(cfg, **{field: getattr(cfg, field) * 1.1})
    assert compare(cases, cfg, tmp_path, header_cfg=wrong) > 10 * TOL_BPM


@pytest.mark.slow
@pytest.mark.skipif(qemu.missing_tools() is not None, reason=str(qemu.missing_tools()))
def test_cortex_m4_gives_the_host_bits(cases, tmp_path):
    """The same build on the simulated Cortex-M4F: the same float32 bits as the host."""
    gen = hr_check.generate_header(with_refine(cases["sidecar"], None), tmp_path / "gen")
    sel = np.r_[0:24, len(cases["hr"]) - 32:len(cases["hr"])]   # BIDMC/synthetic + edge cases
    args = (cases["q"][sel], cases["zp"], cases["hr"][sel])
    host, _ = hr_check.run(hr_check.build_host(gen, sanitize=False), *args, tmp_path / "host")
    m4, insns = hr_check.run(hr_check.build_board(gen), *args, tmp_path / "m4", board="mps2-an386")
    assert np.array_equal(host.view(np.uint32), m4.view(np.uint32))
    print(f"\nCortex-M4F: {insns['hr_max']} instructions per window at most")
    assert 0 < insns["hr_max"] <= insns["hr_sum"]


def test_no_block_is_a_copy(cases, tmp_path):
    """Built from a sidecar without a block, anyppg_hr_refine hands the network's hr back."""
    plain = {k: v for k, v in cases["sidecar"].items() if k != "hr_refine"}
    gen = hr_check.generate_header(plain, tmp_path / "gen")
    got, _ = hr_check.run(hr_check.build_host(gen), cases["q"][-40:], cases["zp"], cases["hr"][-40:],
                          tmp_path / "run")
    assert np.array_equal(got.view(np.uint32), cases["hr"][-40:].view(np.uint32))


def test_settings_macros(export_dir):
    sidecar = json.loads((export_dir / "model_int8.json").read_text())
    plain = {k: v for k, v in sidecar.items() if k != "hr_refine"}
    assert "#define ANYPPG_HAS_HR_REFINE 0" in settings_header(plain, 125.0)
    h = settings_header(with_refine(plain, HRRefine(sigma_bpm=5.0, power=0.5, radius_bpm=20.0)), 64.0)
    for line in ("#define ANYPPG_HAS_HR_REFINE 1", "#define ANYPPG_HR_REFINE_SIGMA_BPM 5.0f",
                 "#define ANYPPG_HR_REFINE_POWER 0.5f", "#define ANYPPG_HR_REFINE_RADIUS_BPM 20.0f",
                 "#define ANYPPG_HR_REFINE_STEP_BPM 1.0f", "#define ANYPPG_HR_BIN_MIN_BPM 30.0f",
                 "#define ANYPPG_HR_BIN_MAX_BPM 230.0f", "#define ANYPPG_HR_REFINE_N_CANDIDATES 201",
                 "#define ANYPPG_HR_REFINE_MAX_USED 42"):
        assert line in h, line
    bad = dict(plain, hr_refine={**HRRefine().to_dict(), "power": -1.0})
    with pytest.raises(RefineConfigError, match="power"):
        settings_header(bad, 125.0)
    with pytest.raises(ValueError, match="at least 15.3333 Hz"):     # 230 bpm / 15
        hr_refine_macros(with_refine(plain, None), 12.0)
