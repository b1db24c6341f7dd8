"""The real-data acceptance check of the foundation: BIDMC end to end through `data prepare`."""
import json

import numpy as np
import pytest
from scipy import signal as sps

from tests.conftest import shared_dataset
from training.prepare import main as prepare_main
from training.data.store import WindowStore


@pytest.fixture(scope="module")
def bidmc_store(tmp_path_factory):
    src = shared_dataset("bidmc")
    out = tmp_path_factory.mktemp("bidmc") / "store"
    assert prepare_main(["--source", "bidmc", "--input", str(src), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.data
def test_all_53_subjects_about_2500_windows_with_rejections_reported(bidmc_store):
    idx = json.loads((bidmc_store / "index.json").read_text())
    assert idx["n_subjects"] == 53
    assert 2300 <= idx["n_windows"] <= 2544              # 53 x 48 windows at most
    assert idx["n_windows"] + idx["rejected"]["windows_rejected"] == 53 * 48
    assert set(idx["rejected"]) - {"windows_rejected"} <= {"nan_gap", "flat", "clipping", "amplitude"}
    assert not idx["errors"]
    for name in ("hr", "pulse", "rr", "spo2"):
        assert name in idx["label_names"]
    assert all(idx["splits"][s] > 0 for s in ("train", "val", "test"))


@pytest.mark.data
def test_counts_the_readme_states(bidmc_store):
    """The figures README.md quotes for this command (Data section)."""
    idx = json.loads((bidmc_store / "index.json").read_text())
    assert idx["n_windows"] == 2516
    assert idx["splits"] == {"train": 1721, "val": 366, "test": 429}
    assert idx["rejected"] == {"windows_rejected": 28, "clipping": 27, "flat": 1}
    rr = WindowStore(bidmc_store).column("rr")
    assert round(float(np.nanmedian(rr)), 1) == 18.0 and round(float(np.nanmean(rr)), 1) == 17.6


@pytest.mark.data
def test_labels_agree_with_the_signal(bidmc_store):
    s = WindowStore(bidmc_store)
    x, pulse, rr, spo2 = s.column("ppg"), s.column("pulse"), s.column("rr"), s.column("spo2")
    f, p = sps.welch(x, fs=125.0, nperseg=1024, axis=-1)
    band = (f >= 0.6) & (f <= 3.5)
    spectral_hr = f[band][np.argmax(p[:, band], axis=1)] * 60
    ok = np.isfinite(pulse)
    err = np.abs(spectral_hr[ok] - pulse[ok])
    # The monitor's pulse rate comes from this very PLETH; a window-aligned label agrees with
    # the spectral peak (resolution 7 bpm) for the large majority of windows.
    assert np.median(err) < 4.0 and (err < 10).mean() > 0.85
    assert np.nanmin(rr) >= 0 and 12 < np.nanmedian(rr) < 24
    assert 85 < np.nanmedian(spo2) <= 100
