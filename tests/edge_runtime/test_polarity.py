"""Which way up (edge_runtime.polarity): declared, or voted by the model's own confidence."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.polarity import VOTE_WINDOWS, Polarity, PolarityConfigError, from_sidecar, vote_right


def pulse_window(sign, seed):
    """A (L,) window with a fast upstroke and a slow decay, `sign` = +1 upright."""
    t = np.arange(1250) / 125.0
    ph = (t * 1.3 + np.random.default_rng(seed).uniform()) % 1.0
    x = np.where(ph < 0.15, ph / 0.15, np.exp(-(ph - 0.15) * 4))
    return sign * (x - x.mean()) / x.std()


class FakeModel:
    """Confident only on upright pulses (upstroke faster than decay); counts its calls."""

    def __init__(self, with_conf=True):
        self.calls, self.with_conf = 0, with_conf

    def __call__(self, z):
        self.calls += 1
        d = np.diff(z)
        up = float((d ** 3).mean()) > 0
        out = {"hr": 78.0 if up else 140.0}
        if self.with_conf:
            out["hr_confidence"] = 0.9 if up else 0.3
        return out


@pytest.mark.parametrize("sign, want", [(1, "up"), (-1, "down")])
def test_auto_votes_then_locks_and_runs_once(sign, want):
    pol, model = Polarity("auto", vote_windows=4), FakeModel()
    for k in range(10):
        out, used = pol.run(model, pulse_window(sign, k))
        assert out["hr"] == 78.0 and used == sign          # always the upright reading
    assert model.calls == 4 * 2 + 6                           # both ways while voting, then one
    st = pol.state()
    assert st["polarity"] == want and st["locked"] and st["windows_voted"] == 4


def test_declared_polarity_is_obeyed_and_bad_input_named():
    model = FakeModel()
    out, used = Polarity("down").run(model, pulse_window(-1, 0))
    assert used == -1 and out["hr"] == 78.0 and model.calls == 1
    out, used = Polarity("up").run(model, pulse_window(-1, 0))
    assert used == 1 and out["hr"] == 140.0                   # the contract's way, as told
    with pytest.raises(ValueError, match="polarity 'sideways': one of up, down, auto"):
        Polarity("sideways")


def test_a_tied_vote_keeps_the_contract_way_up():
    pol = Polarity("auto", vote_windows=2)
    for k in range(2):
        _, used = pol.run(lambda z: {"hr": 70.0, "hr_confidence": 0.5}, pulse_window(-1, k))
        assert used == 1
    assert pol.state()["polarity"] == "up" and pol.state()["locked"]


def test_without_a_confidence_output_auto_keeps_the_contract():
    pol = Polarity("auto")
    out, used = pol.run(FakeModel(with_conf=False), pulse_window(-1, 0))
    assert used == 1 and pol.state()["locked"] and pol.state()["polarity"] == "up"


def test_sidecar_block_is_read_and_bad_blocks_refused():
    assert from_sidecar({}) == ("up", VOTE_WINDOWS)
    assert from_sidecar({"polarity": {"default": "auto", "vote_windows": 12, "chosen_on": "x"}}) == ("auto", 12)
    for bad, msg in (({"default": "auto", "votes": 3}, r"unknown key\(s\) \['votes'\]"),
                     ({"vote_windows": 0}, "vote_windows must be an integer >= 1, got 0"),
                     ({"vote_windows": True}, "vote_windows must be an integer >= 1"),
                     ("auto", "polarity must be an object")):
        with pytest.raises(PolarityConfigError, match=msg):
            from_sidecar({"polarity": bad})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8))
def test_vote_right_is_what_the_stream_decides_both_ways(confs):
    """The export's vote_right(up, down) says auto would lock on 'up' for the recording as it
    is and on 'down' for it flipped; the stream's Polarity is run on both to check."""
    up = np.array([c[0] for c in confs])
    down = np.array([c[1] for c in confs])
    decided = {}
    for sign in (1, -1):
        pol = Polarity("auto", vote_windows=len(confs))
        for k in range(len(confs)):
            # a fake model whose confidence depends on which way up the window it is given is
            z = np.full(4, float(sign * (k + 1)))
            pol.run(lambda w, k=k: {"hr": 70.0, "hr_confidence": up[k] if w[0] > 0 else down[k]}, z)
        decided[sign] = pol.state()["polarity"]
    assert vote_right(up, down) == (decided[1] == "up" and decided[-1] == "down")
