"""The signal contract: rates, filters, windowing, z-score and quality flags."""
import numpy as np
import pytest
from scipy import signal as sps

from edge_runtime import preprocess as pp
from edge_runtime.spec import (FLAG_AMPLITUDE, FLAG_CLIPPING, FLAG_FLAT, FLAG_NAN_GAP,
                               FLAG_TOO_SHORT, SPECS, SignalSpec, flag_names, flags_from_names)

SPEC = SPECS["small"]


def pulse(fs, seconds, hr_bpm=72.0, seed=0):
    t = np.arange(int(fs * seconds)) / fs
    rng = np.random.default_rng(seed)
    f = hr_bpm / 60
    return np.sin(2 * np.pi * f * t) + 0.4 * np.sin(4 * np.pi * f * t + 1) + 0.01 * rng.standard_normal(len(t))


def test_spec_defaults_match_anyppg_release():
    assert SPEC.ppg_fs == 125 and SPEC.ppg_len == 1250
    assert SPEC.ppg_band_hz == (0.5, 8.0) and SPEC.ppg_filter_order == 3
    assert SPECS["full"].ecg_len == 5000
    assert SignalSpec.from_dict(SPEC.to_dict()) == SPEC


@pytest.mark.parametrize("bad", [dict(mains_hz=55.0), dict(ppg_band_hz=(0.5, 70.0)), dict(ppg_fs=-1.0),
                                 dict(ecg_fs=100.0, mains_hz=60.0)])
def test_spec_rejects_impossible_settings(bad):
    with pytest.raises(ValueError, match="SignalSpec"):
        SignalSpec(**bad)


def test_flag_names_roundtrip():
    assert flag_names(flags_from_names(["flat", "clipping"])) == ["flat", "clipping"]
    with pytest.raises(ValueError, match="unknown quality flag"):
        flags_from_names(["bogus"])


@pytest.mark.parametrize("fs_in", [100.0, 250.0, 500.0, 1000.0, 128.0])
def test_resample_keeps_frequency_and_length(fs_in):
    x = pulse(fs_in, 30)
    y, miss = pp.resample(x, fs_in, 125.0)
    assert abs(len(y) - 30 * 125) <= 1 and not miss.any()
    f, p = sps.periodogram(y, fs=125.0)
    assert abs(f[np.argmax(p)] * 60 - 72.0) < 2.5


def test_resample_marks_nan_gaps_and_never_returns_nan():
    x = pulse(250.0, 30)
    x[2500:3000] = np.nan            # 10 s .. 12 s
    y, miss = pp.resample(x, 250.0, 125.0)
    assert np.isfinite(y).all()
    gap = np.flatnonzero(miss)
    assert gap.min() >= 1245 and gap.max() <= 1505 and len(gap) >= 248


def test_bandpass_removes_baseline_and_high_frequency():
    t = np.arange(1250) / 125
    clean = np.sin(2 * np.pi * 1.2 * t)
    dirty = clean + 3 * t / 10 + 0.5 * np.sin(2 * np.pi * 30 * t)
    out = pp.preprocess_ppg_windows(dirty[None], SPEC)[0]
    ref = pp.zscore(clean[None])[0]
    # Zero-phase: no lag, so the cleaned window lines up with the clean pulse.
    assert np.corrcoef(out[100:-100], ref[100:-100])[0, 1] > 0.99
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4


def test_ppg_windows_hop_and_shapes():
    x = pulse(125.0, 65)
    w = pp.ppg_windows(x, 125.0, SPEC)
    assert w["x"].shape == (6, 1250) and w["x"].dtype == np.float32
    assert np.allclose(w["start_s"], np.arange(6) * 10)
    w2 = pp.ppg_windows(x, 125.0, SignalSpec(hop_s=5.0))
    assert w2["x"].shape[0] == 12
    assert (w["flags"] == 0).all()


def test_quality_flags_each_defect():
    fs = 125.0
    x = pulse(fs, 60)
    x[1250:1400] = np.nan                     # window 1: gap
    x[2500:3750] = 0.7                        # window 2: sensor off (flat)
    seg = x[3750:5000].copy()                 # window 3: saturated ADC
    x[3750:5000] = np.clip(seg, -0.5, 0.5)
    x[5000 + 600] += 80.0                     # window 4: a spike
    w = pp.ppg_windows(x, fs, SPEC)
    f = w["flags"]
    assert f[0] == 0
    assert f[1] & FLAG_NAN_GAP
    assert f[2] & FLAG_FLAT
    assert f[3] & FLAG_CLIPPING and not f[3] & FLAG_FLAT
    assert f[4] & FLAG_AMPLITUDE
    assert np.isfinite(w["x"]).all()


def test_too_short_record_is_rejected_or_tiled():
    x = pulse(1000.0, 2.1)
    assert pp.ppg_windows(x, 1000.0, SPEC)["x"].shape == (0, 1250)
    w = pp.ppg_windows(x, 1000.0, SPEC, pad_short=True)
    assert w["x"].shape == (1, 1250) and w["flags"][0] & FLAG_TOO_SHORT


def test_flat_window_zscores_to_zeros_not_nan():
    z = pp.zscore(np.full((2, 1250), 3.0))
    assert np.isfinite(z).all() and (z == 0).all()


def test_ecg_windows_align_and_notch():
    spec = SPECS["full"]
    fs = 500.0
    t = np.arange(int(fs * 30)) / fs
    ecg = np.sin(2 * np.pi * 1.1 * t) ** 31 + 0.5 * np.sin(2 * np.pi * 50 * t)
    e = pp.ecg_windows(ecg, fs, spec, np.array([0.0, 10.0, 25.0]))
    assert e["x"].shape == (3, 5000)
    assert e["flags"][2] & FLAG_NAN_GAP          # runs past the end
    f, p = sps.periodogram(e["x"][0], fs=fs)
    assert p[np.argmin(abs(f - 50))] < 1e-3 * p.max()
