"""The synthetic generator: determinism, shapes, label ranges and — most important — that the
labels are physically coupled to the signals (a probe can only learn what is really there)."""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt
from scipy.stats import spearmanr

from training.data import synthetic as syn
from training.data.records import ReaderError, Record

FS = 125.0


@lru_cache(maxsize=None)
def _sim(idx: int, seed: int = 0, dur: float = 120.0, ecg_fs: float = 125.0, mains_hz: float = 50.0):
    return syn.simulate_subject(idx, seed=seed, duration_s=dur, ecg_fs=ecg_fs, mains_hz=mains_hz)


def _windows(rec, truth, w, want_af=False):
    """[t0, t0+w) windows that are all-AF (want_af) or all-sinus, good quality, no ectopy."""
    af, q = rec.series["af"].values, rec.series["quality"].values
    ect = truth.r_times_s[truth.is_ectopic]
    out = []
    for t0 in range(0, int(rec.ppg.duration_s) - w + 1, w):
        a = af[t0:t0 + w]
        if (a.all() if want_af else not a.any()) and q[t0:t0 + w].all() \
                and not ((ect >= t0 - 2) & (ect < t0 + w)).any():
            out.append(t0)
    return out


def _peak_freq(x, fs, lo, hi):
    x = x - x.mean()
    n = 1 << 15
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size), n))
    f = np.fft.rfftfreq(n, 1 / fs)
    band = (f > lo) & (f < hi)
    return f[band][np.argmax(spec[band])]


# --------------------------------------------------------------------------------------------
# Determinism, shapes, API
# --------------------------------------------------------------------------------------------


def test_deterministic_under_seed_and_different_across_seeds():
    a = syn.generate_subject(3, seed=1, duration_s=60)
    b = syn.generate_subject(3, seed=1, duration_s=60)
    for k in ("ppg", "ecg"):
        np.testing.assert_array_equal(a.signals[k].data, b.signals[k].data)
    for k in a.series:
        np.testing.assert_array_equal(a.series[k].values, b.series[k].values)
    assert a.labels == b.labels and a.meta == b.meta
    c = syn.generate_subject(3, seed=2, duration_s=60)
    d = syn.generate_subject(4, seed=1, duration_s=60)
    for other in (c, d):
        assert not np.array_equal(a.signals["ppg"].data, other.signals["ppg"].data)
        assert a.meta["traits"] != other.meta["traits"]


def test_traits_depend_only_on_seed_and_subject():
    base = syn.generate_subject(5, seed=0, duration_s=30)
    long = syn.generate_subject(5, seed=0, duration_s=200)
    fast = syn.generate_subject(5, seed=0, duration_s=30, ecg_fs=500.0)
    assert base.meta["traits"] == long.meta["traits"] == fast.meta["traits"]
    # The ECG rate has its own random stream: PPG and labels do not move with it.
    np.testing.assert_array_equal(base.signals["ppg"].data, fast.signals["ppg"].data)
    np.testing.assert_array_equal(base.series["hr"].values, fast.series["hr"].values)


@pytest.mark.parametrize("dur,ecg_fs", [(60.0, 125.0), (10.5, 500.0), (3.0, 250.0)])
def test_shapes_rates_and_record_fields(dur, ecg_fs):
    rec = syn.generate_subject(7, duration_s=dur, ecg_fs=ecg_fs)
    assert isinstance(rec, Record)
    assert rec.source == "synthetic" and rec.subject_id == "syn0_0007"
    assert rec.signals["ppg"].fs == 125.0 and rec.signals["ecg"].fs == ecg_fs
    assert rec.signals["ppg"].data.shape == (int(round(dur * 125)),)
    assert rec.signals["ecg"].data.shape == (int(round(dur * ecg_fs)),)
    assert all(np.isfinite(s.data).all() for s in rec.signals.values())
    assert set(rec.series) == {"hr", "rr", "sbp", "dbp", "af", "quality", "ectopic"}
    for k in ("hr", "rr", "sbp", "dbp", "af", "quality"):
        np.testing.assert_allclose(rec.series[k].times_s, np.arange(int(dur)) + 0.5)
    assert 20 <= rec.labels["age"] <= 85


