"""Does the number on the watch match the number in the notebook? Whole recordings of a store's
split through two programs: the firmware bundle's example loop built on the host (the C
preprocessing, the generated int8 inference and anyppg_hr_show: the watch; bit-exact with the
Cortex-M4 build by the bundle tests) and edge_runtime's stream on the bundle's own .tflite
(LiteRT: the notebook), both with the pulse declared upright; the notebook once on LiteRT's
reference kernels (what TFLite Micro and the generated C reproduce) and once on XNNPACK (the
runtime's default, faster, with its own int8 rounding).

    anyppg firmware --from runs/wrist/af10mask/export --out runs/wrist/af10mask/firmware --sensor-fs 125
    python -m benchmarks.bench_watch_parity --firmware runs/wrist/af10mask/firmware \
        --store stores/bidmc --store stores/troika [--split test] [--json out.json]

Per store: windows cut by each (must be the same, at the same starts, with the same flags), the
windows whose decision differs (what is shown: everything, all but hr, or nothing),
|hr_watch - hr_notebook| over the windows both show an hr, and how many of those the notebook
showed at or above the sidecar's af_beats gate (counted beats unless under 3 peaks). A recording at another rate than the
bundle's sensor rate is first resampled to it (benchmarks.bench_rates.at_rate), as that sensor
would have sampled it. Where LiteRT and the generated C differ by one int8 step at a rounding tie
(README: 2 of 34,304 head values) a decision at a threshold can differ: counted, not hidden.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.model import EdgeModel
from edge_runtime.stream import run_recording
from firmware_bridge import example
from firmware_bridge.dsp_check import CheckError
from firmware_bridge.hr_check import SHOW_HR, SHOW_VALUES, WITHHELD

from .bench_rates import at_rate
from .store_recordings import BenchError, recordings, run_over_stores


def notebook_decision(r) -> tuple[int, int, float]:
    """(show bits, withheld bit, hr) of a stream WindowResult, in anyppg_hr_show's terms."""
    why = next((WITHHELD[w] for w in r.reasons if w in WITHHELD), WITHHELD["flags"] if r.reasons else 0)
    if r.status != "ok":
        return 0, why, float("nan")
    hr = r.values.get("hr")
    return (SHOW_VALUES | (SHOW_HR if hr is not None else 0), why,
            float("nan") if hr is None else float(hr))


def compare(watch: list[dict], notebook: list, name: str, af_gate: float | None = None) -> dict:
    """Window-by-window agreement of one recording (`af_gate`: the sidecar's af_beats gate, to
    count the windows the notebook showed an hr for at or above it)."""
    if len(watch) != len(notebook):
        raise BenchError(f"{name}: the watch cut {len(watch)} windows, the notebook {len(notebook)}")
    flags = sum(w["flags"] == r.flags for w, r in zip(watch, notebook))
    differ, diffs = [], []
    for k, (w, r) in enumerate(zip(watch, notebook)):
        show, why, hr = notebook_decision(r)
        if (w["show"], w["withheld"]) != (show, why):
            differ.append({"window": k, "watch": [w["show"], w["withheld"]], "notebook": [show, why]})
        elif show & SHOW_HR:
            diffs.append(abs(w["hr_bpm"] - hr))
    at_gate = sum(af_gate is not None and r.values.get("hr") is not None
                  and r.values.get("af_prob", 0.0) >= af_gate for r in notebook)
    return {"windows": len(watch), "flags_equal": flags, "decisions_differ": differ,
            "hr_shown_both": len(diffs), "hr_abs_diffs": diffs,
            "shown_hr": sum(bool(w["show"] & SHOW_HR) for w in watch), "hr_at_af_gate": at_gate}


