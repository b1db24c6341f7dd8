"""ECG-guided pretraining: loss, cross-rank negatives, DDP, checkpoints, resume, bad input."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp_mp
import torch.nn.functional as F

from tests.conftest import set_args
from training import loop, pretrain
from training.losses import ClipLoss
from training.models import build_model, load_encoder_checkpoint
from training.prepare import main as prepare_main

REPO = Path(__file__).resolve().parents[2]
TINY = ["ppg_model=net1d-tiny", "ecg_model=net1d-ecg-tiny", "batch_size=8", "epochs=0", "windows_per_subject=4",
        "max_steps=6", "warmup_steps=2", "log_every=1", "ckpt_every=2", "threads=1", "eval_batch=8"]


def _sets(*extra):
    return set_args(*TINY, *extra)


@pytest.fixture(scope="module")
def store(paired_store):
    return paired_store


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, world, port, x_ppg, x_ecg, w_ppg, w_ecg, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    p_tower = torch.nn.Linear(*w_ppg.shape[::-1], bias=False)
    e_tower = torch.nn.Linear(*w_ecg.shape[::-1], bias=False)
    with torch.no_grad():
        p_tower.weight.copy_(w_ppg)
        e_tower.weight.copy_(w_ecg)
    b = x_ppg.shape[0] // world
    sl = slice(rank * b, (rank + 1) * b)
    p = F.normalize(p_tower(x_ppg[sl]), dim=-1)
    e = F.normalize(e_tower(x_ecg[sl]), dim=-1)
    out = ClipLoss(gather=True)(p, e, torch.tensor(2.0))
    out.loss.backward()
    # What DDP does after backward: average parameter gradients across ranks.
    for prm in (p_tower.weight, e_tower.weight):
        dist.all_reduce(prm.grad)
        prm.grad /= world
    loss = torch.tensor([out.loss.item()])
    dist.all_reduce(loss)
    torch.save({"loss": loss.item() / world, "g_ppg": p_tower.weight.grad, "g_ecg": e_tower.weight.grad},
               Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    # Leave without tearing gloo down: its teardown after an autograd all_gather can abort
    # ("terminate called without an active exception") once the results are already saved.
    os._exit(0)


def test_gathered_negatives_two_ranks_equal_one_rank_double_batch(tmp_path):
    torch.manual_seed(0)
    B, d_in, d = 6, 10, 4
    x_ppg, x_ecg = torch.randn(2 * B, d_in), torch.randn(2 * B, d_in)
    w_ppg, w_ecg = torch.randn(d, d_in), torch.randn(d, d_in)
    # Reference: one process, batch 2B.
    wp, we = w_ppg.clone().requires_grad_(), w_ecg.clone().requires_grad_()
    ref = ClipLoss(gather=True)(F.normalize(x_ppg @ wp.T, dim=-1), F.normalize(x_ecg @ we.T, dim=-1),
                                torch.tensor(2.0))
    ref.loss.backward()
    tmp_mp.spawn(_rank_worker, args=(2, _free_port(), x_ppg, x_ecg, w_ppg, w_ecg, str(tmp_path)), nprocs=2)
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        assert abs(got["loss"] - ref.loss.item()) < 1e-5
        assert torch.allclose(got["g_ppg"], wp.grad, atol=1e-6)
        assert torch.allclose(got["g_ecg"], we.grad, atol=1e-6)


def test_clip_loss_prefers_aligned_pairs():
    torch.manual_seed(0)
    e = F.normalize(torch.randn(16, 8), dim=-1)
    aligned = ClipLoss()(e, e, torch.tensor(3.0))
    shuffled = ClipLoss()(e, e[torch.randperm(16)], torch.tensor(3.0))
    assert aligned.loss < shuffled.loss and aligned.top1_ppg_to_ecg == 1.0


def test_lr_schedule_warmup_then_cosine():
    lrs = [loop.lr_at(s, 1.0, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01


def test_pretrain_main_writes_checkpoint_and_manifest(store, tmp_path):
    run = tmp_path / "run"
    assert pretrain.main(["--data", str(store), "--out", str(run), "--quiet"] + _sets()) == 0
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 6 and not any(k.startswith("module.") for k in ck["model"])
    entry = build_model("net1d-tiny")
    load_encoder_checkpoint(entry.model, ck["ppg_encoder"])     # strict
    m = json.loads((run / "manifest.json").read_text())
    assert m["stage"] == "pretrain" and m["metrics"]["steps"] == 6
    assert m["config"]["batch_size"] == 8 and m["trained_on_subjects"]
    assert "val_retrieval" in m["metrics"] and "test_retrieval" in m["metrics"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "temperature", "batch_top1", "windows_per_s"} <= set(json.loads(lines[-1]))


def _run_cli(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "training.pretrain"] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(store, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    base = ["--data", str(store), "--quiet"] + _sets("max_steps=7", "ckpt_every=2")
    assert _run_cli(base + ["--out", str(straight)]).returncode == 0
    r = _run_cli(base + ["--out", str(killed), "--set", "kill_at_step=5"])
    assert r.returncode == -9                                 # really killed, mid-way
    assert torch.load(killed / "checkpoints" / "latest.pt", weights_only=True)["step"] == 4
    assert _run_cli(base + ["--out", str(killed), "--resume"]).returncode == 0
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "latest.pt", weights_only=True)
    assert a["step"] == b["step"] == 7
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))


RUNNER = "tests.training.ddp_pretrain_runner"
# Largest |w_2ranks - w_1process| over every weight after 4 steps that still counts as the same
# run. Measured 2.4e-6 (float summation order: gathered logits, gloo's all-reduce); the broken
# variants below measured 4.7e-4 (gradients summed) to 6.0e-3 (no all-reduce).
DDP_MAX_DW = 2e-5


def _ddp_run(store, out, per_rank_batch, nproc, brk="none", *extra):
    """A 4-step pretrain through the runner (batch norm and dropout in eval mode on every side):
    its final weights (name -> tensor) and its per-step metrics log."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] \
        if nproc > 1 else [sys.executable]
    r = subprocess.run(launch + ["-m", RUNNER, "--break", brk, "--data", str(store), "--out", str(out), "--quiet"]
                       + _sets(f"batch_size={per_rank_batch}", "max_steps=4", *extra), cwd=REPO,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True)
    assert ck["step"] == 4
    log = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return ck["model"], log


