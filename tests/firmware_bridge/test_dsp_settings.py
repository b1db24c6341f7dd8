"""The C preprocessing's constants (firmware_bridge/settings.py): the fixed-point band-pass
reproduces scipy's sections for every Butterworth order the spec allows, keeps 24+ input bits,
and refuses what it cannot represent; the ring layout follows the hop."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.preprocess import ppg_sos
from edge_runtime.spec import SignalSpec
from firmware_bridge import settings


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("band", [(0.5, 8.0), (0.3, 5.0), (1.0, 20.0)])
def test_fixed_point_sections_reproduce_scipy(order, band):
    spec = SignalSpec(ppg_filter_order=order, ppg_band_hz=band)
    sos = ppg_sos(spec)
    bp = settings.fixed_point_bandpass(sos)
    g = bp["kg"] + bp["fg"] / 2.0**32
    b = g[:, None] * bp["c"]
    a = -(bp["ka"] + bp["fa"] / 2.0**32)
    assert np.abs(b - sos[:, :3]).max() <= 2.0**-32 * 4
    assert np.abs(a - sos[:, 4:]).max() <= 2.0**-32
    assert np.all(np.abs(bp["fg"]) < 2**31) and np.all(np.abs(bp["fa"]) < 2**31)
    assert bp["bits"] >= 24


def test_numerator_must_be_g_times_small_integers():
    with pytest.raises(ValueError, match="small integers"):
        settings.numerator_taps(np.array([1.0, 0.3, 1.0]))
    g, c = settings.numerator_taps(np.array([0.25, -0.5, 0.25]))
    assert g == 0.25 and c.tolist() == [1, -2, 1]


def test_ring_follows_the_hop():
    assert settings.ring_length(1250, 1250) == (2500, True)      # in place, one piece per window
    assert settings.ring_length(1250, 500) == (1750, False)      # overlapping: copied out
    assert settings.ring_length(1250, 1600) == (3200, True)


def test_input_scale_too_small_for_int32_is_refused():
    with pytest.raises(ValueError, match="too small"):
        settings.check_quantisation(1250, 1e-8)
    settings.check_quantisation(1250, 0.0225)
