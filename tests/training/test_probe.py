"""`anyppg probe`: leakage-proof grouped protocol, degenerate/missing/seen handling, baselines,
end to end on synthetic data (and on real recordings where ../shared/data is present)."""
import argparse
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import KFold

from tests.conftest import shared_dataset
from training.prepare import main as prepare_main
from training.probe import FunctionEmbedder, load_embedder, main as probe_main
from training.probe import protocol as P
from training.probe import baselines as B
from training.probe.runner import run_task
from training.probe.stores import StoreData, ensure_store
from training.probe.tasks import TASKS, parse_custom, resolve_tasks
from training.data.store import WindowStore

SYN = "subjects=12,minutes=2,seed=5"


def _opts(**kw):
    d = dict(folds=5, inner_folds=3, bootstrap=100, seed=0, baselines={"features", "hr", "rr"})
    d.update(kw)
    return argparse.Namespace(**d)


def _strict_json(path):
    def bad(c):
        raise AssertionError(f"non-finite constant {c} in {path}")
    return json.loads(path.read_text(), parse_constant=bad)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def syn(stores):
    """A small synthetic store in the probe's own cache (prepared through ensure_store)."""
    task = resolve_tasks("synthetic-hr", synthetic_input=SYN)[0]
    path, reason = ensure_store(task, stores, workers=1)
    assert reason is None
    return StoreData(path)


