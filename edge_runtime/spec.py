"""The signal contract: what one model input window is.

Everything that touches a window — the training store, the edge runtime, the golden vectors for
the C port — reads these numbers from one `SignalSpec`, so a model and its deployment can never
disagree about rate, length, filter band or normalisation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Quality flags, a bitmask per window. Values are part of the store format and the C port.
FLAG_NAN_GAP = 1        # NaN or missing samples inside the window
FLAG_FLAT = 2           # (near-)constant signal: sensor off, disconnected lead
FLAG_CLIPPING = 4       # many samples at the window's extreme values: ADC saturation
FLAG_AMPLITUDE = 8      # implausible amplitude: spikes far outside the pulse envelope
FLAG_TOO_SHORT = 16     # record shorter than one window (the window was padded)
FLAG_ECG_BAD = 32       # the paired ECG window fails its own checks (PPG itself may be fine)

FLAG_NAMES = {
    "nan_gap": FLAG_NAN_GAP,
    "flat": FLAG_FLAT,
    "clipping": FLAG_CLIPPING,
    "amplitude": FLAG_AMPLITUDE,
    "too_short": FLAG_TOO_SHORT,
    "ecg_bad": FLAG_ECG_BAD,
}


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in `flags`, in bit order."""
    return [name for name, bit in FLAG_NAMES.items() if int(flags) & bit]


def flags_from_names(names) -> int:
    """Bitmask from an iterable of flag names; unknown names raise ValueError."""
    mask = 0
    for n in names:
        if n not in FLAG_NAMES:
            raise ValueError(f"unknown quality flag {n!r}; known: {', '.join(FLAG_NAMES)}")
        mask |= FLAG_NAMES[n]
    return mask


class SpecMismatch(ValueError):
    """A store, checkpoint or model file was made under another signal spec."""


# What a PPG model input depends on: a window prepared under other values is another input.
PPG_INPUT_FIELDS = ("ppg_fs", "window_s", "ppg_band_hz", "ppg_filter_order", "zscore_eps")


@dataclass(frozen=True)
class SignalSpec:
    """Rates, window, filters and quality thresholds of one model input.

    The PPG defaults are the AnyPPG release's: 125 Hz, 10 s windows (1250 samples), 0.5-8 Hz
    3rd-order Butterworth band-pass applied zero-phase per window, per-window z-score.
    """

    ppg_fs: float = 125.0
    window_s: float = 10.0
    hop_s: float = 10.0                   # non-overlapping windows, as in the paper
    ppg_band_hz: tuple[float, float] = (0.5, 8.0)
    ppg_filter_order: int = 3
    # ECG: 500 Hz in the paper's full configuration; 125 Hz keeps small CPU configs small.
    ecg_fs: float = 125.0
    ecg_highpass_hz: float = 0.5
    ecg_filter_order: int = 3
    mains_hz: float = 50.0                # 50 (Europe, Asia) or 60 (Americas); 0 disables
    notch_q: float = 30.0
    # Quality thresholds (per window, on the resampled raw signal unless noted).
    flat_rel_std: float = 1e-6            # std below this fraction of |mean|+1 -> flat
    flat_run_s: float = 2.0               # a constant run at least this long -> flat
    clip_fraction: float = 0.05           # share of samples pinned at min or max -> clipping
    max_abs_z: float = 8.0                # |z| of the filtered window beyond this -> amplitude
    zscore_eps: float = 1e-8

    def __post_init__(self):
        if self.ppg_fs <= 0 or self.ecg_fs <= 0:
            raise ValueError("SignalSpec: sampling rates must be positive")
        lo, hi = self.ppg_band_hz
        if not (0 < lo < hi < self.ppg_fs / 2):
            raise ValueError(f"SignalSpec: PPG band {self.ppg_band_hz} must lie in (0, {self.ppg_fs / 2}) Hz")
        if self.mains_hz not in (0.0, 50.0, 60.0):
            raise ValueError(f"SignalSpec: mains_hz must be 50, 60 or 0 (off), got {self.mains_hz}")
        if self.mains_hz and self.mains_hz >= self.ecg_fs / 2:
            raise ValueError(f"SignalSpec: a {self.mains_hz} Hz notch needs ecg_fs > {2 * self.mains_hz} Hz")
        if self.hop_s <= 0 or self.window_s <= 0:
            raise ValueError("SignalSpec: window_s and hop_s must be positive")

    @property
    def ppg_len(self) -> int:
        """Samples per PPG window (1250 by default)."""
        return int(round(self.ppg_fs * self.window_s))

    @property
    def ecg_len(self) -> int:
        """Samples per ECG window."""
        return int(round(self.ecg_fs * self.window_s))

    def mismatches(self, other: "SignalSpec", fields: tuple[str, ...] = None) -> list[str]:
        """'field: ours vs theirs' for each field in `fields` (default PPG_INPUT_FIELDS) that
        differs. Floats compare to 1e-9 relative."""
        out = []
        for f in fields or PPG_INPUT_FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            same = (all(abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0) for x, y in zip(a, b))
                    if isinstance(a, tuple) else
                    abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0))
            if not same:
                out.append(f"{f}: {a} vs {b}")
        return out

    def check_compatible(self, other: "SignalSpec", what: str, fields: tuple[str, ...] = None) -> None:
        """The one compatibility check every consumer calls when it reads a store, checkpoint or
        model file made under `other`: raise SpecMismatch naming `what` and each differing field."""
        diff = self.mismatches(other, fields)
        if diff:
            raise SpecMismatch(f"{what} was made with another signal spec ({'; '.join(diff)})")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ppg_band_hz"] = list(self.ppg_band_hz)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SignalSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"SignalSpec: unknown fields {sorted(unknown)}")
        d = dict(d)
        if "ppg_band_hz" in d:
            d["ppg_band_hz"] = tuple(d["ppg_band_hz"])
        return cls(**d)


# Named specs. `full` is the paper's pretraining setting (ECG at 500 Hz); `small` is the default.
SPECS = {
    "small": SignalSpec(),
    "full": SignalSpec(ecg_fs=500.0),
    "full-60hz": SignalSpec(ecg_fs=500.0, mains_hz=60.0),
    "small-60hz": SignalSpec(mains_hz=60.0),
}


def get_spec(name: str) -> SignalSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown signal spec {name!r}; known: {', '.join(SPECS)}") from None
