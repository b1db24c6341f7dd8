"""The classical-features encoder (`--encoder features`): what its features read off a window,
the quality flags it takes from the store, undefined features, and its use through the probe's
encoder parsing and stores."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import preprocess as pp
from edge_runtime.spec import FLAG_CLIPPING, FLAG_FLAT, SPECS
from training.probe import baselines as B
from training.probe.embedders import check_embedder_spec, embed_windows, load_embedder
from training.probe.feature_encoder import FEATURE_NAMES, FeatureEmbedder, fill_undefined, window_features

SPEC = SPECS["small"]
FS = SPEC.ppg_fs


def _pulse(bpm: float, seconds: float, fs: float, resp_per_min: float = 15.0, seed: int = 0) -> np.ndarray:
    """A PPG-like pulse train (Gaussian systolic + diastolic waves) at bpm, with a respiratory
    baseline and amplitude modulation and a little noise. (T,)"""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    beats = np.arange(0.3, seconds, 60.0 / bpm)
    resp = np.sin(2 * np.pi * resp_per_min / 60.0 * t)
    x = np.zeros_like(t)
    for b in beats:
        a = 1.0 + 0.2 * np.sin(2 * np.pi * resp_per_min / 60.0 * b)
        x += a * np.exp(-0.5 * ((t - b - 0.15) / 0.06) ** 2) + 0.4 * a * np.exp(-0.5 * ((t - b - 0.4) / 0.08) ** 2)
    return x + 0.3 * resp + 0.01 * rng.standard_normal(len(t))


def _windows(raw: np.ndarray) -> dict:
    return pp.ppg_windows(raw, FS, SPEC)


def _col(F, name):
    return F[:, FEATURE_NAMES.index(name)]


@pytest.mark.parametrize("bpm", [55.0, 72.0, 110.0])
def test_rate_and_respiration_read_off_a_known_pulse(bpm):
    w = _windows(_pulse(bpm, 60.0, FS, resp_per_min=15.0))
    F = window_features(w["x"], w["flags"], FS)
    assert F.shape == (len(w["x"]), len(FEATURE_NAMES))
    assert np.allclose(_col(F, "hr_spectral_bpm"), bpm, atol=1.5)
    # computed for all windows at once, the same figure as the per-window baseline estimator
    assert np.allclose(_col(F, "hr_spectral_bpm"), [B.hr_spectral_one(x, FS) for x in w["x"]])
    assert np.allclose(_col(F, "rate_bpm"), bpm, atol=1.5)
    assert np.nanmedian(_col(F, "resp_rate_bpm")) == pytest.approx(15.0, abs=2.0)
    assert np.all(_col(F, "acf_peak") > 0.8)      # periodic (biased ACF: <= 1 - lag / window)


def test_a_motion_burst_moves_the_quality_features():
    clean = _pulse(70.0, 10.0, FS)
    t = np.arange(len(clean)) / FS
    rng = np.random.default_rng(1)
    burst = np.convolve(rng.standard_normal(len(t)), np.hanning(int(0.6 * FS)), "same")
    env = np.exp(-0.5 * ((t - 5.0) / 1.2) ** 2)
    moved = clean + 4.0 * np.ptp(clean) * env * burst / np.abs(burst).max()
    X = np.stack([_windows(clean)["x"][0], _windows(moved)["x"][0]])
    F = window_features(X, None, FS)
    assert _col(F, "envelope_cv")[1] > 2 * _col(F, "envelope_cv")[0]
    assert _col(F, "envelope_log_max_med")[1] > _col(F, "envelope_log_max_med")[0] + 0.5
    assert _col(F, "harmonic_power_frac")[1] < _col(F, "harmonic_power_frac")[0]
    assert _col(F, "acf_peak")[1] < _col(F, "acf_peak")[0]


def test_store_flags_become_columns_and_undefined_features_are_filled():
    x = _windows(_pulse(65.0, 30.0, FS))["x"]
    X = np.concatenate([x, np.zeros((1, x.shape[1]), np.float32)])       # a flat window: no beats
    flags = np.array([0, FLAG_CLIPPING, 0, FLAG_FLAT], np.uint8)[:len(X)]
    raw = window_features(X, flags, FS)
    assert np.isnan(_col(raw, "rate_bpm")[-1]) and np.isfinite(_col(raw, "rate_bpm")[:-1]).all()
    assert _col(raw, "flag_clipping").tolist() == [0, 1, 0, 0]
    assert _col(raw, "flag_flat").tolist() == [0, 0, 0, 1]
    Z = FeatureEmbedder().embed(X, flags=flags, fs=FS)
    assert Z.dtype == np.float32 and np.isfinite(Z).all()
    assert _col(Z, "rate_bpm")[-1] == pytest.approx(np.median(_col(raw, "rate_bpm")[:-1]), rel=1e-5)
    assert (fill_undefined(np.full((3, 2), np.nan)) == 0).all()


def test_encoder_string_parsing():
    assert check_embedder_spec("features") == "features"
    for s in ("features", "features:classical"):
        emb = load_embedder(s)
        assert isinstance(emb, FeatureEmbedder) and emb.name == "features:classical"
        assert emb.spec is None and emb.seen == [] and emb.seen_known
    with pytest.raises(ValueError, match="classical-features encoder"):
        load_embedder("features:bogus")


def test_embed_windows_passes_store_context_only_to_encoders_that_use_it():
    seen = {}

    class Plain:
        def embed(self, x):
            seen["plain"] = x.shape
            return np.zeros((len(x), 2), np.float32)

    class Ctx(Plain):
        uses_store_context = True

        def embed(self, x, flags=None, fs=None):
            seen["ctx"] = (flags.tolist(), fs)
            return np.zeros((len(x), 2), np.float32)

    x = np.zeros((2, SPEC.ppg_len), np.float32)
    embed_windows(Plain(), x, np.array([1, 2]), SPEC)
    embed_windows(Ctx(), x, np.array([1, 2]), SPEC)
    assert seen == {"plain": (2, SPEC.ppg_len), "ctx": ([1, 2], FS)}


def test_store_data_embeds_with_the_stores_flags(tmp_path):
    """The task probe's store loader hands the encoder the store's own flags and rate."""
    from training.data.synthetic_cohort import DEFAULT_CONDITIONS, write_cohort
    from training.probe.stores import StoreData
    conds = tuple(c for c in DEFAULT_CONDITIONS if c.code in ("I48", "K21"))
    write_cohort(tmp_path / "c", subjects=6, seconds=20.0, seed=1, conditions=conds)
    sd = StoreData(tmp_path / "c" / "store")
    sd.flags = sd.flags.copy()
    sd.flags[0] |= FLAG_CLIPPING                      # a flag the encoder can only know from the store
    Z = sd.embedding(load_embedder("features"))
    assert Z.shape == (len(sd.x), len(FEATURE_NAMES)) and np.isfinite(Z).all()
    assert _col(Z, "flag_clipping")[0] == 1.0
    assert np.array_equal(_col(Z, "flag_clipping")[1:] == 1.0, (sd.flags[1:] & FLAG_CLIPPING) != 0)
