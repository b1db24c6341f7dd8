"""HR on a wrist: the int8 student next to classical PPG estimators on the very same windows.

    python -m benchmarks.bench_wrist --model runs/wrist/export/model_int8.tflite \
        [--troika ../shared/data/troika_test] [--bidmc-store stores/bidmc] [--json out.json]
    python -m benchmarks.bench_wrist --model runs/wrist-accel/distill --against runs/wrist/distill \
        --troika ../shared/data/troika_test --store stores/synthetic-wrist-accel --split val

--model (and --against) is an int8 export (.tflite with its sidecar) or a distill/QAT run folder
(the float student, rows named 'float student'). A model with an `accel` input gets each set's
accelerometer through edge_runtime.accel (troika's own; a store's accel windows; zeros, a still
wrist, where a set has none, which is what the runtime feeds a watch without one). With
--against, both models run on the very same windows and the per-window |error| difference
(model - against) is bootstrapped over subjects, overall and on the 80% each keeps by its own
confidence.

Sets: `troika_test` (evaluation only: wrist PPG channel 1 during exercise, 10-s windows from
0 s, each labelled with the mean of the two 8-s ECG references that start at its start and 2 s
later; see training.data.readers.troika) and the test patients of a BIDMC window store.

Rows, all on the same windows: the int8 student (LiteRT reference kernels, inputs and outputs
read from the sidecar by name; where the sidecar has an "hr_refine" block its HR is the refined
one a device shows, edge_runtime.hr_refine on the int8 input, and the network's own HR gets a
row ', network hr' of its own), the spectral peak, NeuroKit2 and HeartPy
(training.probe.baselines), and predicting the training mean (the sidecar's recorded training
HR mean, or --train-mean). A classical method that fails on a window is scored both ways: MAE
on the windows it covered (with its coverage), and MAE with its failures imputed by the
training mean. The student's error-versus-coverage curve ranks windows by its own
`hr_confidence` (what a watch shows if it withholds its least sure windows), and the paired
difference to the best classical estimator is bootstrapped over subjects (95% CI).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_write_json
from edge_runtime import preprocess as pp
from edge_runtime.accel import accel_windows
from edge_runtime.af_beats import AFBeats, AFBeatsConfigError, with_af_beats
from edge_runtime.contract import (HR_BIN_MAX_BPM, HR_BIN_MIN_BPM, ContractError, check_ports,
                                   sidecar_inputs)
from edge_runtime.hr_refine import HRRefine, RefineConfigError, with_refined_hr
from edge_runtime.interpreters import dequantize, litert, quantize_input
from edge_runtime.spec import SignalSpec
from training.data import readers
from training.data.store import WindowStore
from training.data.synthetic_wrist import ACCEL_AXES
from training.probe.baselines import DISPLAY, hr_estimates

COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
CLASSICAL = ("hr-spectral", "hr-neurokit2", "hr-heartpy")


class BenchError(ValueError):
    """Bad input to the benchmark (one line, names the file)."""


# --------------------------------------------------------------------------- the model
def load_model(path: Path) -> tuple[object, dict]:
    """(LiteRT reference-kernel interpreter, sidecar) of an exported int8 student."""
    side_path = path.with_suffix(".json")
    if not path.is_file():
        raise BenchError(f"{path}: no such model file")
    if not side_path.is_file():
        raise BenchError(f"{side_path}: no sidecar beside the model")
    sidecar = json.loads(side_path.read_text())
    try:
        check_ports(sidecar, require=("hr", "hr_confidence"))
    except ContractError as e:
        raise BenchError(f"{side_path}: {e}") from None
    return litert(path, ref=True), sidecar


def run_model(it, sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run windows through the int8 model. inputs: name -> (N, L) or (N, L, C) float, for every
    input the sidecar declares. Returns name -> dequantised output (N, ...)."""
    ins = sidecar_inputs(sidecar)
    missing = [e["name"] for e in ins if e["name"] not in inputs]
    if missing:
        raise BenchError(f"the model needs input(s) {missing} that this set does not provide")
    outs = sidecar["outputs"]
    n = len(next(iter(inputs.values())))
    res: dict[str, list] = {o["name"]: [] for o in outs}
    for i in range(n):
        for e in ins:
            x = np.asarray(inputs[e["name"]][i], np.float32).reshape(e["shape"])
            it.set_tensor(e["index"], quantize_input(x, e["scale"], e["zero_point"]))
        it.invoke()
        for o in outs:
            res[o["name"]].append(dequantize(it.get_tensor(o["index"]), o["scale"], o["zero_point"]))
    flat = {k: np.concatenate(v).reshape(n, -1) for k, v in res.items()}
    return {k: v[:, 0] if v.shape[1] == 1 else v for k, v in flat.items()}


