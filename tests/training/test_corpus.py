"""The growable pretraining corpus: generator groups, real groups from a store, the mix."""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.spec import SPECS
from training.data.corpus import DEFAULT_LABELS, CorpusConfig, PairedCorpus, synthetic_group
from training.data.store import WindowStore


def test_synthetic_group_is_paired_deterministic_and_labelled():
    spec = SPECS["small"]
    a = synthetic_group(3, 4, 7000, spec, DEFAULT_LABELS)
    b = synthetic_group(3, 4, 7000, spec, DEFAULT_LABELS)
    c = synthetic_group(4, 4, 7000, spec, DEFAULT_LABELS)
    assert a["ppg"].shape == (4, spec.ppg_len) and a["ecg"].shape == (4, spec.ecg_len)
    assert a["labels"].shape == (4, len(DEFAULT_LABELS))
    np.testing.assert_array_equal(a["ppg"], b["ppg"])
    assert not np.allclose(a["ppg"], c["ppg"])
    lab = dict(zip(DEFAULT_LABELS, a["labels"].T))
    assert np.all((lab["hr"] > 35) & (lab["hr"] < 200)) and np.all(np.isfinite(lab["rr"]))
    assert np.all(np.isnan(lab["spo2"]))          # the generator makes no SpO2
    # z-scored per window, as the store's windows
    np.testing.assert_allclose(a["ppg"].mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(a["ppg"].std(1), 1, atol=1e-3)


def test_mix_ratio_real_rows_and_purity(paired_store):
    corpus = PairedCorpus(CorpusConfig(synthetic_fraction=0.5), store=paired_store)
    b = corpus.batch(5, 32, 8, seed=1)
    assert b["ppg"].shape == (32, 1, 1250) and b["ecg"].shape == (32, 1, 1250)
    subj = b["subject"].numpy()
    assert (subj[:16] < 0).all() and (subj[16:] >= 0).all()   # 2 generator groups, then 2 real
    for g in range(4):                                          # each group is one person
        assert len(set(subj[8 * g: 8 * g + 8])) == 1
    # a real window is a training window of the store, with its own ECG
    store = WindowStore(paired_store, split="train")
    ppg = np.stack([store.ppg(i) for i in range(len(store))])
    row = int(np.flatnonzero(np.all(ppg == b["ppg"][20, 0].numpy(), axis=1))[0])
    np.testing.assert_allclose(store.ecg(row), b["ecg"][20, 0].numpy(), atol=1e-6)
    # a pure function of (seed, step)
    again = corpus.batch(5, 32, 8, seed=1)
    assert all(np.array_equal(b[k].numpy(), again[k].numpy(), equal_nan=True) for k in b)
    assert not np.array_equal(corpus.batch(6, 32, 8, seed=1)["ppg"].numpy(), b["ppg"].numpy())


def test_synthetic_people_never_repeat():
    corpus = PairedCorpus(CorpusConfig(synthetic_fraction=1.0))
    seen = [set(corpus.batch(s, 8, 4, seed=0)["subject"].tolist()) for s in range(3)]
    assert all(len(x) == 2 for x in seen)
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])


def test_fraction_zero_is_real_only(paired_store):
    corpus = PairedCorpus(CorpusConfig(synthetic_fraction=0.0), store=paired_store)
    assert (corpus.batch(0, 16, 8, seed=0)["subject"] >= 0).all()
    assert corpus.real_subject_ids() == sorted(set(WindowStore(paired_store, "train").subject_ids()))


def test_bad_settings_are_one_line_errors(paired_store):
    with pytest.raises(ValueError, match="synthetic_fraction"):
        CorpusConfig(synthetic_fraction=1.5)
    with pytest.raises(ValueError, match="needs a store"):
        PairedCorpus(CorpusConfig(synthetic_fraction=0.5))
    corpus = PairedCorpus(CorpusConfig(synthetic_fraction=0.5), store=paired_store)
    with pytest.raises(ValueError, match="multiple"):
        corpus.batch(0, 30, 8, seed=0)
    with pytest.raises(ValueError, match="training windows"):
        corpus.batch(0, 2000, 1000, seed=0)
