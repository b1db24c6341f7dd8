"""`anyppg distill`: checkpoint + manifest, from-scratch mode, loss goes down, resume, bad teachers."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import set_args
from anyppg.runs import write_manifest
from training import distill
from training.models import build_model
from training.models import student as S
from training.data.store import WindowStore

TINY = ["student_model=student-tiny", "batch_size=8", "epochs=0", "max_steps=6", "warmup_steps=2",
        "log_every=1", "ckpt_every=3", "threads=1"]


def _sets(*extra):
    return set_args(*TINY, *extra)


@pytest.fixture(scope="module")
def store(paired_store):
    return paired_store


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, store):
    """A random net1d-tiny in the pretrain checkpoint format, with a manifest that says it also
    saw a subject of another store."""
    run = tmp_path_factory.mktemp("teacher") / "pretrain"
    torch.manual_seed(0)
    e = build_model("net1d-tiny")
    spec = WindowStore(store).spec.to_dict()
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"ppg_encoder": e.model.state_dict(), "step": 0, "spec": spec,
                "model_config": {"ppg_model": "net1d-tiny", "ppg_config": e.config,
                                 "embed_dim": e.embed_dim}}, run / "checkpoints" / "latest.pt")
    write_manifest(run, "pretrain", {}, {}, {}, extra={
        "store": "/elsewhere/other-store", "trained_on_subjects": ["other_subject_1"]})
    return run


def _run(store, out, *args):
    return distill.main(["--config", "cpu-small", "--data", str(store), "--out", str(out), "--quiet",
                         *args])


def test_distill_writes_checkpoint_and_manifest(store, teacher, tmp_path):
    out = tmp_path / "run"
    assert _run(store, out, "--teacher", str(teacher), *_sets()) == 0
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    for k in ("model", "model_name", "model_config", "spec", "label_norm", "step", "config",
              "optimizer", "teacher"):
        assert k in ck, k
    assert ck["step"] == 6 and ck["model_name"] == "student-tiny"
    assert not any(k.startswith("module.") for k in ck["model"])
    assert ck["teacher"]["model"] == "net1d-tiny" and ck["teacher"]["kind"] == "run"
    assert ck["label_norm"]["hr"]["trained"] and ck["label_norm"]["hr"]["label"] == "hr"
    # the checkpoint is the whole shipping model: heads and de-normalisation included
    e = build_model(ck["model_config"]["ppg_model"])
    e.model.load_state_dict(ck["model"])
    assert float(e.model.label_mean[0]) == pytest.approx(ck["label_norm"]["hr"]["mean"])
    out_ = e.model.eval()(torch.randn(2, 1, 1250))
    assert out_._fields == e.model.output_fields and "hr_confidence" in out_._fields

    m = json.loads((out / "manifest.json").read_text())
    assert m["stage"] == "distill"
    train_subjects = set(WindowStore(store, split="train").subject_ids())
    assert set(m["trained_on_subjects"]) == train_subjects | {"other_subject_1"}
    assert str(Path(store).resolve()) in m["store"] and "/elsewhere/other-store" in m["store"]
    assert m["teacher"]["run"] == str(teacher.resolve())
    assert "hr_mae" in m["metrics"]["test"] and "teacher_cos" in m["metrics"]["test"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert {"loss_cos", "loss_mse", "loss_hr", "loss_af"} <= set(lines[-1])
    # the teacher's features were cached beside the store, once
    assert len(list((Path(store) / "teacher_features").glob("*.npy"))) == 1


def test_from_scratch_needs_no_teacher(store, tmp_path):
    out = tmp_path / "scratch"
    assert _run(store, out, "--from-scratch", *_sets()) == 0
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["adapter"] is None and ck["teacher"] is None and ck["config"]["distill_weight"] == 0
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["trained_on_subjects"]) == set(WindowStore(store, split="train").subject_ids())
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "loss_cos" not in last and "loss_hr" in last


def test_loss_decreases(store, teacher, tmp_path):
    out = tmp_path / "dec"
    assert _run(store, out, "--teacher", str(teacher),
                *_sets("max_steps=40", "augment=false", "lr=1e-2", "ckpt_every=100")) == 0
    loss = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(loss) == 40
    assert np.mean(loss[-8:]) < 0.8 * np.mean(loss[:8]), (loss[:8], loss[-8:])


def test_resume_matches_uninterrupted(store, teacher, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(store, a, "--teacher", str(teacher), *_sets()) == 0
    assert _run(store, b, "--teacher", str(teacher), *_sets("max_steps=3")) == 0
    assert _run(store, b, "--teacher", str(teacher), "--resume", *_sets()) == 0
    ka = torch.load(a / "checkpoints" / "latest.pt", weights_only=True)["model"]
    kb = torch.load(b / "checkpoints" / "latest.pt", weights_only=True)["model"]
    for k in ka:
        torch.testing.assert_close(ka[k], kb[k])


def test_bad_teachers_fail_in_one_line(store, tmp_path, capsys):
    ecg = build_model("net1d-ecg-tiny")
    cases = {
        "ecg.pt": {"ppg_encoder": ecg.model.state_dict(), "model_config": {"ppg_model": "net1d-ecg-tiny"}},
        "unknown.pt": {"model": {"w": torch.zeros(2)}, "model_config": {"ppg_model": "resnet-9000"}},
        "wrong.pt": {"state_dict": {"w": torch.zeros(2)}},       # not anyppg-net1d weights
    }
    for fname, obj in cases.items():
        torch.save(obj, tmp_path / fname)
        assert _run(store, tmp_path / "x", "--teacher", str(tmp_path / fname), *_sets()) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("anyppg distill: error: teacher") and "\n" not in err, err
    assert _run(store, tmp_path / "x", "--teacher", str(store), *_sets()) == 1     # a store, not a run
    assert "not a run folder" in capsys.readouterr().err
    assert _run(store, tmp_path / "x", *_sets()) == 1                              # no teacher at all
    assert "--from-scratch" in capsys.readouterr().err


def test_live_teacher_matches_cached_features(store, teacher, tmp_path):
    """The cache holds the teacher's features of the clean windows: running the teacher live on
    the clean view gives the same losses (up to the cache's float16)."""
    losses = []
    for cache in ("true", "false"):
        out = tmp_path / f"live-{cache}"
        assert _run(store, out, "--teacher", str(teacher),
                    *_sets("max_steps=2", f"cache_teacher_features={cache}")) == 0
        losses.append([json.loads(x)["loss_distill"] for x in (out / "metrics.jsonl").read_text().splitlines()])
    np.testing.assert_allclose(losses[0], losses[1], rtol=2e-2)


@pytest.mark.slow
def test_mix_stores_add_labelled_windows_to_each_batch(store, teacher, tmp_path):
    from training.data.mix import load_mixes, parse_mix
    assert parse_mix("stores/a:b:0.25") == ("stores/a:b", 0.25)
    for bad in ("stores/a", "stores/a:1.5", "stores/a:x"):
        with pytest.raises(ValueError, match="store_path:fraction"):
            parse_mix(bad)
    st = WindowStore(store, split="train")
    (m,) = load_mixes([f"{store}:0.25"], ["hr", "no_such_label"], st.spec)
    x, y = m.draw(m.count(8), torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, st.spec.ppg_len) and y.shape == (2, 2)
    assert torch.isfinite(y[:, 0]).all() and torch.isnan(y[:, 1]).all()
    with pytest.raises(ValueError, match="sum to"):
        load_mixes([f"{store}:0.6", f"{store}:0.5"], ["hr"], st.spec)
    out = tmp_path / "run"
    assert _run(store, out, "--teacher", str(teacher), *_sets(f"mix=[{store}:0.25]")) == 0
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 6 and ck["config"]["mix"] == [f"{store}:0.25"]


def test_hr_not_in_af_masks_only_the_hr_of_af_windows(store, tmp_path):
    """hr_not_in_af: an AF window's HR label becomes unknown (hr and hr_confidence learn nothing
    from it); its other labels and every sinus window's HR stay; a store without af is refused."""
    st = WindowStore(store, split="train")
    if "af" not in st.label_names or "hr" not in st.label_names:
        pytest.skip("the session store has no af / hr labels")
    plain = distill.head_plan(distill.DistillConfig(), st, store, True)
    masked = distill.head_plan(distill.DistillConfig(hr_not_in_af=True), st, store, True)
    lab = torch.tensor(np.stack([st.column(n) for n in plain.label_names], 1))
    lab[:, plain.label_names.index("af")] = torch.arange(len(lab)) % 3 == 0     # some windows in AF
    y0, y1 = plain.targets(lab, "cpu"), masked.targets(lab, "cpu")
    af = lab[:, plain.label_names.index("af")] >= 0.5
    hr = S.HEAD_NAMES.index("hr")
    assert af.any() and (~af).any()
    assert torch.isnan(y1[af, hr]).all() and torch.equal(y1[~af, hr], y0[~af, hr])
    other = [i for i in range(len(S.HEAD_NAMES)) if i != hr]
    assert torch.equal(torch.nan_to_num(y1[:, other], nan=-9.0), torch.nan_to_num(y0[:, other], nan=-9.0))


def test_hr_not_in_af_needs_an_af_label(store):
    from training.heads import HeadLabels
    cfg = distill.DistillConfig(hr_not_in_af=True, labels=HeadLabels(af=("no_such_label",)))
    with pytest.raises(ValueError, match="hr_not_in_af: .* has no af label"):
        distill.head_plan(cfg, WindowStore(store, split="train"), store, True)