# --------------------------------------------------------------------------- protocol
def _fingerprint_data(n_subj=30, per=20, d=64, seed=0, binary=False):
    """Windows whose features identify their subject, with a label that is a function of the
    subject alone (and nothing a model could generalise from). d > n_subj: a linear probe can
    memorise every subject, as a 128-512-d embedding can for tens of subjects."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_subj, d)) * 3
    groups = np.repeat([f"s{i:02d}" for i in range(n_subj)], per)
    sid = np.repeat(np.arange(n_subj), per)
    X = centers[sid] + rng.normal(size=(n_subj * per, d)) * 0.3
    per_subject = (rng.uniform(size=n_subj) < 0.5).astype(int) if binary else rng.normal(50, 10, n_subj)
    if binary:
        per_subject[:2] = [0, 1]
    return X, per_subject[sid], groups


def test_subject_label_is_not_learnable_under_grouped_cv_but_is_when_split_by_window():
    X, y, g = _fingerprint_data()
    folds = P.outer_folds(y, g, "regression", 5, seed=0)
    for tr, te in folds:                         # no subject on both sides of any fold
        assert not set(g[tr]) & set(g[te])
    grouped = P.cross_val_predict(X, y, g, "regression", folds, inner_folds=3)
    ref = P.subject_mean_predict(y, g, "regression", folds)
    skill_grouped = P.skill("regression", P.mae(y, grouped.pred), P.mae(y, ref.pred))
    assert abs(skill_grouped) < 0.2, skill_grouped
    # The same pipeline with windows (not subjects) as the unit, outer and inner, "learns" the
    # subject label: this is what the grouping prevents.
    leaky = [(tr, te) for tr, te in KFold(5, shuffle=True, random_state=0).split(X)]
    pr = P.cross_val_predict(X, y, np.arange(len(y)), "regression", leaky, inner_folds=3)
    ref_leaky = P.subject_mean_predict(y, g, "regression", leaky)
    skill_leaky = P.skill("regression", P.mae(y, pr.pred), P.mae(y, ref_leaky.pred))
    assert skill_leaky > 0.8, skill_leaky


def test_binary_subject_label_scores_chance_auroc_under_grouped_cv():
    X, y, g = _fingerprint_data(binary=True, seed=1)
    folds = P.outer_folds(y, g, "binary", 5, seed=0)
    assert P.degenerate_reason(y, g, "binary", folds) is None
    pr = P.cross_val_predict(X, y, g, "binary", folds, inner_folds=3)
    ci = P.bootstrap("binary", y, g, {"m": pr.pred}, n_rounds=200)["m"]["ci"]
    assert ci[0] < 0.5 < ci[1], ci
    leaky = [(tr, te) for tr, te in KFold(5, shuffle=True, random_state=0).split(X)]
    assert P.auroc(y, P.cross_val_predict(X, y, np.arange(len(y)), "binary", leaky, inner_folds=3).pred) > 0.95


def test_linear_feature_gives_near_zero_error_and_random_features_the_subject_mean():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(25), 16).astype(str)
    y = rng.normal(80, 12, len(g)) + np.repeat(rng.normal(0, 8, 25), 16)
    folds = P.outer_folds(y, g, "regression", 5)
    lin = P.cross_val_predict(np.c_[3 * y + 1, rng.normal(size=len(y))], y, g, "regression", folds, 3)
    assert P.mae(y, lin.pred) < 0.05
    ref = P.mae(y, P.subject_mean_predict(y, g, "regression", folds).pred)
    rnd = P.cross_val_predict(rng.normal(size=(len(y), 8)), y, g, "regression", folds, 3)
    assert abs(1 - P.mae(y, rnd.pred) / ref) < 0.1


def test_fast_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)              # ties included
    assert math.isclose(P.auroc(y, s), roc_auc_score(y, s), abs_tol=1e-12)
    yc, pc = rng.integers(0, 6, 300), rng.integers(0, 5, 300)
    assert math.isclose(P.macro_f1(yc, pc, 6), f1_score(yc, pc, average="macro"), abs_tol=1e-12)
    assert math.isclose(P.binary_f1(y, s > 0.5), f1_score(y, s > 0.5), abs_tol=1e-12)
    assert P.auroc(y, np.full(300, 0.3)) == 0.5


def test_degenerate_labels_are_reported_not_nan():
    g = np.repeat(np.arange(10), 5).astype(str)
    assert P.degenerate_reason(np.zeros(50), g, "binary").startswith("degenerate: only one class")
    y = (g == "3").astype(int)                   # one positive subject: a training fold lacks it
    folds = P.outer_folds(y, g, "binary", 5)
    assert P.degenerate_reason(y, g, "binary", folds).startswith("degenerate: training fold")
    assert P.degenerate_reason(np.ones(50), g, "regression").startswith("degenerate: constant")
    assert P.degenerate_reason(np.ones(5), np.zeros(5), "regression").startswith("degenerate: only 1 subject")


# --------------------------------------------------------------------------- tasks
def test_task_registry_and_custom_tasks():
    assert {"bidmc-hr", "bidmc-rr", "bidmc-spo2", "ppgbp-sbp", "ppgbp-dbp", "ppgbp-hr",
            "ppgbp-hypertension", "liu-af", "liu-rhythm", "synthetic-hr", "synthetic-rr",
            "synthetic-sbp", "synthetic-af", "synthetic-quality"} <= set(TASKS)
    assert [t.name for t in resolve_tasks("synthetic")] == [n for n in TASKS if n.startswith("synthetic")]
    t = parse_custom("custom:csv:/data/a:b/mine:hr:regression")
    assert (t.source, t.input, t.label, t.kind, t.baselines) == ("csv", "/data/a:b/mine", "hr", "regression", ("hr",))
    t = parse_custom("custom:synthetic:subjects=4,seed=1:af:binary:0.5")
    assert t.threshold == 0.5 and t.input == "subjects=4,seed=1"
    with pytest.raises(ValueError):
        parse_custom("custom:nosuch:/x:hr:regression")
    with pytest.raises(ValueError):
        resolve_tasks("bidmc-hrr")
    from anyppg.cli import main as cli_main
    assert cli_main(["probe", "--list-tasks"]) == 0


# --------------------------------------------------------------------------- on a store
def test_run_task_plumbing_label_feature_and_degenerate(syn):
    hr = syn.store.column("hr")
    oracle = FunctionEmbedder("oracle", lambda x: np.c_[2 * hr + 5])
    task = resolve_tasks("synthetic-hr", synthetic_input=SYN)[0]
    res, arrays = run_task(task, syn, [oracle], _opts(baselines=set()))
    assert res["status"] == "ok" and res["n_subjects"] == 12
    assert res["encoders"]["oracle"]["value"] < 0.05
    assert res["encoders"]["oracle"]["skill"] > 0.99
    assert res["baselines"]["subject-mean"]["value"] > 5
    # A binary label made constant by its threshold: degenerate, reported, no metric.
    never = parse_custom(f"custom:synthetic:{SYN}:af:binary:2.0")
    res, _ = run_task(never, syn, [oracle], _opts())
    assert res["status"].startswith("degenerate: only one class") and not res["encoders"]


def _fake_run(tmp_path, store_path, subjects):
    run = tmp_path / "fake" / "pretrain"
    (run / "checkpoints").mkdir(parents=True)
    torch.manual_seed(1)
    from training.models import build_model
    entry = build_model("net1d-tiny")
    torch.save({"ppg_encoder": entry.model.state_dict(),
                "model_config": {"ppg_model": "net1d-tiny", "ppg_config": entry.config},
                "spec": entry.spec.to_dict()}, run / "checkpoints" / "latest.pt")
    (run / "manifest.json").write_text(json.dumps({
        "stage": "pretrain", "store": str(store_path), "trained_on_subjects": subjects}))
    return run, entry


def test_seen_subjects_are_excluded(syn, tmp_path):
    # The encoder "trained" on 4 subjects of a store made from the same generator seed (another
    # folder, another duration): those 4 subjects are dropped from the probe.
    other = tmp_path / "pretrain_store"
    assert prepare_main(["--source", "synthetic", "--input", "subjects=6,minutes=1,seed=5", "--out",
                         str(other), "--quiet", "--workers", "1"]) == 0
    seen = sorted(set(WindowStore(other).subject_ids()))[:4]
    run, entry = _fake_run(tmp_path, other, seen)
    emb = load_embedder(str(run))
    assert emb.name == "fake/pretrain" and len(emb.seen) == 1 and emb.seen[0].source == "synthetic"
    # The checkpoint's weights were loaded (same output as the saved model).
    x = syn.x[:3]
    with torch.no_grad():
        want = entry.model.eval()(torch.from_numpy(x)[:, None]).embedding.numpy()
    assert np.allclose(emb.embed(x), want, atol=1e-5)
    task = resolve_tasks("synthetic-sbp", synthetic_input=SYN)[0]
    res, arrays = run_task(task, syn, [emb], _opts(baselines=set()))
    assert res["status"] == "ok"
    assert res["excluded_seen_subjects"] == 4 and res["n_subjects"] == 8
    assert not set(arrays["subject"]) & set(seen)
    # A different generator seed is different people: nothing excluded.
    other_seed = tmp_path / "pretrain_store_seed9"
    prepare_main(["--source", "synthetic", "--input", "subjects=6,minutes=1,seed=9", "--out",
                  str(other_seed), "--quiet", "--workers", "1"])
    run2, _ = _fake_run(tmp_path / "b", other_seed, seen)
    res2, _ = run_task(task, syn, [load_embedder(str(run2))], _opts(baselines=set()))
    assert res2["excluded_seen_subjects"] == 0 and res2["n_subjects"] == 12


def test_raw_state_dict_with_model_name(tmp_path):
    torch.manual_seed(2)
    from training.models import build_model
    entry = build_model("net1d-tiny")
    torch.save({"module." + k: v for k, v in entry.model.state_dict().items()}, tmp_path / "w.pth")
    emb = load_embedder(str(tmp_path / "w.pth"), model="net1d-tiny", batch_size=2)
    x = np.random.default_rng(0).normal(size=(5, 1250)).astype(np.float32)
    with torch.no_grad():
        want = entry.model.eval()(torch.from_numpy(x)[:, None]).embedding.numpy()
    assert emb.name == "w" and emb.seen == [] and np.allclose(emb.embed(x), want, atol=1e-5)
    with pytest.raises(ValueError, match="--model"):
        load_embedder(str(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match="no such file"):
        load_embedder(str(tmp_path / "missing.pt"))


def test_distilled_student_run_plugs_in(syn, tmp_path):
    from training.models import student
    from training.models import build_model
    torch.manual_seed(3)
    entry = build_model("student-tiny")
    run = tmp_path / "distill"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model": entry.model.state_dict(), "model_name": "student-tiny",
                "model_config": {"ppg_config": entry.config}, "spec": entry.spec.to_dict()},
               run / "checkpoints" / "latest.pt")
    seen = sorted(set(syn.subjects))[:3]
    (run / "manifest.json").write_text(json.dumps({
        "stage": "distill", "store": [str(syn.path)], "trained_on_subjects": seen,
        "trained_on": [{"store": str(syn.path), "subjects": seen}]}))
    emb = load_embedder(str(run))
    assert emb.info["kind"] == "student" and isinstance(entry.model, student.StudentNet)
    with torch.no_grad():
        want = entry.model.eval()(torch.from_numpy(syn.x[:4])[:, None]).embedding.numpy()
    assert np.allclose(emb.embed(syn.x[:4]), want, atol=1e-5)
    res, _ = run_task(resolve_tasks("synthetic-hr", synthetic_input=SYN)[0], syn, [emb], _opts(baselines=set()))
    assert res["excluded_seen_subjects"] == 3 and res["n_subjects"] == 9


def test_missing_dataset_is_skipped_with_reason(tmp_path):
    out = tmp_path / "out"
    rc = probe_main(["--task", f"custom:bidmc:{tmp_path / 'nope'}:hr:regression", "--out", str(out),
                     "--stores", str(tmp_path / "st"), "--no-plots"])
    assert rc == 0
    rep = _strict_json(out / "probe.json")
    (t,) = rep["tasks"].values()
    assert t["status"].startswith("skipped: dataset not found")
    assert "skipped" in (out / "probe.md").read_text()


def test_custom_task_on_users_csv_files(tmp_path):
    from training.data.synthetic import generate_subject
    data = tmp_path / "my_ppg"
    data.mkdir()
    for i in range(8):
        rec = generate_subject(i, seed=3, duration_s=60.0, ppg_fs=100.0)
        t = np.arange(len(rec.signals["ppg"].data)) / 100.0
        hr = np.interp(t, rec.series["hr"].times_s, rec.series["hr"].values)
        np.savetxt(data / f"person{i}.csv", np.c_[rec.signals["ppg"].data, hr], delimiter=",",
                   header="pleth,hr", comments="", fmt="%.5f")
    out = tmp_path / "out"
    rc = probe_main(["--task", f"custom:csv:{data}:hr:regression", "--reader-opt", "fs=100",
                     "--reader-opt", "label_columns=hr", "--baselines", "hr", "--bootstrap", "50",
                     "--out", str(out), "--stores", str(tmp_path / "st"), "--no-plots", "--workers", "1"])
    assert rc == 0
    (t,) = _strict_json(out / "probe.json")["tasks"].values()
    assert t["status"] == "ok" and t["n_subjects"] == 8 and t["store_source"] == "csv"
    assert t["baselines"]["hr-neurokit2"]["value"] < t["baselines"]["subject-mean"]["value"]


def test_end_to_end_synthetic_suite(syn, stores, tmp_path):
    out = tmp_path / "probe"
    rc = probe_main(["--encoder", "random:net1d-tiny", "--tasks", "synthetic", "--synthetic-input", SYN,
                     "--out", str(out), "--stores", str(stores), "--bootstrap", "100",
                     "--inner-folds", "3", "--threads", "1", "--workers", "1"])
    assert rc == 0
    rep = _strict_json(out / "probe.json")
    assert set(rep["tasks"]) == {n for n in TASKS if n.startswith("synthetic")}
    for name, t in rep["tasks"].items():
        if name == "synthetic-af" and t["status"].startswith("degenerate"):
            # 12 small subjects may hold a single AF subject: reported, without metrics.
            assert not t["encoders"] and "class" in t["status"]
            continue
        assert t["status"] == "ok", (name, t["status"])
        enc = t["encoders"]["random:net1d-tiny"]
        assert enc["status"] == "ok" and enc["ci"][0] <= enc["value"] <= enc["ci"][1]
        assert enc["n_subjects"] == 12 and t["n_windows"] == enc["n_windows"]
        assert "skill" in enc and (t["baselines"].get("subject-mean") or t["baselines"].get("prior"))
        assert (out / t["plot"]).stat().st_size > 1000
        assert (out / "predictions" / f"{name}.npz").is_file()
    hr = rep["tasks"]["synthetic-hr"]["baselines"]
    assert {"features", "hr-spectral", "hr-neurokit2", "hr-heartpy"} <= set(hr)
    assert {"rr-riiv", "rr-riav", "rr-rifv", "rr-fusion"} <= set(rep["tasks"]["synthetic-rr"]["baselines"])
    assert rep["tasks"]["synthetic-quality"]["baselines"]["prior"]["value"] == 0.5
    md = (out / "probe.md").read_text()
    assert "synthetic-hr" in md and "random:net1d-tiny" in md and "NeuroKit2" in md
    man = json.loads((out / "manifest.json").read_text())
    assert man["stage"] == "probe"


# --------------------------------------------------------------------------- real data
@pytest.mark.data
def test_classical_hr_on_bidmc_windows(tmp_path):
    src = shared_dataset("bidmc")
    files = sorted(src.glob("bidmc_0[1-3]_Signals.csv*"))
    if not files:
        pytest.skip("no BIDMC signal files")
    errs = {"hr-spectral": [], "hr-neurokit2": []}
    for f in files:
        out = tmp_path / f.name.split(".")[0]
        assert prepare_main(["--source", "bidmc", "--input", str(f), "--out", str(out), "--quiet",
                             "--workers", "1"]) == 0
        s = WindowStore(out)
        x, hr = s.column("ppg")[::4], s.column("hr")[::4]
        est = B.hr_estimates(x)
        for k in errs:
            ok = np.isfinite(est[k]) & np.isfinite(hr)
            assert ok.mean() > 0.9, k
            errs[k].append(np.abs(est[k][ok] - hr[ok]))
    for k, e in errs.items():
        assert np.median(np.concatenate(e)) < 3.0, k


def test_tiled_short_segments_are_found():
    seg = np.sin(2 * np.pi * 1.3 * np.arange(263) / 125) + 0.3 * np.sin(2 * np.pi * 2.6 * np.arange(263) / 125 + 1)
    x = np.tile(seg, 5)[:1250]
    assert B.tile_period(x) == 263
    assert B.tile_period(np.sin(2 * np.pi * 1.3 * np.arange(1250) / 125)
                         + np.random.default_rng(0).normal(0, 0.3, 1250)) is None


def test_diagnoses_flag_routes_to_the_diagnoses_table(monkeypatch):
    """`anyppg probe --diagnoses TABLE ...` is the disease table, not the task probes."""
    import training.probe.diagnoses as diagnoses
    seen = []
    monkeypatch.setattr(diagnoses, "main", lambda argv: seen.append(list(argv)) or 7)
    argv = ["--diagnoses", "codes.csv", "--encoder", "random:net1d-tiny", "--out", "o"]
    assert probe_main(argv) == 7 and seen == [argv]
    seen.clear()
    assert probe_main(["--diagnoses=codes.csv", "--out", "o"]) == 7 and seen == [["--diagnoses=codes.csv", "--out", "o"]]


def test_encoder_made_under_another_spec_is_skipped_by_the_spec_check():
    from edge_runtime.spec import SignalSpec
    from training.probe.runner import spec_mismatch
    store_spec = SignalSpec()
    emb = FunctionEmbedder("f", lambda x: x[:, :2], spec=SignalSpec(ppg_band_hz=(0.5, 5.0)))
    msg = spec_mismatch(emb, store_spec)
    assert msg.startswith("skipped:") and "ppg_band_hz" in msg
    assert spec_mismatch(FunctionEmbedder("g", lambda x: x, spec=SignalSpec()), store_spec) is None
