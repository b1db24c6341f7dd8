"""How a device reads and withholds HR, chosen on the export store's validation windows.

Two sidecar blocks come from here, both measured on the decision split (never test windows)
with the QAT fake-quant model's own outputs:

    "hr_refine"  the spectral refinement of edge_runtime.hr_refine: sigma_bpm and power from a
                 small grid (radius 4 sigma), or no block where no setting lowers the HR MAE
    "decision"   hr_confidence_min: the lowest threshold at which the kept windows (refined HR)
                 have HR MAE <= hr_mae_target_bpm with at least min_coverage of them kept,
                 else the threshold keeping fallback_coverage (reported "target not met")
    "polarity"   the stream's default polarity (edge_runtime.polarity): "auto" where the
                 confidence vote over each split recording's first vote_windows usable windows
                 picks the right way up (both ways) on all but at most polarity_max_wrong of at
                 least polarity_min_recordings recordings, else "up". A recording declared
                 the wrong way up reads worse than a constant, one that auto misjudges likewise;
                 auto is the default only where it errs rarely.

The refinement is scored on the float windows; a device runs it on the int8 input, which
differs by the input's rounding only (the definition is scale-free).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyppg.stage import one_line
from edge_runtime.contract import DEFAULT_DECISION, HR_CONFIDENT_WITHIN_BPM
from edge_runtime.hr_refine import HRRefine, refine_hr
from edge_runtime.polarity import VOTE_WINDOWS, vote_right
from training.data.store import WindowStore

from .qat_model import QATModel


@dataclass
class DecisionConfig:
    split: str = "val"
    max_windows: int = 1024
    seed: int = 0
    hr_mae_target_bpm: float = HR_CONFIDENT_WITHIN_BPM / 2
    min_coverage: float = 0.5
    fallback_coverage: float = 0.8
    refine: bool = True
    refine_sigmas_bpm: tuple[float, ...] = (5.0, 7.5, 10.0, 15.0)
    refine_powers: tuple[float, ...] = (0.5, 1.0, 2.0)
    polarity_vote_windows: int = VOTE_WINDOWS
    polarity_max_wrong: float = 0.1
    polarity_min_recordings: int = 5


@torch.no_grad()
def decision_windows(cfg: DecisionConfig, m: QATModel, data: Path) -> dict[str, np.ndarray]:
    """Windows of the decision split with an HR label: x (N, L), y (N,) bpm, quality flags (N,)
    and the fake-quant model's hr (N,) and hr_confidence (N,). Raises LookupError (one line)
    where there are none."""
    try:
        st = WindowStore(data, split=cfg.split)
    except Exception as e:  # noqa: BLE001 — no such split: said in the report
        raise LookupError(one_line(e)) from None
    hr_col = st.column("hr") if "hr" in st.label_names else np.zeros(0)
    if "hr_confidence" not in m.student.model.output_fields or not np.isfinite(hr_col).any():
        raise LookupError("no hr_confidence output or no hr labels")
    rows = np.flatnonzero(np.isfinite(hr_col))
    rows = np.random.default_rng(cfg.seed).permutation(rows)[: cfg.max_windows]
    m.qg.eval()
    x = np.stack([st.ppg(int(r)) for r in rows]).astype(np.float32)
    hr, conf = [], []
    for i in range(0, len(rows), 256):
        o = m.qg(torch.from_numpy(x[i:i + 256]).unsqueeze(1))
        hr.append(o.hr.numpy())
        conf.append(o.hr_confidence.numpy())
    return {"x": x, "y": hr_col[rows].astype(np.float64), "hr": np.concatenate(hr).astype(np.float64),
            "conf": np.concatenate(conf), "fs": np.float64(st.spec.ppg_fs),
            "flags": st.column("flags")[rows].astype(np.int64)}


def choose_refine(cfg: DecisionConfig, w: dict[str, np.ndarray]) -> tuple[HRRefine | None, dict]:
    """The (sigma, power) of the grid with the lowest HR MAE, or None if none beats the
    network's own hr. Report: every candidate's MAE."""
    base = float(np.abs(w["hr"] - w["y"]).mean())
    rows = []
    for s in cfg.refine_sigmas_bpm:
        for p in cfg.refine_powers:
            r = HRRefine(sigma_bpm=float(s), power=float(p), radius_bpm=4.0 * float(s))
            mae = float(np.abs(refine_hr(w["x"], w["hr"], float(w["fs"]), r, w["flags"]) - w["y"]).mean())
            rows.append({"sigma_bpm": float(s), "power": float(p), "hr_mae": mae})
    best = min(rows, key=lambda r: r["hr_mae"])
    report = {"network_hr_mae": base, "grid": rows}
    if best["hr_mae"] >= base:
        return None, {**report, "status": "not used: no setting lowers the HR MAE"}
    chosen = HRRefine(sigma_bpm=best["sigma_bpm"], power=best["power"], radius_bpm=4.0 * best["sigma_bpm"])
    return chosen, {**report, "status": "used", "chosen": chosen.to_dict(), "hr_mae": best["hr_mae"]}


def choose_threshold(cfg: DecisionConfig, err: np.ndarray, conf: np.ndarray) -> tuple[float, dict]:
    """(hr_confidence_min, report) from per-window |HR error| and confidence (see module doc).
    Candidates are the output's own int8 grid (k/256): confidences bunch near 1."""
    curve = []
    for t in np.arange(256) / 256.0:
        keep = conf >= t
        curve.append({"threshold": float(t), "coverage": float(keep.mean()),
                      "hr_mae": float(err[keep].mean()) if keep.any() else None})
    ok = [c for c in curve if c["hr_mae"] is not None and c["hr_mae"] <= cfg.hr_mae_target_bpm
          and c["coverage"] >= cfg.min_coverage]
    fallback = [c for c in curve if c["coverage"] >= cfg.fallback_coverage]
    threshold = DEFAULT_DECISION["hr_confidence_min"]
    if ok:
        threshold, status = ok[0]["threshold"], "met"
    elif cfg.fallback_coverage > 0 and fallback:
        threshold = fallback[-1]["threshold"]
        status = f"target not met: threshold keeps {fallback[-1]['coverage']:.1%} of the windows"
    else:
        status = "default: target not met at any threshold"
    # the report keeps the curve where it changes (coverage steps), not all 256 rows
    curve = [c for i, c in enumerate(curve) if i == 0 or c["coverage"] != curve[i - 1]["coverage"]]
    return threshold, {"status": status, "hr_confidence_min": threshold, "hr_mae_all": float(err.mean()),
                       "curve": curve}


