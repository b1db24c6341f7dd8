"""The probe task registry: which dataset, which label, what kind of target, which metric.

A task names a data *source* (a `training.prepare --source`), the dataset's default input (a
folder under the shared data directory, or the synthetic generator's parameters), a label
column of the window store, and its kind:

    regression   ridge regression, metric MAE (lower is better)
    binary       logistic regression, metric AUROC (F1 reported too)
    multiclass   multinomial logistic regression, metric macro-F1

Binary labels that are window means of a 0/1 series (synthetic 'af', 'quality') are made
binary with `threshold`: label >= threshold -> 1.

Task selection strings (`resolve_tasks`): registry names ('bidmc-hr'), groups ('real',
'synthetic', 'all'), comma-separated lists of those, and custom tasks on a user's own data:

    custom:<source>:<input>:<label>:<kind>[:<threshold>]

e.g. `custom:csv:/data/mine:hr:regression` or `custom:ppg-bp:../shared/data/ppg_bp:age:regression`.
The input may itself contain ':' (it is everything between the source and the last two or
three fields); custom tasks with commas in their input (synthetic parameters) must be given
with `--task`, not inside a comma-separated `--tasks` list.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

KINDS = ("regression", "binary", "multiclass")
PRIMARY_METRIC = {"regression": "mae", "binary": "auroc", "multiclass": "macro_f1"}
SOURCES = ("synthetic", "bidmc", "wfdb", "ppg-bp", "liu2022", "vitaldb", "csv")

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC_DEFAULT = "subjects=40,minutes=4,seed=123"

LIU_RHYTHMS = ("sinus", "PVC", "PAC", "VT", "SVT", "AF")


def shared_data_dir() -> Path:
    """Where the real datasets live: $ANYPPG_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("ANYPPG_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Task:
    """One downstream probe.

    name:       registry key ('bidmc-hr')
    source:     window-store source (training.prepare --source)
    input:      dataset folder relative to the shared data dir ('bidmc'), an absolute path, or
                for synthetic the generator parameters
    label:      store label column
    kind:       'regression', 'binary' or 'multiclass'
    unit:       label unit, for tables and plots
    threshold:  binary tasks: label >= threshold -> 1 (None: label must already be 0/1)
    classes:    multiclass: class names, index = label value
    group:      'real' or 'synthetic' (or 'custom')
    plot:       'bland-altman', 'scatter', 'roc', 'confusion' or None
    baselines:  signal-processing baselines that estimate this label directly ('hr', 'rr')
    note:       one line on what the label is
    """

    name: str
    source: str
    input: str
    label: str
    kind: str
    unit: str = ""
    threshold: float | None = None
    classes: tuple[str, ...] = ()
    group: str = "real"
    plot: str | None = None
    baselines: tuple[str, ...] = ()
    note: str = ""
    extra_metrics: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def metric(self) -> str:
        return PRIMARY_METRIC[self.kind]

    def resolved_input(self) -> str:
        """The input to prepare the store from: synthetic parameters as given, paths absolute."""
        if self.source == "synthetic":
            return self.input
        p = Path(self.input).expanduser()
        if not p.is_absolute():
            p = shared_data_dir() / p if self.group != "custom" else Path.cwd() / p
        return str(p.resolve())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["metric"] = self.metric
        d["classes"] = list(self.classes)
        d["baselines"] = list(self.baselines)
        d["extra_metrics"] = list(self.extra_metrics)
        return d


def _reg(name, source, folder, label, unit, plot, baselines=(), note="", group="real"):
    return Task(name, source, folder, label, "regression", unit=unit, plot=plot,
                baselines=baselines, note=note, group=group)


TASKS: dict[str, Task] = {t.name: t for t in [
    _reg("bidmc-hr", "bidmc", "bidmc", "hr", "bpm", "bland-altman", ("hr",),
         "ECG heart rate of the ICU monitor, mean over the window"),
    _reg("bidmc-rr", "bidmc", "bidmc", "rr_breaths", "breaths/min", "bland-altman", ("rr",),
         "respiratory rate from annotator 1's breath marks (mean instantaneous rate in the window)"),
    _reg("bidmc-spo2", "bidmc", "bidmc", "spo2", "%", "scatter", (),
         "monitor SpO2 (from a red/IR pair the single-channel PPG does not have)"),
    _reg("ppgbp-sbp", "ppg-bp", "ppg_bp", "sbp", "mmHg", "scatter", (),
         "cuff systolic BP, one per subject; 2.1 s segments tiled to 10 s"),
    _reg("ppgbp-dbp", "ppg-bp", "ppg_bp", "dbp", "mmHg", "scatter", (),
         "cuff diastolic BP, one per subject; 2.1 s segments tiled to 10 s"),
    _reg("ppgbp-hr", "ppg-bp", "ppg_bp", "hr", "bpm", "bland-altman", ("hr",),
         "heart rate from the spreadsheet, one per subject (not measured on the segment)"),
    Task("ppgbp-hypertension", "ppg-bp", "ppg_bp", "hypertension", "binary", plot="roc",
         note="stage 1 or 2 hypertension vs normal/prehypertension"),
    Task("liu-af", "liu2022", "liu2022_arrhythmia", "af", "binary", plot="roc",
         extra_metrics=("f1",), note="AF vs any other rhythm (cardiologists reading ECG)"),
    Task("liu-rhythm", "liu2022", "liu2022_arrhythmia", "rhythm", "multiclass", plot="confusion",
         classes=LIU_RHYTHMS, note="6 rhythms: sinus, PVC, PAC, VT, SVT, AF"),
    _reg("synthetic-hr", "synthetic", SYNTHETIC_DEFAULT, "hr", "bpm", "bland-altman", ("hr",),
         group="synthetic", note="simulated pulse rate"),
    _reg("synthetic-rr", "synthetic", SYNTHETIC_DEFAULT, "rr", "breaths/min", "bland-altman",
         ("rr",), group="synthetic", note="simulated respiration rate"),
    _reg("synthetic-sbp", "synthetic", SYNTHETIC_DEFAULT, "sbp", "mmHg", "scatter",
         group="synthetic", note="simulated SBP (via pulse arrival time and pulse shape)"),
    Task("synthetic-af", "synthetic", SYNTHETIC_DEFAULT, "af", "binary", threshold=0.5,
         group="synthetic", plot="roc", extra_metrics=("f1",),
         note="AF for at least half of the window"),
    Task("synthetic-quality", "synthetic", SYNTHETIC_DEFAULT, "quality", "binary", threshold=0.5,
         group="synthetic", plot="roc",
         note="1 = artefact-free for at least half of the window (motion, saturation)"),
]}

GROUPS = {
    "real": [n for n, t in TASKS.items() if t.group == "real"],
    "synthetic": [n for n, t in TASKS.items() if t.group == "synthetic"],
    "all": list(TASKS),
}


def parse_custom(spec: str) -> Task:
    """`custom:<source>:<input>:<label>:<kind>[:<threshold>]` -> Task."""
    parts = spec.split(":")
    if parts[0] != "custom" or len(parts) < 5:
        raise ValueError(f"custom task {spec!r}: expected custom:<source>:<input>:<label>:<kind>[:<threshold>]")
    source = parts[1]
    threshold = None
    if parts[-1] in KINDS:
        label, kind, inp = parts[-2], parts[-1], ":".join(parts[2:-2])
    elif len(parts) >= 6 and parts[-2] in KINDS:
        label, kind, inp = parts[-3], parts[-2], ":".join(parts[2:-3])
        try:
            threshold = float(parts[-1])
        except ValueError:
            raise ValueError(f"custom task {spec!r}: threshold {parts[-1]!r} is not a number") from None
    else:
        raise ValueError(f"custom task {spec!r}: kind must be one of {', '.join(KINDS)}")
    if source not in SOURCES:
        raise ValueError(f"custom task {spec!r}: source must be one of {', '.join(SOURCES)}")
    if not label or not inp:
        raise ValueError(f"custom task {spec!r}: empty input or label")
    if threshold is not None and kind != "binary":
        raise ValueError(f"custom task {spec!r}: a threshold only applies to binary tasks")
    name = f"custom-{source}-{label}"
    plot = {"regression": "scatter", "binary": "roc", "multiclass": "confusion"}[kind]
    baselines = (("hr",) if label in ("hr", "pulse") else ("rr",) if label.startswith("rr") else ()) \
        if kind == "regression" else ()
    return Task(name, source, inp, label, kind, threshold=threshold, group="custom", plot=plot,
                baselines=baselines, note=f"user task on {inp}")


def resolve_tasks(selection: str | None = None, custom: list[str] | None = None,
                  synthetic_input: str | None = None) -> list[Task]:
    """Tasks from a comma-separated selection plus `custom` specs (one task per string).

    synthetic_input replaces the generator parameters of the registered synthetic tasks.
    Duplicates are dropped, order kept.
    """
    names: list[Task] = []
    for tok in [t.strip() for t in (selection or "").split(",") if t.strip()]:
        if tok in GROUPS:
            names += [TASKS[n] for n in GROUPS[tok]]
        elif tok in TASKS:
            names.append(TASKS[tok])
        elif tok.startswith("custom:"):
            names.append(parse_custom(tok))
        else:
            raise ValueError(f"unknown task {tok!r}; known: {', '.join(TASKS)}, groups "
                             f"{', '.join(GROUPS)}, or custom:<source>:<input>:<label>:<kind>")
    for c in custom or []:
        names.append(TASKS[c] if c in TASKS else parse_custom(c))
    if synthetic_input:
        names = [replace(t, input=synthetic_input) if t.source == "synthetic" and t.group == "synthetic"
                 else t for t in names]
    out: list[Task] = []
    for t in names:
        if any(o == t for o in out):
            continue
        # Two custom tasks may share a name (same source and label, other inputs): number them.
        name, k = t.name, 2
        while any(o.name == name for o in out):
            name, k = f"{t.name}-{k}", k + 1
        out.append(replace(t, name=name) if name != t.name else t)
    return out


def describe_tasks() -> str:
    """One line per registered task, for --help / --list-tasks."""
    lines = []
    for t in TASKS.values():
        extra = f", label >= {t.threshold}" if t.threshold is not None else ""
        lines.append(f"  {t.name:<20} {t.kind:<10} {t.metric:<8} {t.source}:{t.label}{extra} - {t.note}")
    return "\n".join(lines)