class FloatStudent:
    """A distill/QAT run's float student behind the interface of the int8 rows: `inputs`
    (sidecar-like entries by name), `run(inputs)`, `train_mean`, `decision`."""

    def __init__(self, path: Path):
        import torch  # noqa: F401  (float rows only: the int8 bench stays torch-free)
        from training.checkpoint import StudentLoadError, build_student, label_norm_simple, load_checkpoint
        try:
            ck, ck_path = load_checkpoint(path)
            key = "float_model" if ck.get("stage") == "qat" else "model"
            self.student = build_student(ck, ck_path, state_key=key)
        except StudentLoadError as e:
            raise BenchError(str(e).splitlines()[0]) from None
        self.spec = self.student.spec
        self.inputs = [{"name": "ppg"}] + ([{"name": "accel"}] if self.student.model.takes_accel else [])
        self.train_mean = label_norm_simple(self.student.label_norm).get("hr", {}).get("mean")
        self.decision = 0.5
        self.label = "float student"

    def run(self, inputs: dict[str, np.ndarray], flags: np.ndarray | None = None,
            batch: int = 256) -> dict[str, np.ndarray]:
        """The float network's outputs by name (no sidecar, so no HR refinement: `flags`, which
        only the refinement reads, is accepted for the int8 rows' interface)."""
        import torch
        outs: dict[str, list] = {}
        with torch.no_grad():
            for i in range(0, len(inputs["ppg"]), batch):
                x = torch.from_numpy(np.asarray(inputs["ppg"][i:i + batch], np.float32)).unsqueeze(1)
                a = inputs.get("accel")
                a = None if a is None else torch.from_numpy(
                    np.ascontiguousarray(np.asarray(a[i:i + batch], np.float32).transpose(0, 2, 1)))
                for k, v in self.student.model(x, a)._asdict().items():
                    outs.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in outs.items()}


