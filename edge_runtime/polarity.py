"""Which way up a sensor reports the pulse: declared, or found from the model's own confidence.

The model's input contract is pulse up (blood volume up, as BIDMC's finger PPG and troika's
wrist PPG). Many sources report it the other way (a phone camera's brightness falls as blood
volume rises; some wrist front-ends report raw photocurrent), and the shipped student reads an
upside-down window worse than a constant (BIDMC val 44.95 bpm). A watch's firmware knows its
sensor and negates the samples if needed; a recording of unknown origin can use `auto`:

    up    the contract (the default where the model's sidecar has no "polarity" block)
    down  every window is flipped before the model
    auto  the first `vote_windows` inferred windows run both ways; each window's numbers come
          from the polarity whose summed hr_confidence leads so far, and after `vote_windows`
          windows the leader is locked and only it runs.

It is only as good as the model's confidence is at telling the two apart, which is measured by
`python -m benchmarks.bench_polarity` on whole validation recordings upright and flipped: with
the wrist students right on 8 of 8 BIDMC and 20 or 21 of 21 synthetic wearers each way (the HR
shown as accurate as declaring the right way, a few early windows fewer); with the BIDMC demo student
right on 6 of 8 BIDMC recordings and showing 30% fewer windows. Locking after 6 windows (one
minute) was right on only 14 of 21 synthetic wearers; 60 was chosen on these validation sets.

Because that is a property of the model, the export measures it (quantization.decision: the
vote on each validation recording's windows) and writes the sidecar's "polarity" block; a
stream whose caller declares no polarity uses that block's default ("auto" only where the vote
was right on nearly every validation recording), and "up" for a sidecar without one.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

POLARITIES = ("up", "down", "auto")
VOTE_WINDOWS = 60


class PolarityConfigError(ValueError):
    """A sidecar "polarity" block the runtime cannot honour (one line)."""


def from_sidecar(sidecar: dict[str, Any]) -> tuple[str, int]:
    """(default mode, vote_windows) of a sidecar: its "polarity" block, or ("up", VOTE_WINDOWS)
    where it has none. Unknown keys and modes are refused, as for "hr_refine"."""
    block = sidecar.get("polarity")
    if block is None:
        return "up", VOTE_WINDOWS
    if not isinstance(block, dict):
        raise PolarityConfigError("polarity must be an object")
    extra = sorted(set(block) - {"default", "vote_windows", "chosen_on"})
    if extra:
        raise PolarityConfigError(f"polarity has unknown key(s) {extra}")
    mode, votes = block.get("default", "up"), block.get("vote_windows", VOTE_WINDOWS)
    if mode not in POLARITIES:
        raise PolarityConfigError(f"polarity default {mode!r}: one of {', '.join(POLARITIES)}")
    if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
        raise PolarityConfigError(f"polarity vote_windows must be an integer >= 1, got {votes!r}")
    return mode, votes


def vote_right(conf_up: np.ndarray, conf_down: np.ndarray) -> bool:
    """Would `auto` decide right both ways (the recording as it is and flipped) for a recording
    of upright pulses whose voting windows gave these hr_confidence values upright (conf_up)
    and flipped (conf_down)? The stream's vote (summed confidence; a tie goes to "up", which
    is wrong for the flipped recording, hence strict)."""
    return float(np.sum(conf_up, dtype=np.float64)) > float(np.sum(conf_down, dtype=np.float64))


class Polarity:
    """The polarity policy of one stream. `run(infer, z)` -> (outputs, sign applied to z)."""

    def __init__(self, mode: str = "up", vote_windows: int = VOTE_WINDOWS):
        if mode not in POLARITIES:
            raise ValueError(f"polarity {mode!r}: one of {', '.join(POLARITIES)}")
        if vote_windows < 1:
            raise ValueError(f"vote_windows must be >= 1, got {vote_windows}")
        self.mode, self.vote_windows = mode, int(vote_windows)
        self.votes = {1: 0.0, -1: 0.0}          # summed hr_confidence per sign
        self.voted = 0
        self.locked: int | None = {"up": 1, "down": -1}.get(mode)

    def run(self, infer: Callable[[np.ndarray], dict[str, Any]], z: np.ndarray
            ) -> tuple[dict[str, Any], int]:
        """The model's outputs for window z (L,) under this policy, and the sign used."""
        if self.locked is not None:     # the per-window path: no copy of an upright window
            return infer(z if self.locked == 1 else -z), self.locked
        out = {1: infer(z), -1: infer(-z)}
        if "hr_confidence" not in out[1]:       # nothing to vote with: the contract's way up
            self.locked = 1
            return out[1], 1
        for s in (1, -1):
            self.votes[s] += float(out[s]["hr_confidence"])
        self.voted += 1
        lead = self._leader()
        if self.voted >= self.vote_windows:
            self.locked = lead
        return out[lead], lead

    def _leader(self) -> int:
        """The sign whose summed confidence leads (a tie keeps the contract's way up)."""
        return -1 if self.votes[-1] > self.votes[1] else 1

    def state(self) -> dict[str, Any]:
        """What was decided, for a run's metadata."""
        sign = self.locked if self.locked is not None else self._leader()
        return {"mode": self.mode, "polarity": "up" if sign == 1 else "down",
                "locked": self.locked is not None, "windows_voted": self.voted,
                "confidence_sum": {"up": self.votes[1], "down": self.votes[-1]}}