def test_label_ranges_over_a_cohort():
    recs = [syn.generate_subject(i, duration_s=60) for i in range(30)]
    for r in recs:
        s = {k: v.values for k, v in r.series.items()}
        tr = r.meta["traits"]
        assert 50 <= tr["hr_mean"] <= 110 and 8 <= tr["resp_rate"] <= 25
        assert np.all((s["hr"] > 25) & (s["hr"] < 240))
        assert np.all((s["rr"] >= 6) & (s["rr"] <= 32))
        assert np.all((s["sbp"] >= 85) & (s["sbp"] <= 195)) and np.all(s["dbp"] >= 45)
        assert np.all(s["sbp"] - s["dbp"] >= 19.99)
        for k in ("af", "quality", "ectopic"):
            assert set(np.unique(s[k])) <= {0.0, 1.0}
        # Sinus minutes stay near the subject's mean rate.
        sinus = s["af"] == 0
        if sinus.sum() > 20:
            assert 0.75 * tr["hr_mean"] < np.median(s["hr"][sinus]) < 1.25 * tr["hr_mean"]
    # The cohort is mixed: some AF (some permanent), some clean subjects, ectopy, artefacts.
    af_share = [r.series["af"].values.mean() for r in recs]
    assert sum(a > 0 for a in af_share) >= 3 and sum(a == 1 for a in af_share) >= 1
    assert sum(a == 0 for a in af_share) >= 12
    assert sum(r.series["ectopic"].values.sum() > 0 for r in recs) >= 5
    assert sum((r.series["quality"].values == 0).any() for r in recs) >= 5


# --------------------------------------------------------------------------------------------
# Coupling: each label must be recoverable from the signals
# --------------------------------------------------------------------------------------------


def test_ppg_pulse_rate_matches_hr_label():
    errs = []
    for i in range(16):
        rec, tr = _sim(i)
        ppg = rec.signals["ppg"].data
        for t0 in _windows(rec, tr, 20):
            f = _peak_freq(ppg[int(t0 * FS):int((t0 + 20) * FS)], FS, 0.6, 3.5)
            errs.append(60 * f - rec.series["hr"].mean_over(t0, t0 + 20))
    errs = np.abs(errs)
    assert len(errs) >= 30
    assert np.median(errs) < 2.0 and np.mean(errs < 6.0) > 0.9


def test_respiration_rate_recoverable_from_ppg_modulation():
    sos = butter(2, [0.08, 0.7], "bandpass", fs=FS, output="sos")
    errs = []
    for i in range(16):
        rec, tr = _sim(i)
        ppg = rec.signals["ppg"].data
        for t0 in _windows(rec, tr, 30):
            x = sosfiltfilt(sos, ppg[int(t0 * FS):int((t0 + 30) * FS)])
            errs.append(60 * _peak_freq(x, FS, 0.1, 0.6) - rec.series["rr"].mean_over(t0, t0 + 30))
    errs = np.abs(errs)
    assert len(errs) >= 20
    assert np.median(errs) < 1.5 and np.mean(errs < 3.0) > 0.8


def _ppg_interval_cv(ppg, t0, w):
    """CV of intervals between PPG systolic peaks in [t0, t0+w), from the signal alone."""
    sos = butter(3, [0.5, 8.0], "bandpass", fs=FS, output="sos")
    x = sosfiltfilt(sos, ppg[int(t0 * FS):int((t0 + w) * FS)])
    pk, _ = find_peaks(x, distance=int(0.27 * FS), prominence=0.25 * x.std())
    d = np.diff(pk) / FS
    return d.std() / d.mean()


