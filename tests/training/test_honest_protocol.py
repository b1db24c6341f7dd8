"""Issue 10: selection subjects, retrieval that is never NaN, paired differences, refusing a used
--out, replacing only our own folders, file modes, the feature cache as one unit, and prepare's
bad input (every window rejected, implausible pulse for the declared rate, NaN rates)."""
import json
import os
import stat

import numpy as np
import pytest
import torch

from anyppg.runs import atomic_dir, atomic_write_json, manifest_trained_on, selection_record
from tests.conftest import set_args
from training import pretrain
from training.data.store import WindowStore
from training.features import build_cache, cache_path, load_cache
from training.prepare import main as prepare_main
from training.probe import protocol as P

TINY = ["ppg_model=net1d-tiny", "ecg_model=net1d-ecg-tiny", "batch_size=8", "epochs=0", "windows_per_subject=4",
        "max_steps=2", "warmup_steps=1", "log_every=1", "ckpt_every=2", "threads=1", "eval_batch=8"]


def _errors(err: str) -> list[str]:
    return [l for l in err.splitlines() if ": error:" in l]


# ------------------------------------------------------------------ selection subjects
def test_selection_subjects_count_as_seen():
    m = {"store": "/s", "trained_on_subjects": ["a", "b"], **selection_record("/s", "val", ["c"])}
    seen = manifest_trained_on(m)
    assert {x for e in seen for x in e["subjects"]} == {"a", "b", "c"}
    assert {x for e in manifest_trained_on(m, selection=False) for x in e["subjects"]} == {"a", "b"}
    assert selection_record("/s", "", ["c"]) == {"selected_on": []}


@pytest.mark.slow
def test_pretrain_records_selection_refuses_a_used_out_and_never_reports_nan(paired_store, tmp_path, capsys):
    run = tmp_path / "run"
    # eval_batch larger than any split: retrieval is "not measured", with the reason
    args = ["--data", str(paired_store), "--out", str(run), "--quiet"] + set_args(
        *TINY, "selection_split=val", "eval_batch=100000")
    assert pretrain.main(args) == 0
    m = json.loads((run / "manifest.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in manifest"))
    val = sorted(set(WindowStore(paired_store, split="val").subject_ids()))
    assert m["selected_on"][0]["split"] == "val" and m["selected_on"][0]["subjects"] == val
    for split in ("val", "test"):
        st = m["metrics"][f"{split}_retrieval"]["status"]
        assert st.startswith("not measured:") and "fewer than one batch" in st
    # the same --out again without --resume: refused, nothing overwritten
    before = (run / "metrics.jsonl").read_bytes()
    assert pretrain.main(args) == 1
    err = _errors(capsys.readouterr().err)
    assert len(err) == 1 and "already exists" in err[0] and "--resume" in err[0]
    assert (run / "metrics.jsonl").read_bytes() == before


# ------------------------------------------------------------------ paired differences
def test_paired_bootstrap_ties_itself_and_finds_a_real_difference():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 10).astype(str)
    y = rng.normal(70, 10, len(groups))
    good = y + rng.normal(0, 1, len(y))
    bad = y + rng.normal(0, 8, len(y))
    part = good.copy()
    part[::3] = np.nan                                 # covers two thirds: paired on those only
    res = P.paired_bootstrap("regression", y, groups, {"good": good, "bad": bad, "same": good.copy(), "part": part},
                             [("good", "bad"), ("bad", "good"), ("same", "good"), ("part", "bad")], n_rounds=200)
    by = {(r["method"], r["reference"]): r for r in res}
    assert by[("good", "bad")]["verdict"] == "better" and by[("good", "bad")]["ci"][1] < 0
    assert by[("bad", "good")]["verdict"] == "worse"
    assert by[("same", "good")]["verdict"] == "tie" and by[("same", "good")]["diff"] == 0
    assert by[("part", "bad")]["n_windows"] == int(np.isfinite(part).sum())


# ------------------------------------------------------------------ folders and files
def test_overwrite_replaces_only_project_folders_and_modes_follow_umask(tmp_path):
    own = tmp_path / "own"
    with atomic_dir(own) as t:
        atomic_write_json(t / "manifest.json", {"stage": "x"})
    old = os.umask(0o022)
    try:
        with atomic_dir(own, overwrite=True) as t:
            atomic_write_json(t / "manifest.json", {"stage": "y"})
        assert stat.S_IMODE((own / "manifest.json").stat().st_mode) == 0o644
        assert stat.S_IMODE(own.stat().st_mode) == 0o755
    finally:
        os.umask(old)
    assert json.loads((own / "manifest.json").read_text())["stage"] == "y"
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a run folder or store of this project"):
        with atomic_dir(precious, overwrite=True):
            pass
    assert (precious / "thesis.tex").read_text() == "years of work"


class _Enc(torch.nn.Module):
    def forward(self, x):
        from types import SimpleNamespace
        return SimpleNamespace(embedding=x[:, 0, :4])