@torch.no_grad()
def choose_polarity(cfg: DecisionConfig, m: QATModel, data: Path) -> tuple[dict, dict]:
    """(sidecar "polarity", report): the vote run on each split subject's first
    `polarity_vote_windows` unflagged windows in time order, upright and flipped (the
    preprocessing is odd in its input, so a flipped recording's windows are -z)."""
    block = {"default": "up", "vote_windows": int(cfg.polarity_vote_windows)}
    try:
        st = WindowStore(data, split=cfg.split)
    except Exception as e:  # noqa: BLE001 — no such split: said in the report
        return block, {"status": f"default up: {one_line(e)}"}
    if "hr_confidence" not in m.student.model.output_fields or len(st) == 0:
        return block, {"status": "default up: no hr_confidence output or no windows"}
    codes, start, flags = st.subject_codes, st.column("start_s"), st.column("flags")
    m.qg.eval()
    per: list[dict] = []
    for c in np.unique(codes):
        rows = np.flatnonzero((codes == c) & (flags == 0))
        rows = rows[np.argsort(start[rows], kind="stable")][: cfg.polarity_vote_windows]
        if rows.size == 0:
            continue
        x = torch.from_numpy(np.stack([st.ppg(int(r)) for r in rows]).astype(np.float32)).unsqueeze(1)
        up, down = m.qg(x).hr_confidence.numpy(), m.qg(-x).hr_confidence.numpy()
        per.append({"subject": st.subjects[int(c)], "windows": int(rows.size),
                    "confidence_up": float(up.sum()), "confidence_down": float(down.sum()),
                    "right": vote_right(up, down)})
    wrong = sum(not r["right"] for r in per)
    ok = len(per) >= cfg.polarity_min_recordings and wrong <= cfg.polarity_max_wrong * len(per)
    block["default"] = "auto" if ok else "up"
    block["chosen_on"] = (f"vote right on {len(per) - wrong} of {len(per)} recordings of split "
                          f"{cfg.split!r}")
    return block, {"status": f"default {block['default']}", "recordings": len(per), "wrong": wrong,
                   "max_wrong": cfg.polarity_max_wrong, "min_recordings": cfg.polarity_min_recordings,
                   "per_recording": per}


def choose_decision(cfg: DecisionConfig, m: QATModel, data: Path) -> tuple[dict[str, dict], dict]:
    """(the sidecar blocks a device reads: "decision" and "polarity" always, "hr_refine" where a
    setting helps; report)."""
    decision = dict(DEFAULT_DECISION)
    blocks: dict[str, dict] = {"decision": decision}
    blocks["polarity"], polarity_report = choose_polarity(cfg, m, data)
    report: dict[str, Any] = {"split": cfg.split, "hr_mae_target_bpm": cfg.hr_mae_target_bpm,
                              "min_coverage": cfg.min_coverage, "polarity": polarity_report}
    try:
        w = decision_windows(cfg, m, data)
    except LookupError as e:
        return blocks, {**report, "status": f"default: {e}"}
    hr = w["hr"]
    if cfg.refine:
        chosen, report["hr_refine"] = choose_refine(cfg, w)
        if chosen is not None:
            hr = refine_hr(w["x"], w["hr"], float(w["fs"]), chosen, w["flags"])
            blocks["hr_refine"] = {**chosen.to_dict(), "chosen_on": f"{len(hr)} windows of split {cfg.split!r}"}
    decision["hr_confidence_min"], thr = choose_threshold(cfg, np.abs(hr - w["y"]), w["conf"])
    report.update({"n_windows": int(len(hr)), **thr})
    return blocks, report