def test_af_rr_irregular_in_truth_and_in_ppg():
    cv_true = {True: [], False: []}
    cv_ppg = {True: [], False: []}
    for i in range(24):
        rec, tr = _sim(i)
        rr, mid = np.diff(tr.r_times_s), tr.r_times_s[1:]
        for want in (True, False):
            for t0 in _windows(rec, tr, 10, want_af=want):
                m = (mid >= t0) & (mid < t0 + 10)
                cv_true[want].append(rr[m].std() / rr[m].mean())
                cv_ppg[want].append(_ppg_interval_cv(rec.signals["ppg"].data, t0, 10))
    assert len(cv_true[True]) >= 10 and len(cv_true[False]) >= 50
    assert np.median(cv_true[True]) > 3 * np.median(cv_true[False])
    assert np.median(cv_ppg[True]) > 2.5 * np.median(cv_ppg[False])
    # AF windows: no P waves in the ECG is checked by morphology; here, rate and truth agree.
    assert all(np.isin(rec.series["af"].values, (0.0, 1.0)))


def test_pat_measured_from_signals_falls_with_sbp():
    """R peak (ECG) -> tangent foot (PPG) per clean sinus beat; subject medians vs mean SBP."""
    pats, sbps, truth_err = [], [], []
    for i in range(16):
        rec, tr = _sim(i)
        ppg, ecg = rec.signals["ppg"].data, rec.signals["ecg"].data
        q = rec.series["quality"].values
        d = np.gradient(ppg) * FS
        m = ~tr.is_af & ~tr.is_ectopic & (tr.r_times_s > 1) & (tr.r_times_s < 118)
        per = []
        for r, foot in zip(tr.r_times_s[m], tr.foot_times_s[m]):
            if not q[int(r)] or not q[min(int(foot), q.size - 1)]:
                continue
            i0 = int(round(r * FS))
            ri = i0 - 3 + int(np.argmax(np.abs(ecg[i0 - 3:i0 + 4])))        # R peak from the ECG
            a, b = ri + int(0.1 * FS), ri + int(0.45 * FS)
            j = a + int(np.argmax(d[a:b]))                                    # steepest upstroke
            t_foot = j / FS - (ppg[j] - ppg[ri:j].min()) / d[j]               # tangent to the trough
            per.append(t_foot - ri / FS)
            truth_err.append(t_foot - foot)
        if len(per) >= 10:
            pats.append(np.median(per))
            sbps.append(rec.series["sbp"].values.mean())
        assert np.all((tr.pat_s >= 0.15) & (tr.pat_s <= 0.35))
    assert len(pats) >= 10
    assert np.corrcoef(pats, sbps)[0, 1] < -0.7
    assert abs(np.median(truth_err)) < 0.02          # the measured foot is the generator's foot
    # Within a subject too: beats at higher SBP arrive earlier (generator truth).
    rec, tr = _sim(0)
    assert np.corrcoef(tr.pat_s, tr.sbp)[0, 1] < -0.5


def test_age_flattens_the_dicrotic_notch():
    """Stiff (old) arteries: the reflected wave merges into systole, so after the systolic peak
    the averaged pulse only falls; young subjects show a rise again (the diastolic peak)."""
    ages, rebound = [], []
    for i in range(30):
        rec, tr = _sim(i, dur=60.0)
        ppg, q = rec.signals["ppg"].data, rec.series["quality"].values
        m = ~tr.is_af & ~tr.is_ectopic & (tr.r_times_s > 0) & (tr.foot_times_s < 59)
        feet = [f for f in tr.foot_times_s[m] if q[int(f)]]
        if len(feet) < 10:
            continue
        rr = np.median(np.diff(tr.r_times_s[m]))
        L = int(0.75 * rr * FS)
        segs = np.array([ppg[int(f * FS):int(f * FS) + L] for f in feet])
        avg = (segs - segs[:, :1]).mean(0)
        avg /= avg.max()
        pk = int(np.argmax(avg))
        rebound.append(np.diff(avg)[pk + int(0.05 * FS):].max() * FS)
        ages.append(rec.labels["age"])
    assert len(ages) >= 15
    assert spearmanr(ages, rebound)[0] < -0.5