def _discrepancy(run, ref) -> dict:
    (w, log), (w_ref, log_ref) = run, ref
    assert w.keys() == w_ref.keys() and len(log) == len(log_ref) == 4
    return {"max_dw": max(float((w[k].double() - w_ref[k].double()).abs().max()) for k in w
                          if w[k].is_floating_point()),
            "max_dloss": max(abs(a["loss"] - b["loss"]) for a, b in zip(log, log_ref)),
            "grad_norm_ratio": [a["grad_norm"] / b["grad_norm"] for a, b in zip(log, log_ref)]}


def _same_run(d: dict) -> bool:
    return (d["max_dw"] < DDP_MAX_DW and d["max_dloss"] < 1e-5
            and all(abs(r - 1) < 1e-4 for r in d["grad_norm_ratio"]))


@pytest.fixture(scope="module")
def one_process_reference(store, tmp_path_factory):
    """One process, the global batch of 2 ranks x 4 windows."""
    return _ddp_run(store, tmp_path_factory.mktemp("ddp_ref") / "run", 8, 1)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_on_the_global_batch(store, one_process_reference, tmp_path):
    # 2 ranks x 4 windows = 1 process x 8 windows: the same windows (sampler), the same
    # negatives (cross-rank gather), the same averaged gradient (DDP), hence the same weights
    run = tmp_path / "ddp"
    d = _discrepancy(_ddp_run(store, run, 4, 2), one_process_reference)
    assert _same_run(d), d
    m = json.loads((run / "manifest.json").read_text())
    assert m["world_size"] == 2 and m["metrics"]["steps"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("brk", ["allreduce", "sum", "sampler", "gather"])
def test_ddp_comparison_catches_broken_machinery(store, one_process_reference, tmp_path, brk):
    # allreduce: no gradient all-reduce; sum: gradients summed, not averaged; sampler: both ranks
    # get the same windows; gather: negatives from this rank only (gather_negatives=false)
    if brk == "gather":
        run = _ddp_run(store, tmp_path / brk, 4, 2, "none", "gather_negatives=false")
    else:
        run = _ddp_run(store, tmp_path / brk, 4, 2, brk)
    d = _discrepancy(run, one_process_reference)
    assert not _same_run(d), d
    if brk == "sum":        # AdamW after clipping is nearly blind to the gradient's scale
        assert d["max_dw"] > DDP_MAX_DW and all(abs(r - 2) < 1e-2 for r in d["grad_norm_ratio"]), d
    else:
        assert d["max_dw"] > 10 * DDP_MAX_DW, d      # visible in the weights themselves


def _first_loss(run):
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["loss"]


def test_frozen_ecg_from_checkpoint_uses_feature_cache(store, tmp_path):
    import shutil

    import numpy as np
    store_copy = tmp_path / "store"          # its own cache folder: the cache is altered below
    shutil.copytree(store, store_copy, ignore=shutil.ignore_patterns("ecg_features"))
    ecg = build_model("net1d-ecg-tiny")
    torch.save({"state_dict": {f"module.{k}": v for k, v in ecg.model.state_dict().items()}},
               tmp_path / "ecg.pth")
    args = lambda out: ["--data", str(store_copy), "--out", str(out), "--quiet"] + _sets(
        f"ecg_checkpoint={tmp_path / 'ecg.pth'}", "max_steps=1")
    run = tmp_path / "frozen"
    assert pretrain.main(args(run)) == 0
    caches = list((store_copy / "ecg_features").glob("*.npy"))
    assert len(caches) == 1
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert not any(k.startswith("ecg_encoder.") for k in ck["model"])     # frozen: not re-saved
    assert ck["model_config"]["ecg_frozen"] is True
    # training reads the cache, not the tower: the same cache gives the same first loss, and a
    # cache with altered values (same shape, note intact) gives another one
    assert pretrain.main(args(tmp_path / "again")) == 0
    assert _first_loss(tmp_path / "again") == _first_loss(run)
    arr = np.load(caches[0])
    np.save(caches[0], np.ascontiguousarray(arr[::-1]))
    assert pretrain.main(args(tmp_path / "altered")) == 0
    assert _first_loss(tmp_path / "altered") != _first_loss(run)


def test_store_without_ecg_is_a_clear_error(tmp_path, capsys):
    import numpy as np
    f = tmp_path / "ppg_only.csv"
    t = np.arange(100 * 60) / 100
    np.savetxt(f, np.sin(2 * np.pi * 1.2 * t)[:, None], header="ppg", comments="")
    prepare_main(["--source", "csv", "--input", str(f), "--out", str(tmp_path / "s"), "--quiet",
                  "--ppg-column", "ppg", "--fs", "100"])
    rc = pretrain.main(["--data", str(tmp_path / "s"), "--out", str(tmp_path / "r"), "--quiet"] + _sets())
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no ECG" in err[0]


def test_wrong_architecture_checkpoint_is_a_clear_error(store, tmp_path, capsys):
    torch.save(build_model("net1d-tiny").model.state_dict(), tmp_path / "not_ecg.pth")
    rc = pretrain.main(["--data", str(store), "--out", str(tmp_path / "r"), "--quiet"]
                       + _sets(f"ecg_checkpoint={tmp_path / 'not_ecg.pth'}", "ecg_model=net1d-ecg-small"))
    err = capsys.readouterr().err
    assert rc == 1 and ("missing" in err or "unexpected" in err or "shape" in err)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}

    class NaNAfter4(ClipLoss):
        def forward(self, p, e, s):
            calls["n"] += 1
            out = super().forward(p, e, s)
            if calls["n"] >= 5:
                out.loss = out.loss * float("nan")
            return out

    monkeypatch.setattr(pretrain, "ClipLoss", NaNAfter4)
    run = tmp_path / "nan"
    rc = pretrain.main(["--data", str(store), "--out", str(run), "--quiet"] + _sets())
    err = capsys.readouterr().err
    assert rc == 1 and "step 5" in err and "nan" in err.lower()
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == 4


def test_subject_grouped_batches():
    import numpy as np
    subjects = np.repeat(np.arange(5), 20)          # 5 subjects x 20 windows
    b = loop.epoch_batches(100, 8, epoch=3, seed=1, rank=0, world=1, subjects=subjects, per_subject=4)
    assert len(b) == 12 and all(len(x) == 8 for x in b)
    for x in b:                                      # two groups of 4 windows of one subject each
        assert len(set(subjects[x[:4]])) == 1 and len(set(subjects[x[4:]])) == 1
    flat = [i for x in b for i in x]
    assert len(set(flat)) == len(flat)
    assert b == loop.epoch_batches(100, 8, 3, 1, 0, 1, subjects, 4)        # deterministic
    assert b != loop.epoch_batches(100, 8, 4, 1, 0, 1, subjects, 4)        # reshuffled per epoch
    with pytest.raises(ValueError, match="multiple"):
        loop.epoch_batches(100, 6, 0, 0, 0, 1, subjects, 4)
