"""The HR refinement (edge_runtime.hr_refine): the network's HR as a prior, the window's own
spectrum as the evidence; what a device shows as `hr` when the sidecar carries the block."""
import numpy as np
import pytest

from edge_runtime.hr_refine import HRRefine, RefineConfigError, refine_hr

FS, L = 125.0, 1250


def window(bpm, amp=1.0, motion_bpm=None, motion_amp=0.0, seed=0):
    """A z-scored (L,) window: a pulse at `bpm` (fundamental + a harmonic), an optional
    sinusoidal motion component, a little noise."""
    t = np.arange(L) / FS
    f = bpm / 60.0
    x = amp * (np.sin(2 * np.pi * f * t) + 0.4 * np.sin(4 * np.pi * f * t + 1.0))
    if motion_bpm:
        x = x + motion_amp * np.sin(2 * np.pi * motion_bpm / 60.0 * t + 0.3)
    x = x + 0.05 * np.random.default_rng(seed).standard_normal(L)
    return (x - x.mean()) / x.std()


@pytest.mark.parametrize("truth, network", [(97.3, 90.0), (97.3, 104.0), (48.6, 55.0), (171.2, 160.0)])
def test_a_network_estimate_a_few_bpm_off_is_pulled_to_the_pulse(truth, network):
    got = refine_hr(window(truth), network, FS, HRRefine())[0]
    assert abs(got - truth) < 1.0 < abs(network - truth)


def test_the_prior_keeps_a_stronger_motion_peak_out_when_the_network_is_near_the_pulse():
    x = window(80.0, motion_bpm=150.0, motion_amp=2.5)
    assert abs(refine_hr(x, 83.0, FS, HRRefine())[0] - 80.0) < 1.5
    # ... and the spectral peak alone would have taken the motion
    cands = HRRefine().candidates()
    p = np.abs(np.exp(-2j * np.pi * np.outer(cands / 60.0, np.arange(L) / FS)) @ x) ** 2
    assert abs(cands[p.argmax()] - 150.0) < 2


def test_result_stays_within_the_radius_and_is_scale_free():
    cfg = HRRefine()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, L))
    hr = rng.uniform(25, 235, 20)
    got = refine_hr(x, hr, FS, cfg)
    assert np.all(np.abs(got - hr) <= cfg.radius_bpm + 1e-9)
    np.testing.assert_allclose(refine_hr(37.0 * x, hr, FS, cfg), got, rtol=0, atol=1e-9)


def test_windows_it_cannot_read_keep_the_network_hr():
    cfg = HRRefine()
    x = np.stack([np.zeros(L), window(90.0), window(90.0)])
    hr = np.array([88.0, np.nan, 230.0 + cfg.radius_bpm + 5.0])
    got = refine_hr(x, hr, FS, cfg)
    assert got[0] == 88.0 and np.isnan(got[1]) and got[2] == hr[2]
    with pytest.raises(ValueError, match="3 windows but 2 hr values"):
        refine_hr(x, hr[:2], FS, cfg)


def test_padded_windows_keep_the_network_hr():
    """A recording shorter than a window is padded by repeating itself: its spectrum is a comb
    at the repetition rate, so the refinement leaves it alone (flag too_short)."""
    from edge_runtime.spec import FLAG_CLIPPING, FLAG_TOO_SHORT
    x = np.stack([window(97.3)] * 3)
    hr = np.array([90.0, 90.0, 90.0])
    got = refine_hr(x, hr, FS, HRRefine(), flags=np.array([0, FLAG_TOO_SHORT, FLAG_CLIPPING]))
    assert abs(got[0] - 97.3) < 1.0 and got[1] == 90.0 and abs(got[2] - 97.3) < 1.0


def test_sidecar_block_is_read_and_anything_else_refused():
    assert HRRefine.from_sidecar({}) is None
    cfg = HRRefine(sigma_bpm=5.0, power=1.0, radius_bpm=20.0)
    assert HRRefine.from_sidecar({"hr_refine": {**cfg.to_dict(), "chosen_on": "val"}}) == cfg
    for bad, msg in [({"sigma_bpm": 0}, "sigma_bpm must be a positive"),
                     ({"power": float("nan")}, "power must be a positive"),
                     ({"method": "fft-peak"}, "this runtime knows"),
                     ({"window": "hann"}, r"unknown key\(s\) \['window'\]")]:
        with pytest.raises(RefineConfigError, match=msg):
            HRRefine.from_sidecar({"hr_refine": {**HRRefine().to_dict(), **bad}})
