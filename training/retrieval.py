"""PPG -> ECG retrieval on held-out patients, with the patient-matching oracle beside it.

Top-1 retrieval within shuffled batches of B pairs drawn from a handful of patients rewards a
model that only recognises the patient: it narrows B candidates down to that patient's windows.
So every figure comes with
  * chance            1 / B,
  * patient oracle    on the same batches, a model that knows each window's patient and picks
                      uniformly among that patient's ECG windows: mean of 1 / n_same_patient,
  * within-patient    batches made of one patient's windows only (only physiology that changes
                      between windows can solve them), with its own chance 1 / n,
and 95% CIs by bootstrap over patients (query hits resampled by patient).
"""
from __future__ import annotations

import numpy as np
import torch

from anyppg.stage import one_line
from training.data.store import WindowStore


@torch.no_grad()
def embed_pairs(model, store: WindowStore, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Normalised projections (N, P) of every PPG and ECG window of `store` (a PPGECGClip)."""
    model.eval()
    zp, ze = [], []
    for a in range(0, len(store), batch):
        idx = range(a, min(a + batch, len(store)))
        ppg = torch.from_numpy(np.stack([store.ppg(i) for i in idx])).unsqueeze(1)
        ecg = torch.from_numpy(np.stack([store.ecg(i) for i in idx]).astype(np.float32)).unsqueeze(1)
        out = model(ppg, ecg=ecg)
        zp.append(out.ppg.numpy())
        ze.append(out.ecg.numpy())
    return np.concatenate(zp), np.concatenate(ze)


def _subject_ci(hits: np.ndarray, subj: np.ndarray, rounds: int, rng) -> list[float]:
    """95% percentile CI of mean(hits) under resampling of subjects with replacement."""
    subs = np.unique(subj)
    per = [hits[subj == s] for s in subs]
    means = []
    for _ in range(rounds):
        pick = rng.integers(len(subs), size=len(subs))
        means.append(np.concatenate([per[k] for k in pick]).mean())
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def retrieval_scores(zp: np.ndarray, ze: np.ndarray, subjects: np.ndarray, batch: int = 64,
                     shuffles: int = 20, seed: int = 0, rounds: int = 500) -> dict:
    """Retrieval figures from projections zp, ze (N, P) and subject ids (N,). See module doc."""
    rng = np.random.default_rng(seed)
    n = len(zp)
    out: dict = {"n_windows": int(n), "n_subjects": int(len(np.unique(subjects))), "batch": batch}
    if n < batch:
        out["status"] = f"not measured: {n} windows are fewer than one batch of {batch}"
        return out
    hit, orc, qs = [], [], []
    for _ in range(shuffles):
        perm = rng.permutation(n)[: n // batch * batch].reshape(-1, batch)
        for idx in perm:
            sim = zp[idx] @ ze[idx].T
            hit.append(sim.argmax(1) == np.arange(batch))
            s = subjects[idx]
            orc.append(1.0 / (s[:, None] == s[None, :]).sum(1))
            qs.append(s)
    hit, orc, qs = np.concatenate(hit).astype(float), np.concatenate(orc), np.concatenate(qs)
    out["uniform"] = {"top1": float(hit.mean()), "ci": _subject_ci(hit, qs, rounds, rng),
                      "chance": 1.0 / batch, "patient_oracle": float(orc.mean()),
                      "batches": int(len(hit) // batch)}
    w_hit, w_chance, w_s = [], [], []
    for s in np.unique(subjects):
        idx = np.flatnonzero(subjects == s)
        for a in range(0, len(idx) - 1, batch):
            part = idx[a:a + batch]
            if len(part) < 2:
                continue
            sim = zp[part] @ ze[part].T
            w_hit.append(sim.argmax(1) == np.arange(len(part)))
            w_chance.append(np.full(len(part), 1.0 / len(part)))
            w_s.append(np.full(len(part), s))
    w_hit, w_chance, w_s = np.concatenate(w_hit).astype(float), np.concatenate(w_chance), np.concatenate(w_s)
    out["within_patient"] = {"top1": float(w_hit.mean()), "ci": _subject_ci(w_hit, w_s, rounds, rng),
                             "chance": float(w_chance.mean())}
    out["status"] = "ok"
    return out


def retrieval_report(model, store_path, split: str = "test", batch: int = 64, seed: int = 0) -> dict:
    """Retrieval of a PPGECGClip on one split of a paired store."""
    try:
        st = WindowStore(store_path, split=split)
    except (ValueError, FileNotFoundError) as e:
        return {"status": f"not measured: {one_line(e)}"}
    if len(st) == 0 or not st.has_ecg:
        return {"status": f"not measured: split {split!r} of {store_path} has no paired windows"}
    zp, ze = embed_pairs(model, st)
    res = retrieval_scores(zp, ze, np.array(st.subject_ids()), batch=batch, seed=seed)
    res["split"] = split
    return res
