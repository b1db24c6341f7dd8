"""Shared fixtures (one exported student per session serves the quantisation, runtime and
firmware tests). Real recordings live in ../shared/data beside the project root; a fresh
clone of a user's may not have them, so every test that needs them skips with a reason."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from anyppg.runs import atomic_path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ANYPPG_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of one dataset under ../shared/data, or skip the test saying what is missing."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"real data not present: {p} (see ../shared/data/README.md)")
    return p


@pytest.fixture
def shared_data():
    return shared_dataset


def set_args(*items: str) -> list[str]:
    """['a=1', 'b=2'] -> ['--set', 'a=1', '--set', 'b=2'] for a stage's command line."""
    return [tok for it in items for tok in ("--set", it)]


def prepared_store(tmp_path_factory, name: str, source: str, input_: str):
    """A store made by `anyppg data prepare --source SOURCE --input INPUT` in a fresh temp folder."""
    from training.prepare import main as prepare_main
    out = tmp_path_factory.mktemp(name) / "store"
    assert prepare_main(["--source", source, "--input", input_,
                         "--out", str(out), "--quiet", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def paired_store(tmp_path_factory):
    """A small synthetic store with paired ECG (8 subjects x 2 min), prepared once per session."""
    return prepared_store(tmp_path_factory, "paired", "synthetic", "subjects=8,minutes=2,seed=11")


# ------------------------------------------------------------------ one tiny chain per session
def randomise_bn(model, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics, so folding is actually exercised."""
    import torch
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)


def write_distill_run(folder: Path, model_name: str = "student-tiny", seed: int = 0,
                      state: dict | None = None, extra: dict | None = None, **overrides) -> Path:
    """A run folder in `anyppg distill`'s checkpoint format (`overrides`: StudentConfig fields)."""
    import torch

    from training.models import build_model
    from training.models import student as student_lib  # noqa: F401  (registers students)
    torch.manual_seed(seed)
    entry = build_model(model_name, **overrides)
    if state is None:
        randomise_bn(entry.model, seed)
        entry.model.set_label_norm({"hr": (72.0, 12.0), "rr": (15.0, 3.0), "sbp": (118.0, 14.0),
                                    "dbp": (76.0, 9.0)})
        state = entry.model.state_dict()
    norm = {h: {"label": h, "mean": float(m), "std": float(s), "n_train": 10, "trained": True}
            for h, (m, s) in entry.model.label_norm().items()} if hasattr(entry.model, "label_norm") else {}
    ck = {"model": state, "model_name": model_name,
          "model_config": {"model": model_name, "ppg_config": entry.config, "embed_dim": entry.embed_dim},
          "spec": entry.spec.to_dict(), "label_norm": norm, "step": 0}
    ck.update(extra or {})
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "checkpoints" / "latest.pt") as tmp:
        torch.save(ck, tmp)
    (folder / "manifest.json").write_text(json.dumps({"stage": "distill"}))
    return folder


@pytest.fixture(scope="session")
def qstore(tmp_path_factory) -> Path:
    from training.prepare import main as prepare_main
    out = tmp_path_factory.mktemp("qstore") / "store"
    assert prepare_main(["--source", "synthetic", "--input", "subjects=8,minutes=2,seed=4",
                         "--out", str(out), "--quiet", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def distill_run(tmp_path_factory) -> Path:
    return write_distill_run(tmp_path_factory.mktemp("distill") / "run")


@pytest.fixture(scope="session")
def qat_run(tmp_path_factory, distill_run, qstore) -> Path:
    from quantization import qat
    out = tmp_path_factory.mktemp("qat") / "run"
    rc = qat.main(["--from", str(distill_run), "--data", str(qstore), "--out", str(out),
                   "--config", "tiny", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory, qat_run, qstore) -> Path:
    from quantization import export
    out = tmp_path_factory.mktemp("export") / "out"
    rc = export.main(["--from", str(qat_run), "--data", str(qstore), "--out", str(out),
                      "--config", "fast", "--set", "keep_raw=true", "--set", "af_beats_min_prob=0.95",
                      "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def test_windows(qstore) -> np.ndarray:
    from training.data.store import WindowStore
    return WindowStore(qstore, split=None).column("ppg")[:12].astype(np.float32)
