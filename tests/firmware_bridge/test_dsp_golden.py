"""The C preprocessing (gcc -Werror, AddressSanitizer + UndefinedBehaviorSanitizer) against
edge_runtime on golden vectors: synthetic streams at several sensor rates, and real recordings
(BIDMC 125 Hz, PPG-BP 1 kHz, Liu 100 Hz, TROIKA wrist 125 Hz) generated at test time.

Bar (issue 13): |z| within 1e-4 per sample, int8 input equal on >= 99.9% of samples and never
more than one step apart, the same windows, the same quality flags."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge import dsp_check, golden
from tests.conftest import shared_dataset

pytestmark = pytest.mark.skipif(dsp_check.missing_host_compiler() is not None,
                                reason=str(dsp_check.missing_host_compiler()))

# A sidecar as `anyppg export` writes it, without a model: the preprocessing needs the spec and
# the input quantisation only (tests with a real export are in test_bundle.py).
SIDECAR = {"schema_version": 2, "spec": {"ppg_fs": 125.0, "window_s": 10.0, "hop_s": 10.0},
           "inputs": [{"name": "ppg", "position": 0, "shape": [1, 1250, 1],
                       "scale": 0.022477567195892334, "zero_point": -29}],
           "outputs": []}


def sidecar() -> dict:
    from edge_runtime.spec import SignalSpec
    sc = json.loads(json.dumps(SIDECAR))
    sc["spec"] = SignalSpec(**{k: v for k, v in SIDECAR["spec"].items()}).to_dict()
    return sc


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    """Sanitised host runners by sensor rate, built once."""
    cache: dict[tuple, Path] = {}

    def get(fs: float, pad_short: bool = False) -> Path:
        key = (fs, pad_short)
        if key not in cache:
            d = dsp_check.generate_sources(sidecar(), fs, tmp_path_factory.mktemp(f"dsp{fs:g}"))
            cache[key] = dsp_check.build_host(d, "anyppg_dsp_run.c", sanitize=True,
                                              defines={"RUN_PAD_SHORT": int(pad_short)},
                                              out=d / f"run_pad{int(pad_short)}")
        return cache[key]
    return get


def check_records(records, fs, runners, tmp_path, pad_short=False) -> dict:
    """Golden sets for each record, the C runner on each, comparisons pooled over all."""
    exe = runners(fs, pad_short)
    z_err, q_eq, q_n, q_step, flags_eq, windows = 0.0, 0, 0, 0, 0, 0
    for i, x in enumerate(records):
        g_dir = tmp_path / f"g{i}"
        golden.write_golden(g_dir, x, fs, sidecar(), None, "test", pad_short=pad_short)
        gold = golden.load_golden(g_dir)
        got = dsp_check.run_golden(exe, g_dir, 1250)
        c = dsp_check.compare(got, gold)
        assert c["same_windows"], (i, c)
        if c["windows"] == 0:
            continue
        z_err = max(z_err, c["max_abs_z"])
        q_step = max(q_step, c["int8_max_step"])
        q_eq += round(c["int8_equal"] * c["windows"] * 1250)
        q_n += c["windows"] * 1250
        flags_eq += round(c["flags_equal"] * c["windows"])
        windows += c["windows"]
    res = {"windows": windows, "max_abs_z": z_err, "int8_equal": q_eq / max(q_n, 1),
           "int8_max_step": q_step, "flags_equal": flags_eq / max(windows, 1)}
    print(f"fs={fs:g}: {res}")
    assert windows > 0
    assert res["max_abs_z"] <= 1e-4, res
    assert res["int8_equal"] >= 0.999, res
    assert res["int8_max_step"] <= 1, res
    assert res["flags_equal"] == 1.0, res
    return res


def synthetic(fs: float, seconds: float, subject: int = 1, seed: int = 3) -> np.ndarray:
    from training.data.synthetic import generate_subject
    sig = generate_subject(subject, seed=seed, duration_s=seconds, ppg_fs=fs).signals["ppg"]
    # a sensor-like DC level far above the pulse, which float32 must survive
    return np.asarray(getattr(sig, "data", getattr(sig, "values", None))) * 500.0 + 20000.0


@pytest.mark.parametrize("fs", [125.0, 64.0, 25.0, 100.0])
def test_synthetic_streams(fs, runners, tmp_path):
    check_records([synthetic(fs, 45.0)], fs, runners, tmp_path)


def test_synthetic_with_gaps_and_flat_runs(runners, tmp_path):
    """NaN/inf gaps and a sensor-off run: same values where defined, same flags."""
    x = synthetic(64.0, 60.0)
    x[700:720] = np.nan
    x[1500] = np.inf
    x[2300:2500] = x[2300]          # 3 s of one ADC code: flat
    x[3000:3010] = 1e6              # a spike: amplitude
    res = check_records([x], 64.0, runners, tmp_path)
    assert res["windows"] == 6
    flags = dsp_check.read_outputs(tmp_path / "g0", 1250)["flags"]
    # gap at 10.9 s, inf at 23.4 s, one code over 35.9-39.0 s, a spike at 46.9 s
    assert flags.tolist() == [0, 1, 1, 2, 8, 0]


@pytest.mark.parametrize("hop_s,order", [(4.0, 3), (12.5, 3), (10.0, 5)])
def test_other_specs(hop_s, order, tmp_path):
    """Overlapping windows (hop < window: copied out of the ring to be filtered), windows with
    gaps between them (a ring of two hops, filtered in place), a 5th-order band-pass; a NaN
    gap that two overlapping windows share."""
    sc = sidecar()
    sc["spec"]["hop_s"] = hop_s
    sc["spec"]["ppg_filter_order"] = order
    d = dsp_check.generate_sources(sc, 64.0, tmp_path / "gen")
    assert ("ANYPPG_DSP_IN_PLACE 0" in (d / "anyppg_model_settings.h").read_text()) == (hop_s < 10)
    exe = dsp_check.build_host(d, "anyppg_dsp_run.c", sanitize=True)
    x = synthetic(64.0, 60.0)
    x[420:430] = np.nan                      # 6.6 s: in the windows from 0 s and from 4 s
    golden.write_golden(tmp_path / "g", x, 64.0, sc, None, "test")
    gold = golden.load_golden(tmp_path / "g")
    c = dsp_check.compare(dsp_check.run_golden(exe, tmp_path / "g", 1250), gold)
    assert c["same_windows"] and c["windows"] >= 4, c
    assert c["max_abs_z"] <= 1e-4 and c["int8_equal"] >= 0.999 and c["int8_max_step"] <= 1, c
    assert c["flags_equal"] == 1.0, c
    assert int(gold["flags_data"][0]) & 1 and (hop_s >= 10 or int(gold["flags_data"][1]) & 1)


def test_short_record_is_tiled_and_flagged(runners, tmp_path):
    x = synthetic(1000.0, 2.1)
    check_records([x], 1000.0, runners, tmp_path, pad_short=True)
    got = dsp_check.read_outputs(tmp_path / "g0", 1250)
    assert got["flags"][0] & 16      # too_short


# ---------------------------------------------------------------------------- real recordings
@pytest.mark.data
@pytest.mark.slow
def test_bidmc(runners, tmp_path):
    import pandas as pd
    root = shared_dataset("bidmc")
    recs = []
    for n in (1, 2, 3):
        with gzip.open(root / f"bidmc_{n:02d}_Signals.csv.gz", "rt") as f:
            df = pd.read_csv(f)
        df.columns = [c.strip() for c in df.columns]
        recs.append(df["PLETH"].to_numpy(np.float64))
    check_records(recs, 125.0, runners, tmp_path)


@pytest.mark.data
@pytest.mark.slow
def test_ppg_bp(runners, tmp_path):
    files = sorted((shared_dataset("ppg_bp") / "PPGBPDatabase").glob("*.txt"))[:24]
    recs = [np.loadtxt(f).reshape(-1) for f in files]
    res = check_records(recs, 1000.0, runners, tmp_path, pad_short=True)
    assert res["windows"] == len(recs)


@pytest.mark.data
@pytest.mark.slow
def test_liu(runners, tmp_path):
    from scipy.io import loadmat
    f = sorted(shared_dataset("liu2022_arrhythmia").glob("MPA_*.mat"))[0]
    seg = np.asarray(loadmat(f)["ppgseg"], np.float64)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(seg), size=min(30, len(seg)), replace=False))
    check_records([seg[i] for i in pick], 100.0, runners, tmp_path)


@pytest.mark.data
@pytest.mark.slow
def test_troika_wrist(runners, tmp_path):
    from scipy.io import loadmat
    root = shared_dataset("troika_test")
    recs = [np.asarray(loadmat(f)["sig"], np.float64)[0]
            for f in sorted(root.glob("TEST_S*_T*.mat"))[:3]]
    check_records(recs, 125.0, runners, tmp_path)
