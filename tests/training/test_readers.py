"""Dataset readers: the real datasets in ../shared/data (skipped where absent) and bad inputs
written to tmp_path. Every predictable problem must be a one-line ReaderError naming the file."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared_dataset
from training.data import readers
from training.data.records import ReaderError, Record

READERS = ("bidmc", "wfdb", "ppg-bp", "liu2022", "vitaldb", "csv", "troika")


def raises_reader_error(fn, path, *words) -> str:
    """Run fn, expect a one-line ReaderError starting with `path` and holding `words`."""
    with pytest.raises(ReaderError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


def one(source, unit, **opts) -> Record:
    recs = readers.read_unit(source, unit, **opts)
    assert len(recs) == 1
    return recs[0]


# --- registry -------------------------------------------------------------------------------

def test_registry_lists_every_source():
    assert set(readers.SOURCES) == set(READERS)
    assert "synthetic" in readers.known_sources()
    for name, mod in readers.SOURCES.items():
        assert callable(mod.discover) and callable(mod.read_unit), name


def test_synthetic_is_dispatched_lazily():
    synthetic = pytest.importorskip("training.data.synthetic")
    assert "synthetic" not in readers.SOURCES
    assert readers._module("synthetic") is synthetic


def test_unknown_source_lists_known_ones():
    with pytest.raises(ValueError, match="known sources: bidmc, csv, liu2022"):
        readers.discover("edf", "x")
    with pytest.raises(ValueError, match="unknown source 'edf'"):
        readers.read_unit("edf", "x")


@pytest.mark.parametrize("source", READERS)
def test_discover_missing_path(source, tmp_path):
    missing = tmp_path / "nowhere"
    raises_reader_error(lambda: readers.discover(source, str(missing)), missing, "no such file")


@pytest.mark.parametrize("source", READERS)
def test_discover_folder_without_recognisable_files(source, tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here\n")
    raises_reader_error(lambda: readers.discover(source, str(tmp_path)), tmp_path, "no ")


# --- BIDMC ----------------------------------------------------------------------------------

@pytest.mark.data
def test_bidmc_discovers_all_53_records():
    units = readers.discover("bidmc", str(shared_dataset("bidmc")))
    assert len(units) == 53
    assert units == sorted(units)
    assert [Path(u).name[:8] for u in units] == [f"bidmc_{i:02d}" for i in range(1, 54)]
    assert all(Path(u).name.startswith(Path(u).name[:8] + "_Signals.csv") for u in units)


@pytest.mark.data
@pytest.mark.parametrize("nn", ["02", "13", "42"])   # II first; RESP zeros; V first, PLETH last
def test_bidmc_record(nn):
    path = shared_dataset("bidmc") / f"bidmc_{nn}_Signals.csv.gz"
    rec = one("bidmc", str(path))
    assert rec.subject_id == rec.record_id == f"bidmc_{nn}" and rec.source == "bidmc"
    assert rec.ppg.fs == 125.0 and rec.signals["ecg"].fs == 125.0
    assert len(rec.ppg.data) == 60001 and rec.ppg.duration_s == pytest.approx(480, abs=0.01)
    assert rec.meta["ecg_lead"] == "II"
    # Columns are selected by name whatever their order.
    raw = pd.read_csv(path)
    raw.columns = [c.strip() for c in raw.columns]
    np.testing.assert_array_equal(rec.ppg.data, raw["PLETH"].to_numpy())
    np.testing.assert_array_equal(rec.signals["ecg"].data, raw["II"].to_numpy())

    assert {"hr", "pulse", "rr", "spo2", "rr_breaths"} <= set(rec.series)
    hr = rec.series["hr"].values
    assert len(hr) == 481
    assert 30 < np.nanmin(hr) and np.nanmax(hr) < 200
    spo2 = rec.series["spo2"].values
    assert np.nanmax(spo2) <= 100 and np.nanmin(spo2) > 50
    for s in rec.series.values():                 # monitor zeros are missing values, not 0
        assert not np.any(s.values <= 0)
    rb = rec.series["rr_breaths"]
    assert np.all(np.diff(rb.times_s) > 0) and rb.times_s[-1] <= 480.1
    assert 5 < np.median(rb.values) < 60
    assert rec.labels["sex"] in (0.0, 1.0) and 18 <= rec.labels["age"] <= 90
    assert rec.meta["location"] in ("micu", "sicu", "ccu")


@pytest.mark.data
def test_bidmc_monitor_zeros_become_nan():
    folder = shared_dataset("bidmc")
    rec = one("bidmc", str(folder / "bidmc_13_Signals.csv.gz"))
    raw = pd.read_csv(folder / "bidmc_13_Numerics.csv.gz")
    raw.columns = [c.strip() for c in raw.columns]
    zero = (raw["RESP"] == 0).to_numpy()
    assert zero.sum() > 100
    assert np.all(np.isnan(rec.series["rr"].values[zero]))
    np.testing.assert_array_equal(rec.series["rr"].values[~zero], raw["RESP"].to_numpy()[~zero])


def _write_bidmc(folder: Path, nn="99", fs=125.0, n=1250, columns=("RESP", "PLETH", "II"),
                 numerics=False, breaths=False, fix=False) -> Path:
    """A small BIDMC-layout record: Signals (+ optional companions) in `folder`."""
    t = np.arange(n) / fs
    df = pd.DataFrame({"Time [s]": np.round(t, 3)})
    for i, c in enumerate(columns):
        df[f" {c}"] = np.sin(2 * np.pi * (1 + i) * t)
    path = folder / f"bidmc_{nn}_Signals.csv"
    df.to_csv(path, index=False)
    if numerics:
        sec = np.arange(int(n / fs) + 1)
        pd.DataFrame({"Time [s]": sec, " HR": 80, " PULSE": 79, " RESP": 0, " SpO2": 97}).to_csv(
            folder / f"bidmc_{nn}_Numerics.csv", index=False)
    if breaths:
        pd.DataFrame({"breaths ann1 [signal sample no]": [100, 350, 600],
                      " breaths ann2 [signal sample no]": [101, 352, 598]}).to_csv(
            folder / f"bidmc_{nn}_Breaths.csv", index=False)
    if fix:
        (folder / f"bidmc_{nn}_Fix.txt").write_text(f"bidmc_{nn}\nAge: 90+\nGender: M\nLocation: ccu\n")
    return path


def test_bidmc_tmp_record_with_companions(tmp_path):
    path = _write_bidmc(tmp_path, numerics=True, breaths=True, fix=True)
    assert readers.discover("bidmc", str(tmp_path)) == [str(path)]
    rec = one("bidmc", str(path))
    assert rec.ppg.fs == 125.0 and len(rec.ppg.data) == 1250
    np.testing.assert_allclose(rec.series["hr"].values, 80)
    assert np.all(np.isnan(rec.series["rr"].values))          # RESP 0 = no value
    rb = rec.series["rr_breaths"]
    np.testing.assert_allclose(rb.times_s, [350 / 125, 600 / 125])
    np.testing.assert_allclose(rb.values, [30.0, 30.0])         # 250 samples = 2 s apart
    assert rec.labels == {"age": 90.0, "sex": 1.0}
    assert rec.meta["age"] == "90+" and rec.meta["location"] == "ccu"


def test_bidmc_missing_numerics_still_returns_record(tmp_path):
    path = _write_bidmc(tmp_path)
    rec = one("bidmc", str(path))
    assert rec.series == {}
    assert any("Numerics" in n for n in rec.meta["notes"])
    assert np.isnan(rec.labels["age"])


def test_bidmc_ecg_lead_option_and_fallback(tmp_path):
    path = _write_bidmc(tmp_path, columns=("PLETH", "V", "I"))
    assert one("bidmc", str(path)).meta["ecg_lead"] == "I"
    assert one("bidmc", str(path), ecg_lead="V").meta["ecg_lead"] == "V"


def test_bidmc_without_pleth(tmp_path):
    path = _write_bidmc(tmp_path, columns=("RESP", "II"))
    raises_reader_error(lambda: readers.read_unit("bidmc", str(path)), path,
                        "no PPG channel (PLETH)", "'RESP'")


def test_bidmc_wrong_sampling_rate(tmp_path):
    path = _write_bidmc(tmp_path, fs=250.0, n=2500)
    raises_reader_error(lambda: readers.read_unit("bidmc", str(path)), path, "250", "expected 125")


def test_bidmc_irregular_time_column(tmp_path):
    path = _write_bidmc(tmp_path)
    df = pd.read_csv(path)
    df = df.drop(index=range(500, 520))                         # a 160 ms hole
    df.to_csv(path, index=False)
    raises_reader_error(lambda: readers.read_unit("bidmc", str(path)), path, "not regularly sampled")


def test_bidmc_malformed_files(tmp_path):
    bad = tmp_path / "bidmc_98_Signals.csv.gz"
    bad.write_bytes(b"this is not gzip")
    raises_reader_error(lambda: readers.read_unit("bidmc", str(bad)), bad, "unreadable CSV")
    text = tmp_path / "bidmc_97_Signals.csv"
    text.write_text("Time [s], PLETH\n0,1\n0.008,abc\n")
    raises_reader_error(lambda: readers.read_unit("bidmc", str(text)), text, "'PLETH' is not numeric")
    other = tmp_path / "bidmc_97_Numerics.csv"
    raises_reader_error(lambda: readers.read_unit("bidmc", str(other)), other, "not a BIDMC Signals")


# --- WFDB -----------------------------------------------------------------------------------

@pytest.mark.data
def test_wfdb_smoke_records():
    folder = shared_dataset("smoke/wfdb")
    units = readers.discover("wfdb", str(folder))
    assert [Path(u).name for u in units] == ["a103l.hea", "v102s.hea"]
    assert readers.discover("wfdb", str(folder / "a103l")) == [str(folder / "a103l.hea")]

    a = one("wfdb", units[0])                                   # .mat signal file
    assert a.subject_id == a.record_id == "a103l"
    assert a.ppg.fs == 250.0 and len(a.ppg.data) == 82500
    assert a.signals["ecg"].fs == 250.0 and a.meta["ecg_lead"] == "II"
    assert a.meta["comments"] == ["Asystole", "False alarm"]
    assert np.isfinite(a.ppg.data).all() and np.ptp(a.ppg.data) > 0


@pytest.mark.data
def test_wfdb_nan_stretches_stay_nan():
    import wfdb

    folder = shared_dataset("smoke/wfdb")
    v = one("wfdb", str(folder / "v102s.hea"), ecg_lead="V")
    assert v.meta["ppg_channel"] == "PLETH" and v.meta["ecg_lead"] == "V"
    assert v.meta["comments"] == ["Ventricular_Tachycardia", "False alarm"]
    # The invalid-sample code of format 212 (-2048) marks the gaps in the raw file.
    raw = wfdb.rdrecord(str(folder / "v102s"), physical=False)
    gap = raw.d_signal[:, raw.sig_name.index("PLETH")] == -2048
    assert gap.sum() > 0
    # Exactly the gaps are NaN: neither interpolated nor zero-filled, and nothing else lost.
    np.testing.assert_array_equal(np.isnan(v.ppg.data), gap)


def test_wfdb_record_without_ppg(tmp_path):
    import wfdb

    wfdb.wrsamp("noppg", fs=250, units=["mV"], sig_name=["II"],
                p_signal=np.sin(np.arange(500) / 10)[:, None], fmt=["16"], write_dir=str(tmp_path))
    hea = tmp_path / "noppg.hea"
    raises_reader_error(lambda: readers.read_unit("wfdb", str(hea)), hea,
                        "no PPG channel (PLETH) among ['II']")


def test_wfdb_channels_at_their_own_rates(tmp_path):
    import wfdb

    ecg = np.sin(np.arange(1000) / 20)
    ppg = np.cos(np.arange(2000) / 40)
    ppg[100:150] = np.nan
    wfdb.wrsamp("multi", fs=100, units=["mV", "NU"], sig_name=["ECG I", "Pleth"],
                e_p_signal=[ecg, ppg], samps_per_frame=[1, 2], fmt=["16", "16"],
                adc_gain=[1000, 1000], baseline=[0, 0], write_dir=str(tmp_path))
    rec = one("wfdb", str(tmp_path / "multi"), subject_map={"multi": "person-7"})
    assert rec.subject_id == "person-7"
    assert rec.ppg.fs == 200.0 and len(rec.ppg.data) == 2000
    assert rec.signals["ecg"].fs == 100.0 and rec.meta["ecg_lead"] == "ECG I"
    np.testing.assert_array_equal(np.isnan(rec.ppg.data), np.isnan(ppg))
    np.testing.assert_allclose(rec.ppg.data[200:], ppg[200:], atol=1e-3)


def test_wfdb_multi_segment_record_is_one_unit(tmp_path):
    import wfdb

    for i, name in enumerate(["seg1", "seg2"]):
        x = np.stack([np.sin(np.arange(500) / 10 + i), np.cos(np.arange(500) / 20 + i)], 1)
        wfdb.wrsamp(name, fs=250, units=["mV", "NU"], sig_name=["II", "PLETH"], p_signal=x,
                    fmt=["16", "16"], write_dir=str(tmp_path))
    (tmp_path / "whole.hea").write_text("whole/2 2 250 1000\nseg1 500\nseg2 500\n")
    assert readers.discover("wfdb", str(tmp_path)) == [str(tmp_path / "whole.hea")]
    rec = one("wfdb", str(tmp_path / "whole.hea"))
    assert rec.record_id == "whole" and len(rec.ppg.data) == 1000 and rec.ppg.fs == 250.0


@pytest.mark.data
def test_wfdb_missing_signal_file(tmp_path):
    folder = shared_dataset("smoke/wfdb")
    shutil.copy(folder / "v102s.hea", tmp_path / "v102s.hea")
    hea = tmp_path / "v102s.hea"
    raises_reader_error(lambda: readers.read_unit("wfdb", str(hea)), hea, "unreadable WFDB record")
    raises_reader_error(lambda: readers.read_unit("wfdb", str(tmp_path / "gone.hea")),
                        tmp_path / "gone.hea", "no such WFDB header")


# --- PPG-BP ---------------------------------------------------------------------------------

@pytest.mark.data
def test_ppg_bp_all_subjects():
    folder = shared_dataset("ppg_bp")
    units = readers.discover("ppg-bp", str(folder))
    assert len(units) == 219
    assert readers.discover("ppg-bp", str(folder / "PPGBPDatabase")) == units
    recs = [r for u in units for r in readers.read_unit("ppg-bp", u)]
    assert len(recs) == 657 and len({r.subject_id for r in recs}) == 219
    for r in recs:
        assert r.ppg.fs == 1000.0
        assert len(r.ppg.data) in (2100, 4200)              # subject 231 has 4.2 s segments
        assert 80 <= r.labels["sbp"] <= 220 and 40 <= r.labels["dbp"] <= 130
        assert 40 <= r.labels["hr"] <= 150 and 18 <= r.labels["age"] <= 100
        assert r.labels["hypertension"] in (0.0, 1.0) and r.labels["sex"] in (0.0, 1.0)
        assert 10 < r.labels["bmi"] < 60
    by_subject = {r.subject_id: r.labels for r in recs}
    # Stage 1 (34) + stage 2 (20) subjects; prehypertension counts as 0.
    assert sum(v["hypertension"] for v in by_subject.values()) == 54
    assert sum(v["sex"] for v in by_subject.values()) == 104            # 104 men
    first = readers.read_unit("ppg-bp", units[0])
    assert [r.record_id for r in first] == ["ppgbp_2_1", "ppgbp_2_2", "ppgbp_2_3"]
    assert first[0].labels["sbp"] == 161 and first[0].labels["dbp"] == 89
    assert first[0].meta["hypertension_class"] == "Stage 2 hypertension"


def _write_ppg_bp(folder: Path, rows: list[list], values="1.0\t2.0\t3.0\t") -> Path:
    db = folder / "PPGBPDatabase"
    db.mkdir()
    for sid in (5, 12):
        for n in (1, 2):
            (db / f"{sid}_{n}.txt").write_text(values)
    header = ["Num.", "subject_ID", "Sex(M/F)", "Age(year)", "Systolic Blood Pressure(mmHg)",
              "Diastolic Blood Pressure(mmHg)", "Heart Rate(b/m)", "BMI(kg/m^2)", "Hypertension"]
    title = [["Cardiovascular Dataset Information File"] + [None] * (len(header) - 1)]
    pd.DataFrame(title + [header] + rows).to_excel(folder / "PPG-BP dataset.xlsx",
                                                   header=False, index=False)
    return db


def test_ppg_bp_tmp_dataset(tmp_path):
    db = _write_ppg_bp(tmp_path, [[1, 5, "Male", 40, 130, 85, 70, 22.0, "Prehypertension"],
                                  [2, 12, "Female", 60, 150, 95, 80, 28.0, "Stage 1 hypertension"]])
    units = readers.discover("ppg-bp", str(tmp_path))
    assert units == [str(db / "5_*.txt"), str(db / "12_*.txt")]
    a, b = (readers.read_unit("ppg-bp", u) for u in units)
    assert len(a) == 2 and a[0].subject_id == "ppgbp_5" and a[1].record_id == "ppgbp_5_2"
    np.testing.assert_array_equal(a[0].ppg.data, [1.0, 2.0, 3.0])
    assert a[0].labels["hypertension"] == 0.0 and a[0].labels["sex"] == 1.0
    assert b[0].labels["hypertension"] == 1.0 and b[0].labels["sbp"] == 150
    assert np.isnan(b[0].labels["diabetes"])                    # no Diabetes column


def test_ppg_bp_subject_not_in_table(tmp_path):
    _write_ppg_bp(tmp_path, [[1, 5, "Male", 40, 130, 85, 70, 22.0, "Normal"]])
    rec = readers.read_unit("ppg-bp", readers.discover("ppg-bp", str(tmp_path))[1])[0]
    assert np.isnan(rec.labels["sbp"]) and "not in" in rec.meta["notes"][0]


def test_ppg_bp_bad_segment_and_table(tmp_path):
    db = _write_ppg_bp(tmp_path, [], values="1.0\tabc\t")
    seg = db / "5_1.txt"
    raises_reader_error(lambda: readers.read_unit("ppg-bp", str(seg)), seg, "non-numeric")
    (db / "12_1.txt").write_text("")
    raises_reader_error(lambda: readers.read_unit("ppg-bp", str(db / "12_1.txt")),
                        db / "12_1.txt", "empty segment")
    xlsx = tmp_path / "PPG-BP dataset.xlsx"
    xlsx.write_bytes(b"not a workbook")
    (db / "5_1.txt").write_text("1\t2\t")
    raises_reader_error(lambda: readers.read_unit("ppg-bp", str(db / "5_*.txt")), xlsx,
                        "unreadable workbook")


# --- Liu 2022 -------------------------------------------------------------------------------

@pytest.mark.data
def test_liu2022_files():
    import scipy.io

    folder = shared_dataset("liu2022_arrhythmia")
    units = readers.discover("liu2022", str(folder))
    assert len(units) == 28 and all(Path(u).name.startswith("MPA_") for u in units)
    for unit in units[:3]:
        rec = one("liu2022", unit)
        mat = scipy.io.loadmat(unit)
        n = mat["ppgseg"].shape[0]
        assert rec.subject_id == Path(unit).stem
        assert rec.ppg.fs == 100.0 and rec.segment_s == 10.0
        assert len(rec.ppg.data) == n * 1000
        np.testing.assert_array_equal(rec.ppg.data[1000:2000], mat["ppgseg"][1])
        rhythm = rec.window_labels["rhythm"]
        assert rhythm.shape == (n,) and rhythm.min() >= 0 and rhythm.max() <= 5
        np.testing.assert_array_equal(rhythm, mat["labels"].ravel())
        np.testing.assert_array_equal(rec.window_labels["af"], rhythm == 5)


def _write_liu(path: Path, n=4, seg=1000, labels=(0, 5, 1, 5), drop=()):
    import scipy.io

    data = {"ppgseg": np.random.default_rng(0).random((n, seg)),
            "labels": np.array(labels, np.uint8)[:, None]}
    scipy.io.savemat(path, {k: v for k, v in data.items() if k not in drop})
    return data


def test_liu2022_tmp_file(tmp_path):
    path = tmp_path / "MPA_1.mat"
    data = _write_liu(path)
    rec = one("liu2022", str(path))
    np.testing.assert_array_equal(rec.ppg.data, data["ppgseg"].reshape(-1))
    np.testing.assert_array_equal(rec.window_labels["af"], [False, True, False, True])


def test_liu2022_truncated(tmp_path):
    path = tmp_path / "MPA_2.mat"
    _write_liu(path, n=50, labels=[0] * 50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises_reader_error(lambda: readers.read_unit("liu2022", str(path)), path, "unreadable .mat")


def test_liu2022_bad_contents(tmp_path):
    p = tmp_path / "MPA_3.mat"
    _write_liu(p, drop=("labels",))
    raises_reader_error(lambda: readers.read_unit("liu2022", str(p)), p, "no 'labels' variable")
    p = tmp_path / "MPA_4.mat"
    _write_liu(p, n=3)                                          # 3 segments, 4 labels
    raises_reader_error(lambda: readers.read_unit("liu2022", str(p)), p, "4 labels for 3")
    p = tmp_path / "MPA_5.mat"
    _write_liu(p, labels=[0, 1, 9, 2])
    raises_reader_error(lambda: readers.read_unit("liu2022", str(p)), p, "labels outside 0..5")
    p = tmp_path / "MPA_6.mat"
    p.write_text("hello")
    raises_reader_error(lambda: readers.read_unit("liu2022", str(p)), p, "unreadable .mat")


def test_liu2022_matlab_v73_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "MPA_7.mat"
    ppgseg = np.random.default_rng(1).random((3, 1000))
    with h5py.File(path, "w", userblock_size=512) as f:
        # MATLAB stores column-major arrays, which HDF5 sees transposed.
        f["ppgseg"] = ppgseg.T
        f["labels"] = np.array([[5, 0, 2]], np.float64)
    # The MATLAB 7.3 header in the user block: text, subsystem offset, version 0x0200, 'IM'.
    header = b"MATLAB 7.3 MAT-file, written by a test".ljust(116) + b"\0" * 8 + b"\x00\x02IM"
    with open(path, "r+b") as f:
        f.write(header)
    rec = one("liu2022", str(path))
    np.testing.assert_array_equal(rec.ppg.data, ppgseg.reshape(-1))
    np.testing.assert_array_equal(rec.window_labels["rhythm"], [5, 0, 2])


# --- VitalDB --------------------------------------------------------------------------------

def _write_vital(path: Path, tracks=("SNUADC/PLETH", "SNUADC/ECG_II")):
    """A 20 s .vital file: 500 Hz PLETH with a 1 s hole, ECG_II in two pieces, 2 s HR."""
    import vitaldb

    vf = vitaldb.VitalFile()
    t0 = 1.7e9
    vf.dtstart, vf.dtend = t0, t0 + 20
    x = np.sin(2 * np.pi * 1.2 * np.arange(0, 20, 1 / 500)).astype(np.float32)
    x[1000:1500] = np.nan
    if "SNUADC/PLETH" in tracks:
        vf.add_track("SNUADC/PLETH", [{"dt": t0, "val": x}], srate=500)
    if "SNUADC/ECG_II" in tracks:
        vf.add_track("SNUADC/ECG_II", [{"dt": t0, "val": x[2000:7000]},
                                       {"dt": t0 + 12, "val": x[2000:4000]}], srate=500, unit="mV")
    vf.add_track("Solar8000/HR", [{"dt": t0 + 2 * i, "val": 60.0 + i} for i in range(10)])
    vf.add_track("Solar8000/PLETH_HR", [{"dt": t0 + 2 * i, "val": 0.0} for i in range(10)])
    assert vf.to_vital(str(path))
    return x


def test_vitaldb_written_file(tmp_path):
    path = tmp_path / "case1.vital"
    x = _write_vital(path)
    assert readers.discover("vitaldb", str(tmp_path)) == [str(path)]
    rec = one("vitaldb", str(path))
    assert rec.subject_id == rec.record_id == "case1"
    assert rec.meta["ppg_track"] == "SNUADC/PLETH" and rec.meta["ecg_track"] == "SNUADC/ECG_II"
    assert rec.ppg.fs == 500.0 and len(rec.ppg.data) == 10000
    np.testing.assert_array_equal(np.isnan(rec.ppg.data), np.isnan(x))
    np.testing.assert_allclose(rec.ppg.data[2000:], x[2000:], rtol=1e-6)
    ecg = rec.signals["ecg"].data
    assert rec.signals["ecg"].fs == 500.0
    assert np.isnan(ecg[5000:6000]).all() and np.isnan(ecg[8000:]).all()   # recorder gaps
    assert np.isfinite(ecg[:5000]).all()
    np.testing.assert_allclose(rec.series["hr"].times_s, np.arange(0, 20, 2))
    np.testing.assert_allclose(rec.series["hr"].values, 60 + np.arange(10))
    assert np.isnan(rec.series["pulse"].values).all()                      # 0 = no value
    assert one("vitaldb", str(path), subject_id="p1").subject_id == "p1"


def test_vitaldb_bad_files(tmp_path):
    noppg = tmp_path / "noppg.vital"
    _write_vital(noppg, tracks=("SNUADC/ECG_II",))
    raises_reader_error(lambda: readers.read_unit("vitaldb", str(noppg)), noppg,
                        "no PPG track (PLETH)", "SNUADC/ECG_II")
    good = tmp_path / "good.vital"
    _write_vital(good)
    cut = tmp_path / "cut.vital"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raises_reader_error(lambda: readers.read_unit("vitaldb", str(cut)), cut, "no samples")
    junk = tmp_path / "junk.vital"
    junk.write_bytes(b"not gzip at all")
    raises_reader_error(lambda: readers.read_unit("vitaldb", str(junk)), junk, "unreadable .vital")
    empty = tmp_path / "empty.vital"
    with gzip.open(empty, "wb") as f:
        f.write(b"XXXX")
    raises_reader_error(lambda: readers.read_unit("vitaldb", str(empty)), empty, "no tracks")


# --- CSV / NPZ ------------------------------------------------------------------------------

@pytest.mark.data
def test_csv_neurokit_recording():
    path = shared_dataset("smoke/neurokit") / "bio_resting_5min_100hz.csv"
    assert readers.discover("csv", str(path.parent)) == [str(path)]
    rec = one("csv", str(path), fs=100, label_columns="RSP")
    assert rec.subject_id == "bio_resting_5min_100hz"
    assert rec.ppg.fs == 100.0 and len(rec.ppg.data) == 30000 and rec.ppg.duration_s == 300.0
    assert rec.meta["ecg_column"] == "ECG" and len(rec.signals["ecg"].data) == 30000
    assert len(rec.series["RSP"].values) == 30000 and rec.series["RSP"].times_s[-1] == pytest.approx(299.99)
    assert np.isfinite(rec.ppg.data).all() and np.std(rec.ppg.data) > 0
    assert "ecg" not in one("csv", str(path), fs="100", ecg_column="none").signals
    raises_reader_error(lambda: readers.read_unit("csv", str(path)), path, "no sampling rate")


def test_csv_time_column(tmp_path):
    t = np.arange(500) / 50.0
    path = tmp_path / "watch.csv"
    ppg = np.sin(t)
    ppg[10:20] = np.nan
    pd.DataFrame({"t_ms": t * 1000, "green": ppg, "hr": 70.0}).to_csv(path, index=False)
    rec = one("csv", str(path), ppg_column="GREEN", time_column="t_ms", time_unit="ms",
              label_columns=["hr"], subject_id="me")
    assert rec.subject_id == "me" and rec.ppg.fs == pytest.approx(50.0)
    assert "ecg" not in rec.signals
    np.testing.assert_array_equal(np.isnan(rec.ppg.data), np.isnan(ppg))     # gaps stay NaN
    np.testing.assert_allclose(rec.series["hr"].times_s, t)
    raises_reader_error(lambda: readers.read_unit("csv", str(path), ppg_column="green",
                                                  time_column="t_ms", time_unit="ms", fs=100),
                        path, "disagrees")


def test_csv_irregular_time_column(tmp_path):
    t = np.concatenate([np.arange(100), np.arange(130, 200)]) / 25.0
    path = tmp_path / "gappy.csv"
    pd.DataFrame({"time": t, "PPG": np.ones_like(t)}).to_csv(path, index=False)
    raises_reader_error(lambda: readers.read_unit("csv", str(path), time_column="time"),
                        path, "not regularly sampled")


def test_csv_bad_inputs(tmp_path):
    path = tmp_path / "rec.csv"
    pd.DataFrame({"PPG": np.arange(10.0), "acc": 1.0}).to_csv(path, index=False)
    raises_reader_error(lambda: readers.read_unit("csv", str(path), fs=25, ppg_column="ir"),
                        path, "no PPG column 'ir'", "['PPG', 'acc']")
    raises_reader_error(lambda: readers.read_unit("csv", str(path), fs=25, label_columns="spo2"),
                        path, "no label column 'spo2'")
    for fs in (0, -25, "fast", float("nan")):
        raises_reader_error(lambda: readers.read_unit("csv", str(path), fs=fs), path,
                            "invalid sampling rate")
    nocol = tmp_path / "nocol.csv"
    pd.DataFrame({"a": [1.0, 2.0]}).to_csv(nocol, index=False)
    raises_reader_error(lambda: readers.read_unit("csv", str(nocol), fs=25), nocol,
                        "no PPG column", "['a']")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("PPG,ECG\n1,2\n3,4,5,6\n")
    raises_reader_error(lambda: readers.read_unit("csv", str(ragged), fs=25), ragged, "unreadable CSV")
    text = tmp_path / "text.csv"
    text.write_text("PPG\n1.0\n\n2.0\noops\n")
    raises_reader_error(lambda: readers.read_unit("csv", str(text), fs=25), text,
                        "'PPG' is not numeric", "oops")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    raises_reader_error(lambda: readers.read_unit("csv", str(empty), fs=25), empty, "unreadable CSV")
    missing = tmp_path / "missing.csv"
    raises_reader_error(lambda: readers.read_unit("csv", str(missing), fs=25), missing, "no such file")


def test_npz_recording(tmp_path):
    path = tmp_path / "night.npz"
    np.savez(path, ppg=np.arange(300.0), ecg=np.zeros((300, 1)), fs=np.array(25.0))
    rec = one("csv", str(path))
    assert rec.record_id == "night" and rec.ppg.fs == 25.0 and len(rec.signals["ecg"].data) == 300
    assert one("csv", str(path), fs=50).ppg.fs == 50.0
    bad = tmp_path / "bad.npz"
    np.savez(bad, ppg=np.arange(10.0), ecg=np.arange(5.0))
    raises_reader_error(lambda: readers.read_unit("csv", str(bad), fs=25), bad, "differ in length")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK not really")
    raises_reader_error(lambda: readers.read_unit("csv", str(junk), fs=25), junk, "unreadable NPZ")