def test_ectopic_beats_are_premature_small_and_followed_by_a_pause():
    found = 0
    for i in range(30):
        rec, tr = _sim(i)
        idx = np.flatnonzero(tr.is_ectopic)
        idx = idx[(idx > 1) & (idx < tr.r_times_s.size - 2)]
        if idx.size == 0:
            continue
        found += idx.size
        t = tr.r_times_s
        before = t[idx - 1] - t[idx - 2]
        coupling = (t[idx] - t[idx - 1]) / before
        pause = (t[idx + 1] - t[idx]) / before
        assert np.all(coupling < 0.8) and np.median(coupling + pause) == pytest.approx(2.0, abs=0.2)
        assert np.median(tr.amplitude[idx] / tr.amplitude[idx - 1]) < 0.5
        ser = rec.series["ectopic"]
        inside = (t >= 0) & (t < rec.ppg.duration_s)
        assert ser.values.sum() == tr.is_ectopic[inside].sum()
    assert found >= 10


def test_saturation_clips_ppg_to_a_rail_where_quality_is_zero():
    n_sat = 0
    for i in range(30):
        rec, _ = _sim(i)
        ppg = rec.signals["ppg"].data
        lo, hi = rec.meta["ppg_rail"]
        q = rec.series["quality"].values
        eps = rec.meta["episodes"]
        pinned = (ppg <= lo) | (ppg >= hi)
        for a, b in eps["saturation"]:
            n_sat += 1
            sl = slice(int(np.ceil(a)), int(np.floor(b)))
            assert np.all(q[sl] == 0)
            seg = pinned[int(a * FS):int(b * FS)]
            assert seg.mean() > 0.5                      # long runs at the rail
        # Outside artefact episodes nothing touches the rail.
        t = np.arange(ppg.size) / FS
        art = syn._in_any(t, np.array(eps["saturation"] + eps["motion"]).reshape(-1, 2))
        assert not pinned[~art].any()
        # Motion bursts are large relative to the clean pulse.
        for a, b in eps["motion"]:
            if b - a > 4:
                mid = ppg[int((a + 1) * FS):int((b - 1) * FS)]
                clean = ppg[(~art) & (t > 1)]
                if clean.size > FS * 10:
                    assert mid.std() > 1.5 * clean.std() or np.ptp(mid) > 2 * np.ptp(clean)
    assert n_sat >= 3


def test_ecg_at_500hz_has_qrs_at_beats_and_mains_at_mains_hz():
    rec, tr = _sim(2, dur=30.0, ecg_fs=500.0)
    ecg = rec.signals["ecg"].data
    assert rec.signals["ecg"].fs == 500.0 and ecg.size == 15000
    hp = sosfiltfilt(butter(3, [5, 40], "bandpass", fs=500, output="sos"), ecg)
    r = tr.r_times_s[(tr.r_times_s > 1) & (tr.r_times_s < 29)]
    off = []
    for t in r:
        i = int(round(t * 500))
        seg = np.abs(hp[i - 75:i + 76])
        off.append(np.argmax(seg) - 75)
    assert np.median(np.abs(off)) <= 10                # QRS energy peaks at the beat time
    # Mains: the difference between 50 Hz and no mains is a pure 50 Hz line.
    for hz in (50.0, 60.0):
        rec_m, _ = _sim(2, dur=30.0, ecg_fs=500.0, mains_hz=hz)
        rec_0, _ = _sim(2, dur=30.0, ecg_fs=500.0, mains_hz=0.0)
        diff = rec_m.signals["ecg"].data - rec_0.signals["ecg"].data
        if rec.meta["traits"]["mains_mv"] > 0:
            assert _peak_freq(diff, 500.0, 1, 249) == pytest.approx(hz, abs=0.1)
        np.testing.assert_array_equal(rec_m.signals["ppg"].data, rec_0.signals["ppg"].data)


# --------------------------------------------------------------------------------------------
# Reader interface and summary
# --------------------------------------------------------------------------------------------