class Int8Student:
    """An exported int8 student (LiteRT reference kernels), inputs and outputs by name."""

    def __init__(self, path: Path):
        self.it, self.sidecar = load_model(path)
        self.spec = SignalSpec.from_dict(self.sidecar["spec"])
        self.inputs = sidecar_inputs(self.sidecar)
        self.train_mean = (self.sidecar.get("label_norm") or {}).get("hr", {}).get("mean")
        self.decision = (self.sidecar.get("decision") or {}).get("hr_confidence_min", 0.5)
        try:
            self.refine = HRRefine.from_sidecar(self.sidecar)
        except (RefineConfigError, TypeError) as e:
            raise BenchError(f"{path.with_suffix('.json')}: hr_refine: {e}") from None
        try:
            self.af_beats = AFBeats.from_sidecar(self.sidecar)
        except (AFBeatsConfigError, TypeError) as e:
            raise BenchError(f"{path.with_suffix('.json')}: af_beats: {e}") from None
        self.label = "int8 student"

    def run(self, inputs: dict[str, np.ndarray], flags: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Outputs by name; with the sidecar's hr_refine, `hr` is the refined HR a device shows
        (on the int8 input minus its zero point; windows `flags` (N,) marks as padded keep the
        network's) and `hr_network` the network's own; with its af_beats block, the beat rate
        where the model calls AF (edge_runtime.af_beats)."""
        ppg = next(i for i in self.inputs if i["name"] == "ppg")
        out = with_refined_hr(run_model(self.it, self.sidecar, inputs), inputs["ppg"], ppg,
                              self.spec.ppg_fs, self.refine, flags)
        return with_af_beats(out, inputs["ppg"], ppg, self.spec.ppg_fs, self.af_beats, flags)


def open_model(path: str) -> FloatStudent | Int8Student:
    p = Path(path)
    return Int8Student(p) if p.suffix == ".tflite" else FloatStudent(p)


def model_inputs(model, data: dict) -> dict[str, np.ndarray]:
    """The inputs `model` declares, from a set: ppg, and accel (N, L, 3) from the set or zeros."""
    names = [e["name"] for e in model.inputs]
    out = {"ppg": data["ppg"]}
    if "accel" in names:
        out["accel"] = data["accel"] if "accel" in data else \
            np.zeros((len(data["ppg"]), data["ppg"].shape[1], 3), np.float32)
    return out


# --------------------------------------------------------------------------- the sets
def accel_window(rec, start: int, seg: int, spec: SignalSpec) -> np.ndarray:
    """(L, 3) accelerometer input of one window, by the one accel preprocessing
    (edge_runtime.accel: the PPG's resampler and band-pass, g / ACCEL_SCALE_G, clipped)."""
    axes = [rec.signals[ax] for ax in ACCEL_AXES]
    x, _ = accel_windows(np.stack([a.data[start:start + seg] for a in axes]), axes[0].fs, spec,
                         np.array([0.0]))
    return x[0].T


def troika_set(folder: str, spec: SignalSpec) -> dict:
    """Windows of troika_test: ppg (N, L), accel (N, L, 3), hr (N,), flags, subject (N,)."""
    ppg, acc, hr, flags, subj = [], [], [], [], []
    for unit in readers.discover("troika", folder):
        for rec in readers.read_unit("troika", unit):
            seg = int(round(rec.segment_s * rec.ppg.fs))
            for k, label in enumerate(rec.window_labels["hr"]):
                w = pp.ppg_windows(rec.ppg.data[k * seg:(k + 1) * seg], rec.ppg.fs, spec,
                                   pad_short=True, starts_s=np.array([0.0]))
                ppg.append(w["x"][0])
                flags.append(w["flags"][0])
                acc.append(accel_window(rec, k * seg, seg, spec))
                hr.append(label)
                subj.append(rec.subject_id)
    return {"ppg": np.stack(ppg), "accel": np.stack(acc), "hr": np.array(hr), "flags": np.array(flags),
            "subject": np.array(subj)}


def store_set(path: str, split: str, spec: SignalSpec, where: tuple[str, float] | None = None) -> dict:
    """Windows of one split of a window store with an HR label (and, with `where` = (label,
    value), only those whose label has that value, e.g. ('af', 1))."""
    st = WindowStore(path, split)
    spec.check_compatible(st.spec, f"store {path}")
    hr = st.column("hr")
    ok = np.isfinite(hr)
    if where is not None:
        if where[0] not in st.label_names:
            raise BenchError(f"{path}: no label {where[0]!r} to select windows by (labels: {st.label_names})")
        ok &= st.column(where[0]) == where[1]
    out = {"ppg": st.column("ppg")[ok], "hr": hr[ok], "flags": st.column("flags")[ok],
           "subject": np.array(st.subject_ids())[ok]}
    if st.has_accel:
        out["accel"] = st.column("accel")[ok].astype(np.float32).transpose(0, 2, 1)
    return out


# --------------------------------------------------------------------------- scoring
def coverage_curve(err: np.ndarray, conf: np.ndarray, coverages=COVERAGES) -> list[dict]:
    """MAE over the most confident fraction c of windows, for each c."""
    order = np.argsort(-conf, kind="stable")
    out = []
    for c in coverages:
        k = max(1, int(round(c * len(err))))
        out.append({"coverage": c, "mae": float(err[order[:k]].mean()),
                    "min_confidence": float(conf[order[k - 1]])})
    return out


def spectral_support(z: np.ndarray, hr: np.ndarray, fs: float, within_bpm: float = 5.0) -> np.ndarray:
    """Share of each window's DFT power (1-bpm grid over the contract's 30-230 bpm) within
    `within_bpm` of its shown hr: how much of the window's pulse band backs the number. (N,)"""
    g = np.arange(HR_BIN_MIN_BPM, HR_BIN_MAX_BPM + 1.0, 1.0)
    n = np.arange(z.shape[1])
    basis = np.exp(-2j * np.pi * (g[:, None] / 60.0) * n[None, :] / fs)
    power = np.abs(np.asarray(z, np.float64) @ basis.T) ** 2
    near = np.abs(g[None, :] - np.asarray(hr, np.float64).reshape(-1, 1)) <= within_bpm
    return (power * near).sum(1) / np.maximum(power.sum(1), 1e-300)


def subject_resamples(subject: np.ndarray, n: int = 2000, seed: int = 0):
    """n resamples of the windows, subjects drawn with replacement: each a row index array. The
    one bootstrap behind every CI over subjects here and in bench_af (same seed, same draws)."""
    subs = np.unique(subject)
    idx = [np.flatnonzero(subject == s) for s in subs]
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield np.concatenate([idx[j] for j in rng.integers(0, len(subs), len(subs))])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, subject: np.ndarray, n: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b and its 95% CI, resampling subjects with replacement."""
    d = a - b
    boots = [d[pick].mean() for pick in subject_resamples(subject, n, seed)]
    return float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def paired_models(data: dict, a: dict, b: dict, coverage: float = 0.8) -> dict:
    """Model a minus model b on the same windows: per-window |HR error| difference with its CI
    over subjects, on all windows and at `coverage` (each model keeping its own most confident
    windows: the difference of the two kept MAEs, CI by the same subject bootstrap)."""
    y, subj = data["hr"], data["subject"]
    ea, eb = np.abs(a["hr"] - y), np.abs(b["hr"] - y)
    m, lo, hi = paired_bootstrap(ea, eb, subj)
    keep = {}
    for k, o in (("a", a), ("b", b)):
        order = np.argsort(-o["hr_confidence"], kind="stable")
        keep[k] = np.zeros(len(y), bool)
        keep[k][order[:max(1, int(round(coverage * len(y))))]] = True
    boots = []
    for pick in subject_resamples(subj):
        ka, kb = keep["a"][pick], keep["b"][pick]
        if ka.any() and kb.any():
            boots.append(ea[pick][ka].mean() - eb[pick][kb].mean())
    cov = float(ea[keep["a"]].mean() - eb[keep["b"]].mean())
    return {"mae": [float(ea.mean()), float(eb.mean())], "diff": {"mean": m, "ci95": [lo, hi]},
            f"mae_at_{coverage:.0%}": [float(ea[keep["a"]].mean()), float(eb[keep["b"]].mean())],
            f"diff_at_{coverage:.0%}": {"mean": cov, "ci95": [float(np.percentile(boots, 2.5)),
                                                              float(np.percentile(boots, 97.5))]}}


def format_paired(r: dict, a: str, b: str) -> str:
    c = next(k for k in r if k.startswith("diff_at_"))
    m = next(k for k in r if k.startswith("mae_at_"))
    return (f"  paired on the same windows, {a} - {b}: MAE {r['mae'][0]:.2f} vs {r['mae'][1]:.2f}, "
            f"difference {r['diff']['mean']:+.2f} [{r['diff']['ci95'][0]:+.2f}, {r['diff']['ci95'][1]:+.2f}]; "
            f"at {c[8:]} coverage {r[m][0]:.2f} vs {r[m][1]:.2f}, difference {r[c]['mean']:+.2f} "
            f"[{r[c]['ci95'][0]:+.2f}, {r[c]['ci95'][1]:+.2f}] (95% CI over subjects)")


def score_set(name: str, data: dict, model_out: dict, train_mean: float,
              decision_min: float, label: str = "int8 student", fs: float = 125.0) -> dict:
    """All rows of one set (see the module docstring)."""
    y = data["hr"]
    est = hr_estimates(data["ppg"], data["flags"])
    rows: dict[str, dict] = {}
    err_student = np.abs(model_out["hr"] - y)
    conf = model_out["hr_confidence"]
    keep = conf >= decision_min
    rows[label] = {"mae": float(err_student.mean()), "coverage": 1.0,
                            "curve": coverage_curve(err_student, conf),
                            # the floor for any confidence: windows ranked by their own error
                            "ideal_curve": coverage_curve(err_student, -err_student),
                            # a candidate the rule rejected on validation (README): not what ships
                            "support_curve": coverage_curve(err_student, conf * spectral_support(
                                data["ppg"], model_out["hr"], fs)),
                            "share_off_by_20_bpm": float((err_student > 20.0).mean()),
                            "at_decision": {"threshold": decision_min, "coverage": float(keep.mean()),
                                            "mae": float(err_student[keep].mean()) if keep.any() else None}}
    if "hr_network" in model_out:       # the shipped number is refined: the network's own too
        rows[f"{label}, network hr"] = {"mae": float(np.abs(model_out["hr_network"] - y).mean()),
                                        "coverage": 1.0}
    imputed = {}
    for k in CLASSICAL:
        v = est[k]
        ok = np.isfinite(v)
        imputed[k] = np.abs(np.where(ok, v, train_mean) - y)
        rows[DISPLAY[k]] = {"mae": float(np.abs(v[ok] - y[ok]).mean()) if ok.any() else None,
                            "coverage": float(ok.mean()), "mae_imputed": float(imputed[k].mean())}
    rows["training mean"] = {"mae": float(np.abs(train_mean - y).mean()), "coverage": 1.0}
    best = min(CLASSICAL, key=lambda k: rows[DISPLAY[k]]["mae_imputed"])
    diff = paired_bootstrap(err_student, imputed[best], data["subject"])
    return {"set": name, "student": label, "windows": int(len(y)),
            "subjects": int(len(np.unique(data["subject"]))),
            "hr_range": [float(y.min()), float(y.max())], "rows": rows,
            "best_classical": DISPLAY[best],
            "student_minus_best_classical": {"mean": diff[0], "ci95": [diff[1], diff[2]]}}


def format_set(r: dict) -> str:
    lines = [f"{r['set']}: {r['windows']} windows, {r['subjects']} subjects, HR "
             f"{r['hr_range'][0]:.0f}-{r['hr_range'][1]:.0f} bpm",
             f"  {'HR MAE, bpm':<26}{'covered':>9}{'coverage':>10}{'imputed':>9}"]
    for name, row in r["rows"].items():
        mae = "n/a" if row["mae"] is None else f"{row['mae']:.2f}"
        imp = row.get("mae_imputed")
        lines.append(f"  {name:<26}{mae:>9}{row['coverage']:>10.1%}"
                     f"{'' if imp is None else f'{imp:.2f}':>9}")
    s = r["rows"][r.get("student", "int8 student")]
    lines.append("  student by its own confidence: " + ", ".join(
        f"{c['coverage']:.0%} -> {c['mae']:.2f}" for c in s["curve"]))
    lines.append("  ranked by hr_confidence x spectral support (rejected on validation, not shipped): " + ", ".join(
        f"{c['coverage']:.0%} -> {c['mae']:.2f}" for c in s["support_curve"]))
    lines.append("  the best any confidence could do (windows ranked by their own error): " + ", ".join(
        f"{c['coverage']:.0%} -> {c['mae']:.2f}" for c in s["ideal_curve"])
                 + f"; {s['share_off_by_20_bpm']:.0%} of windows off by > 20 bpm")
    d = s["at_decision"]
    mae = "n/a" if d["mae"] is None else f"{d['mae']:.2f}"
    lines.append(f"  at the sidecar's hr_confidence_min {d['threshold']:.2f}: coverage "
                 f"{d['coverage']:.1%}, MAE {mae}")
    b = r["student_minus_best_classical"]
    lines.append(f"  student - {r['best_classical']} (imputed), per-window |error|: {b['mean']:+.2f} "
                 f"bpm, 95% CI over subjects [{b['ci95'][0]:+.2f}, {b['ci95'][1]:+.2f}]")
    return "\n".join(lines)


def _short(path: str) -> str:
    """A model's name for a table: its folder and file (export files share one file name)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.suffix else p.name


def _where(text: str) -> tuple[str, float]:
    """--where LABEL=VALUE -> (label, value)."""
    label, sep, value = text.partition("=")
    try:
        return label.strip(), float(value)
    except ValueError:
        raise BenchError(f"--where {text!r}: expected LABEL=NUMBER, e.g. af=1") from None


def _sets(args, spec: SignalSpec) -> list[tuple[str, dict]]:
    sets = []
    if args.troika:
        sets.append(("troika_test", troika_set(args.troika, spec)))
    if args.bidmc_store:
        sets.append((f"BIDMC {args.split}", store_set(args.bidmc_store, args.split, spec)))
    where = _where(args.where) if args.where else None
    for path in args.store or ():
        st = WindowStore(path)
        name = f"{st.index.get('source', path)} {args.split}" + (f", {args.where}" if where else "")
        sets.append((name, store_set(path, args.split, spec, where)))
    if not sets:
        raise BenchError("nothing to score: give --troika, --bidmc-store and/or --store")
    return sets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_wrist", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model_int8.tflite (sidecar .json beside it), or a "
                    "distill/QAT run folder (the float student)")
    ap.add_argument("--against", default=None, help="a second model (same kinds) compared paired on the "
                    "same windows")
    ap.add_argument("--troika", default=None, help="troika_test folder (evaluation only)")
    ap.add_argument("--bidmc-store", default=None, help="BIDMC window store (its test split is used)")
    ap.add_argument("--store", action="append", help="another labelled window store (repeatable)")
    ap.add_argument("--split", default="test", help="store split to score (default test)")
    ap.add_argument("--where", default=None, help="only the --store windows whose label has this value, "
                    "LABEL=NUMBER (e.g. af=1: HR during atrial fibrillation)")
    ap.add_argument("--train-mean", type=float, default=None,
                    help="training HR mean (default: the sidecar's label_norm.hr.mean)")
    ap.add_argument("--invert", action="store_true",
                    help="score every set upside down (PPG sign flipped after preprocessing): what a "
                         "sensor of the other polarity gives, e.g. camera brightness")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    try:
        model = open_model(args.model)
        other = open_model(args.against) if args.against else None
        if other is not None:
            model.spec.check_compatible(other.spec, f"--against {args.against}")
        train_mean = args.train_mean if args.train_mean is not None else model.train_mean
        if train_mean is None:
            raise BenchError(f"{args.model}: the sidecar records no training HR mean; pass --train-mean")
        results = []
        for name, data in _sets(args, model.spec):
            if args.invert:
                name, data = f"{name}, inverted", {**data, "ppg": -data["ppg"]}
            out = model.run(model_inputs(model, data), data["flags"])
            results.append(score_set(name, data, out, float(train_mean), float(model.decision), model.label,
                                   float(model.spec.ppg_fs)))
            print(format_set(results[-1]), flush=True)
            if other is not None:
                results[-1]["against"] = {"model": args.against,
                                          **paired_models(data, out, other.run(model_inputs(other, data), data["flags"]))}
                print(format_paired(results[-1]["against"], _short(args.model), _short(args.against)),
                      flush=True)
    except (BenchError, readers.ReaderError, ValueError, FileNotFoundError) as e:
        print(f"bench_wrist: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        atomic_write_json(Path(args.json), {"model": args.model, "against": args.against,
                                            "train_mean": train_mean, "sets": results})
    return 0

if __name__ == "__main__":
    sys.exit(main())