def summary(rows: list[dict]) -> dict:
    diffs = np.array([d for r in rows for d in r["hr_abs_diffs"]])
    return {"windows": sum(r["windows"] for r in rows), "flags_equal": sum(r["flags_equal"] for r in rows),
            "decisions_differ": [d for r in rows for d in r["decisions_differ"]],
            "hr_shown_watch": sum(r["shown_hr"] for r in rows), "hr_shown_both": int(len(diffs)),
            "hr_at_af_gate": sum(r["hr_at_af_gate"] for r in rows),
            "hr_max_abs_diff_bpm": float(diffs.max()) if len(diffs) else None,
            "hr_mean_abs_diff_bpm": float(diffs.mean()) if len(diffs) else None}


def score(models: dict[str, EdgeModel], store: Path, split: str, exe: Path, fs: float) -> dict:
    """The store's split through the watch and through the notebook on each LiteRT backend."""
    rows: dict[str, list[dict]] = {b: [] for b in models}
    recs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for subject, x, rec_fs, _ in recordings(store, split):
            x = at_rate(x, rec_fs, fs).astype(np.float32)
            try:
                watch = example.run(exe, x, Path(tmp))
            except CheckError as e:
                raise BenchError(f"{store} {subject}: {e}") from None
            for b, m in models.items():
                notebook, _ = run_recording(m, x.astype(np.float64), fs, polarity="up")
                gate = m.af_beats.min_af_prob if m.af_beats is not None else None
                rows[b].append(compare(watch, notebook, f"{store} {subject}", gate))
            recs += 1
    if not recs:
        raise BenchError(f"{store}: no recordings in split {split!r}")
    return {"store": str(store), "split": split, "recordings": recs,
            "backends": {b: summary(r) for b, r in rows.items()}}


def describe(store: str, r: dict) -> str:
    lines = [f"{store} {r['split']}: {r['recordings']} recordings"]
    for b, s in r["backends"].items():
        hr = ("no hr shown" if s["hr_max_abs_diff_bpm"] is None else
              f"|hr watch - notebook| max {s['hr_max_abs_diff_bpm']:.4f}, mean {s['hr_mean_abs_diff_bpm']:.5f} bpm")
        lines.append(f"  notebook on LiteRT {b}: {s['windows']} windows, flags equal on {s['flags_equal']}, "
                     f"decisions differ on {len(s['decisions_differ'])}; hr shown by the watch on "
                     f"{s['hr_shown_watch']} (both on {s['hr_shown_both']}; at the AF gate "
                     f"{s['hr_at_af_gate']}); {hr}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench_watch_parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--firmware", required=True, help="an `anyppg firmware` bundle")
    p.add_argument("--store", action="append", required=True, help="a window store (repeatable)")
    p.add_argument("--split", default="test")
    p.add_argument("--backend", action="append", choices=("ref", "xnnpack"),
                   help="the notebook's LiteRT kernels (repeatable; default ref and xnnpack: "
                        "the reference kernels TFLite Micro matches, and `anyppg run`'s default)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    a.backend = list(dict.fromkeys(a.backend or ["ref", "xnnpack"]))
    bundle = Path(a.firmware)
    manifest = bundle / "manifest.json"
    if not manifest.is_file() or not (bundle / "model_int8.tflite").is_file():
        print(f"bench_watch_parity: error: {bundle}: not a firmware bundle (no manifest.json or "
              f"model_int8.tflite)", file=sys.stderr)
        return 2
    fs = float(json.loads(manifest.read_text())["metrics"]["sensor_fs"])
    with tempfile.TemporaryDirectory() as tmp:
        try:
            exe = example.build_host(bundle, Path(tmp))
        except CheckError as e:
            print(f"bench_watch_parity: error: {e}", file=sys.stderr)
            return 2
        tfl = str(bundle / "model_int8.tflite")
        others = {b: None for b in a.backend[1:]}

        def score_all(model: EdgeModel, store: Path) -> dict:
            for b in others:           # loaded once, after run_over_stores has checked the file
                others[b] = others[b] or EdgeModel.load(tfl, backend=b)
            return score({a.backend[0]: model, **others}, store, a.split, exe, fs)
        return run_over_stores("bench_watch_parity", tfl, a.store, a.json, score_all, describe,
                               backend=a.backend[0])


if __name__ == "__main__":
    raise SystemExit(main())
