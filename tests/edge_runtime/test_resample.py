"""The streaming resampler: resample_poly's filter, chunk invariance, gaps, rates."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal as sps

from edge_runtime.resample import (StreamResampler, prototype_filter, resample_ratio,
                                   resample_stream)

RATES = [25, 50, 64, 100, 125, 128, 200, 250, 256, 500, 1000]


def record(fs, seconds=20, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(fs * seconds)) / fs
    return np.sin(2 * np.pi * 1.3 * t) + 0.3 * np.sin(2 * np.pi * 4.1 * t) + 0.05 * rng.standard_normal(len(t))


@pytest.mark.parametrize("fs", RATES)
def test_interior_equals_resample_poly(fs):
    x = record(fs)
    y, miss = resample_stream(x, fs, 125.0)
    up, down = resample_ratio(fs, 125.0)
    ref = sps.resample_poly(x, up, down)
    assert len(y) == len(ref) and not miss.any()
    # resample_poly pads with zeros at both ends; ours holds the edge samples: compare the
    # interior, where neither end reaches.
    edge = (10 * max(up, down)) // down + 2
    np.testing.assert_allclose(y[edge:-edge], ref[edge:-edge], rtol=0, atol=1e-12)


def test_prototype_filter_is_resample_polys():
    h = prototype_filter(5, 4)
    ref = sps.firwin(101, 1 / 5, window=("kaiser", 5.0)) * 5
    assert np.array_equal(h, ref)


def test_identity_and_start_without_transient():
    x = np.full(500, 3.0)
    y, _ = resample_stream(x, 125.0, 125.0)
    assert np.array_equal(y, x)
    y, _ = resample_stream(np.full(640, 3.0), 64.0, 125.0)
    # history = first sample and flush = hold last: a constant stays constant at both ends, up
    # to the polyphase filter's DC ripple between phases (< 0.1%); zero padding would halve it
    np.testing.assert_allclose(y, 3.0, rtol=1e-3)
    assert abs(y[:5].mean() - y[1000:1005].mean()) < 3e-3


def test_latency_rule():
    rs = StreamResampler(64.0, 125.0)            # up 125, down 64, H 1250
    got = len(rs.push(np.zeros(100))[0])
    assert got == (100 * 125 - 1 - 1250) // 64 + 1


def test_missing_samples_hold_last_value_and_are_marked():
    fs = 250.0
    x = record(fs, 30)
    x[2500:3000] = np.nan                       # 10 s .. 12 s
    x[4000] = np.inf
    y, miss = resample_stream(x, fs, 125.0)
    assert np.isfinite(y).all()
    # one output per 2 inputs; the mark reaches one input period (half an output period) out
    assert np.flatnonzero(miss).tolist() == list(range(1250, 1501)) + [2000]
    held = x.copy()
    held[2500:3000] = x[2499]
    held[4000] = x[3999]
    y2, _ = resample_stream(held, fs, 125.0)
    assert np.array_equal(y, y2)


def test_leading_nan_is_zero_until_first_finite():
    y, miss = resample_stream(np.r_[np.nan, np.nan, np.ones(20)], 125.0, 125.0)
    assert y[:2].tolist() == [0.0, 0.0] and miss[:2].all() and not miss[2:].any()


@pytest.mark.parametrize("bad", [0.0, -64.0, float("nan"), float("inf"), "abc"])
def test_bad_rates_are_one_line_errors(bad):
    with pytest.raises(ValueError, match="rate") as e:
        StreamResampler(bad, 125.0)
    assert "\n" not in str(e.value)


def test_unrepresentable_ratio_is_an_error():
    with pytest.raises(ValueError, match="64.02 Hz"):
        resample_ratio(64.02, 125.0)


@settings(max_examples=25, deadline=None)
@given(fs=st.sampled_from([25.0, 64.0, 100.0, 125.0, 256.0, 1000.0]),
       cuts=st.lists(st.integers(0, 400), min_size=0, max_size=30),
       nan_at=st.lists(st.integers(0, 1999), max_size=5))
def test_any_chunking_gives_identical_output(fs, cuts, nan_at):
    x = record(fs, 8, seed=1)[:2000].copy()
    x[[i for i in nan_at if i < len(x)]] = np.nan
    y, m = resample_stream(x, fs, 125.0)
    rs = StreamResampler(fs, 125.0)
    ys, ms, i = [], [], 0
    for c in cuts:
        a, b = rs.push(x[i:i + c])
        ys.append(a), ms.append(b)
        i += c
    a, b = rs.push(x[i:])
    ys.append(a), ms.append(b)
    a, b = rs.flush()
    ys.append(a), ms.append(b)
    assert np.array_equal(np.concatenate(ys), y)
    assert np.array_equal(np.concatenate(ms), m)