def test_discover_and_read_unit_round_trip():
    units = syn.discover("")
    assert units == syn.discover("default") and len(units) == 24
    assert units[7] == "synthetic:seed=0:subject=7:minutes=4:ecg_fs=125"
    u = syn.discover("subjects=3,minutes=0.5,seed=2,ecg_fs=500")
    assert u == [f"synthetic:seed=2:subject={i}:minutes=0.5:ecg_fs=500" for i in range(3)]
    [rec] = syn.read_unit(u[1])
    ref = syn.generate_subject(1, seed=2, duration_s=30.0, ecg_fs=500.0)
    np.testing.assert_array_equal(rec.signals["ecg"].data, ref.signals["ecg"].data)
    assert rec.signals["ecg"].fs == 500.0 and rec.path == u[1]
    # Spec opts fill in what the string leaves out; the string wins.
    assert syn.discover("subjects=1", ecg_fs=500.0)[0].endswith("ecg_fs=500")
    assert syn.discover("subjects=1,ecg_fs=125", ecg_fs=500.0)[0].endswith("ecg_fs=125")
    u60 = syn.discover("subjects=1,minutes=0.1,mains_hz=60")[0]
    assert u60.endswith(":mains_hz=60") and syn.read_unit(u60)[0].ppg.duration_s == pytest.approx(6.0)


@pytest.mark.parametrize("bad", ["subjects=x", "foo=1", "subjects=0", "minutes=-1", "minutes",
                                 "subjects=1.5", "seed=-1", "mains_hz=55", "ecg_fs=0"])
def test_bad_specs_raise_one_line_value_error(bad):
    with pytest.raises(ValueError) as e:
        syn.discover(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", ["", "synthetic", "other:seed=0:subject=1", "synthetic:seed=0",
                                 "synthetic:seed=0:subject=x", "synthetic:subject=1:minutes=0"])
def test_bad_units_raise_value_error(bad):
    with pytest.raises(ValueError):
        syn.read_unit(bad)


def test_summary_keys_and_values():
    recs = [r for u in syn.discover("subjects=6,minutes=1") for r in syn.read_unit(u)]
    s = syn.summary(recs)
    assert s["records"] == 6 and s["subjects"] == 6 and s["hours"] == pytest.approx(0.1)
    for k in ("hr", "rr", "sbp", "dbp", "age"):
        assert set(s[k]) == {"mean", "std", "min", "max"}
        assert s[k]["min"] <= s[k]["mean"] <= s[k]["max"]
    for k in ("af_fraction", "bad_quality_fraction", "ectopic_fraction"):
        assert 0.0 <= s[k] <= 1.0
    assert isinstance(s["af_subjects"], int)
    text = syn.format_summary(s)
    assert "6 records" in text and "AF" in text
    empty = syn.summary([])
    assert empty["records"] == 0 and np.isnan(empty["hr"]["mean"])


def test_config_controls_the_cohort():
    cfg = dataclasses.replace(syn.SyntheticConfig(), af_subject_fraction=0.0,
                              saturation_subject_fraction=0.0, motion_per_min=(1e-6, 1e-6),
                              ectopic_max_prob=0.0)
    for i in range(8):
        rec = syn.generate_subject(i, duration_s=60, config=cfg)
        assert not rec.series["af"].values.any() and rec.series["quality"].values.all()
        assert not rec.series["ectopic"].values.any()


def test_reader_options_arrive_as_strings_and_unknown_ones_are_ignored():
    u = syn.discover("subjects=2", ecg_fs="500", minutes="0.25", batch_size="64", root="/x")
    assert u[1] == "synthetic:seed=0:subject=1:minutes=0.25:ecg_fs=500"
    [rec] = syn.read_unit("synthetic:subject=3:minutes=0.1", ecg_fs="250", seed="1", foo="bar")
    assert rec.signals["ecg"].fs == 250.0 and rec.meta["seed"] == 1 and rec.subject_id == "syn1_0003"
    with pytest.raises(ReaderError) as e:
        syn.discover("", ecg_fs="fast")
    assert str(e.value).startswith("synthetic spec ''") and "ecg_fs" in str(e.value)


def test_benchmark_script_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_synthetic.py"
    spec = importlib.util.spec_from_file_location("bench_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--subjects", "1", "--minutes", "0.5", "--repeat", "1"])
    assert [r["ecg_fs"] for r in res] == [125.0, 500.0] and all(r["windows"] == 3 for r in res)
    assert "windows/s" in capsys.readouterr().out
