"""`anyppg data prepare` end to end: store layout, subject splits, sharding, atomicity."""
import json

import numpy as np
import pytest

from anyppg.cli import main as cli_main
from edge_runtime.spec import FLAG_ECG_BAD
from training.data.dataset import WindowDataset
from training.prepare import main as prepare_main
from training.data.store import WindowStore, subject_split

SYN = "subjects=10,minutes=2,seed=5"


@pytest.fixture(scope="module")
def syn_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "store"
    assert prepare_main(["--source", "synthetic", "--input", SYN, "--out", str(out), "--quiet",
                         "--workers", "2"]) == 0
    return out


def test_store_index_and_arrays(syn_store):
    idx = json.loads((syn_store / "index.json").read_text())
    assert idx["complete"] and idx["n_subjects"] == 10
    assert idx["n_windows"] == sum(idx["splits"].values())
    assert idx["n_windows"] + idx["rejected"].get("windows_rejected", 0) == 10 * 12
    for name in ("hr", "rr", "sbp", "dbp", "af", "quality"):
        assert name in idx["label_names"]
    s = WindowStore(syn_store)
    assert s.has_ecg and s.ppg(0).shape == (1250,) and s.ecg(0).shape == (1250,)
    x = s.column("ppg")
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert np.allclose(x.mean(1), 0, atol=1e-4) and np.allclose(x.std(1), 1, atol=1e-3)


def test_splits_are_by_subject_and_deterministic(syn_store, tmp_path):
    split_subjects = [set(WindowStore(syn_store, split).subject_ids()) for split in ("train", "val", "test")]
    assert not (split_subjects[0] & split_subjects[1]) and not (split_subjects[0] & split_subjects[2])
    for k, subs in enumerate(split_subjects):
        assert all(subject_split(sid) == k for sid in subs)
    # Preparing again gives byte-identical arrays.
    out2 = tmp_path / "again"
    prepare_main(["--source", "synthetic", "--input", SYN, "--out", str(out2), "--quiet", "--workers", "1"])
    assert np.array_equal(WindowStore(out2).column("ppg"), WindowStore(syn_store).column("ppg"))


def test_sharded_prepare_equals_whole(syn_store, tmp_path):
    out = tmp_path / "sharded"
    for i in range(3):
        prepare_main(["--source", "synthetic", "--input", SYN, "--out", str(out), "--quiet",
                      "--num-shards", "3", "--shard-index", str(i), "--workers", "1"])
        idx = json.loads((out / "index.json").read_text())
        assert idx["complete"] == (i == 2)
    whole, sharded = WindowStore(syn_store), WindowStore(out)
    assert len(whole) == len(sharded)
    assert sorted(whole.subject_ids()) == sorted(sharded.subject_ids())
    assert np.isclose(np.sort(whole.column("ppg").sum(1)), np.sort(sharded.column("ppg").sum(1))).all()


def test_incomplete_store_is_refused(tmp_path):
    out = tmp_path / "half"
    prepare_main(["--source", "synthetic", "--input", SYN, "--out", str(out), "--quiet",
                  "--num-shards", "2", "--shard-index", "0", "--workers", "1"])
    with pytest.raises(ValueError, match="incomplete"):
        WindowStore(out)


def test_torch_dataset_items(syn_store):
    ds = WindowDataset(syn_store, split="train", with_ecg=True, label_names=["hr", "af"])
    it = ds[3]
    assert it["ppg"].shape == (1, 1250) and it["ecg"].shape == (1, 1250)
    assert it["labels"].shape == (2,)
    with pytest.raises(ValueError, match="no labels"):
        WindowDataset(syn_store, label_names=["nonexistent"])


def test_failed_prepare_leaves_no_store(tmp_path, capsys):
    out = tmp_path / "never"
    rc = prepare_main(["--source", "synthetic", "--input", "subjects=oops", "--out", str(out), "--quiet"])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anyppg data prepare: error:")
    assert not list(tmp_path.iterdir())          # no temp folder left behind either


def test_existing_store_needs_overwrite(syn_store, capsys):
    rc = prepare_main(["--source", "synthetic", "--input", SYN, "--out", str(syn_store), "--quiet"])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_missing_input_one_line_error(tmp_path, capsys):
    rc = cli_main(["data", "prepare", "--source", "bidmc", "--input", str(tmp_path / "nope"),
                   "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope" in err[0]


def test_csv_user_recording_with_bad_stretches(tmp_path):
    """A user's own CSV: a flat stretch and a NaN gap are rejected and counted, not crashed on."""
    fs = 100.0
    t = np.arange(int(fs * 120)) / fs
    ppg = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 2.4 * t)
    ppg[int(fs * 10):int(fs * 20)] = 0.25           # window 1: flat
    ppg[int(fs * 35):int(fs * 36)] = np.nan          # window 3: gap
    ecg = np.sin(2 * np.pi * 1.2 * t) ** 21
    f = tmp_path / "me.csv"
    np.savetxt(f, np.c_[ppg, ecg], delimiter=",", header="ppg,ecg", comments="")
    out = tmp_path / "store"
    rc = prepare_main(["--source", "csv", "--input", str(f), "--out", str(out), "--quiet",
                       "--ppg-column", "ppg", "--ecg-column", "ecg", "--fs", "100"])
    assert rc == 0
    idx = json.loads((out / "index.json").read_text())
    assert idx["rejected"]["flat"] == 1 and idx["rejected"]["nan_gap"] == 1
    assert idx["n_windows"] == 10
    s = WindowStore(out)
    assert s.has_ecg and all((s.flags(i) & FLAG_ECG_BAD) == 0 for i in range(len(s)))
