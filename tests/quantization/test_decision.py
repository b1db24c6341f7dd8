"""The export's choice of the sidecar's "hr_refine" and "decision" blocks (quantization.decision),
on windows whose truth is known."""
import numpy as np

from quantization.decision import DecisionConfig, choose_refine, choose_threshold
from tests.edge_runtime.test_hr_refine import FS, window


def _windows(offset_bpm, n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(50, 190, n)
    x = np.stack([window(v, seed=i) for i, v in enumerate(y)])
    hr = y + offset_bpm * rng.choice([-1.0, 1.0], n)
    return {"x": x, "y": y, "hr": hr, "conf": np.ones(n), "fs": np.float64(FS), "flags": np.zeros(n, np.int64)}


def test_refinement_is_chosen_where_it_lowers_the_error_and_recorded():
    cfg = DecisionConfig(refine_sigmas_bpm=(5.0, 10.0), refine_powers=(1.0, 2.0))
    chosen, rep = choose_refine(cfg, _windows(6.0))
    assert chosen is not None and rep["status"] == "used"
    assert chosen.radius_bpm == 4 * chosen.sigma_bpm
    assert rep["hr_mae"] < 1.0 < rep["network_hr_mae"] and len(rep["grid"]) == 4


def test_refinement_is_left_out_where_the_network_is_already_exact():
    chosen, rep = choose_refine(DecisionConfig(), _windows(0.0))
    assert chosen is None and rep["status"].startswith("not used")


def test_threshold_is_the_lowest_that_meets_the_target_else_the_fallback():
    conf = np.repeat(np.arange(10) / 10.0 + 0.05, 10)        # 0.05 .. 0.95, ten windows each
    err = np.where(conf >= 0.4, 2.0, 30.0)
    t, rep = choose_threshold(DecisionConfig(hr_mae_target_bpm=5.0, min_coverage=0.5), err, conf)
    assert 0.35 < t <= 0.45 and rep["status"] == "met"   # the 0.35 group in: (6 x 2 + 30) / 7 = 6 bpm
    t, rep = choose_threshold(DecisionConfig(hr_mae_target_bpm=1.0, fallback_coverage=0.8), err, conf)
    assert rep["status"].startswith("target not met") and 0.15 < t <= 0.25