def test_feature_cache_is_one_unit(paired_store, tmp_path):
    import shutil
    store = tmp_path / "store"
    shutil.copytree(paired_store, store)
    path = cache_path(store, "k-1", "teacher")
    build_cache(store, _Enc(), "k-1", kind="teacher", quiet=True)
    good = np.load(path).copy()
    # a crash of older code between the .npy and its note: the orphan .npy is not reused
    path.with_suffix(".json").unlink()
    np.save(path, np.zeros_like(good))
    build_cache(store, _Enc(), "k-1", kind="teacher", quiet=True)
    arr = load_cache(path, WindowStore(store, split=None))
    assert np.array_equal(np.asarray(arr), good)
    # and a torn .npy is a one-line error when read, not a deep traceback
    path.write_bytes(b"torn")
    with pytest.raises(ValueError, match="unreadable feature cache"):
        load_cache(path, WindowStore(store, split=None))


# ------------------------------------------------------------------ prepare's bad input
def _csv(folder, name, x, fs_col=None):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("ppg\n" + "\n".join(f"{v:.5f}" for v in x) + "\n")


def test_prepare_with_every_window_rejected_fails_and_leaves_no_store(tmp_path, capsys):
    src = tmp_path / "csv"
    _csv(src, "a.csv", np.zeros(125 * 40))           # a disconnected sensor: flat throughout
    out = tmp_path / "store"
    rc = prepare_main(["--source", "csv", "--input", str(src), "--out", str(out), "--quiet", "--fs", "125"])
    err = _errors(capsys.readouterr().err)
    assert rc != 0 and len(err) == 1 and "no window kept" in err[0] and "flat" in err[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".store")]


def test_prepare_warns_when_the_declared_rate_makes_the_pulse_implausible(tmp_path, capsys):
    fs_true, n = 30.0, 30 * 600
    t = np.arange(n) / fs_true
    x = (np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 2.4 * t)    # 72 bpm recorded at 30 Hz
         + np.random.default_rng(0).normal(0, 0.05, n))
    _csv(tmp_path / "csv", "a.csv", x)
    rc = prepare_main(["--source", "csv", "--input", str(tmp_path / "csv"), "--out", str(tmp_path / "wrong"),
                       "--quiet", "--fs", "125"])      # declared 4x too high: 72 bpm looks like 17
    assert rc == 0 and "check the rate" in capsys.readouterr().err
    rc = prepare_main(["--source", "csv", "--input", str(tmp_path / "csv"), "--out", str(tmp_path / "right"),
                       "--quiet", "--fs", "30"])
    assert rc == 0 and "check the rate" not in capsys.readouterr().err


@pytest.mark.parametrize("fs", ["nan", "inf", "0"])
def test_prepare_with_a_bad_rate_is_one_line_naming_it(tmp_path, capsys, fs):
    _csv(tmp_path / "csv", "a.csv", np.full(3000, np.nan) if fs == "0" else np.random.default_rng(0).normal(size=3000))
    rc = prepare_main(["--source", "csv", "--input", str(tmp_path / "csv"), "--out", str(tmp_path / "s"),
                       "--quiet", "--fs", fs, "--strict"])
    err = _errors(capsys.readouterr().err)
    assert rc != 0 and len(err) == 1 and "rate" in err[0] and "a.csv" in err[0]
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ failures count (probe runner)
class _FakeStore:
    def __init__(self, y):
        self.label_names, self._y, self.spec, self.subjects = ["hr"], y, None, None

    def column(self, name):
        return self._y


class _FakeData:
    """What run_task reads of a store: labels, subjects, one direct HR estimator that fails on
    a third of the windows (NaN) and is exact elsewhere."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.subjects = np.repeat([f"s{i:02d}" for i in range(12)], 10)
        self.y = rng.normal(75, 12, len(self.subjects))
        self.est = self.y.copy()
        self.est[::3] = np.nan
        self.store, self.index, self.path = _FakeStore(self.y), {"source": "fake"}, "fake"

    def direct(self, fam):
        return {"hr-spectral": self.est}


def test_direct_estimators_are_also_scored_with_failures_imputed_and_compared_paired():
    import argparse

    from training.probe.runner import run_task
    from training.probe.tasks import Task
    sd = _FakeData()
    task = Task(name="fake-hr", source="fake", input="fake", label="hr", kind="regression", unit="bpm",
                baselines=("hr",))
    res, _ = run_task(task, sd, [], argparse.Namespace(folds=4, inner_folds=3, bootstrap=50, seed=0,
                                                      baselines={"hr"}))
    raw, imp = res["baselines"]["hr-spectral"], res["baselines"]["hr-spectral+imp"]
    assert raw["value"] == 0 and raw["coverage"] == pytest.approx(2 / 3, abs=0.01)
    assert imp["coverage"] == 1 and imp["n_windows"] == len(sd.y) and imp["value"] > 1
    pairs = {(p["method"], p["reference"]): p for p in res["paired"]}
    assert pairs[("hr-spectral+imp", "subject-mean")]["verdict"] == "better"
    # the raw estimator is compared only on the windows it covered
    assert pairs[("hr-spectral", "subject-mean")]["n_windows"] == int(np.isfinite(sd.est).sum())
