"""`anyppg probe`: frozen-embedding probes of PPG encoders on downstream tasks, with baselines.

    anyppg probe --encoder runs/bidmc/pretrain --encoder random:net1d-small \\
                 --tasks real --out runs/bidmc/probe

For every task: the task's window store is prepared on demand (cached under --stores, keyed by
source + input + spec), windows without a label are dropped, subjects any of the encoders was
trained on are dropped (same dataset: see embedders.seen_subjects_in_store), then every method
is scored on the same windows of the same subjects with the same grouped folds:

  encoders      frozen embedding -> StandardScaler -> ridge (alpha by inner grouped CV on MAE)
                / logistic (C by inner grouped CV on AUROC or macro-F1), 5-fold GroupKFold by
                subject, metrics on pooled out-of-fold predictions
  subject-mean  (regression) each held-out subject gets the mean label of the training
                subjects; 'prior' (classification): the training prevalence / majority class
  features      hand-made HRV + pulse-morphology features through the same linear protocol
  hr-*, rr-*    direct classical estimators (spectral peak, NeuroKit2, HeartPy; RIIV, RIAV,
                RIFV and their median) on the same windows; scored where they produce a value
                (coverage reported)

95% CIs: bootstrap over subjects (--bootstrap rounds, seeded). Skill: 1 - MAE/MAE_subject_mean
(regression), (AUROC - 0.5)/0.5 (binary), (macroF1 - F1_majority)/(1 - F1_majority)
(multi-class); a student "keeps 90% of the teacher's skill" when its skill >= 0.9 x teacher's.

Writes DIR/probe.json, DIR/probe.md, DIR/<task>.png, DIR/predictions/<task>.npz (pooled
out-of-fold predictions per method, for paired comparisons later) and DIR/manifest.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from anyppg.runs import atomic_write_json, atomic_write_text, write_manifest
from anyppg.stage import run_stage
from edge_runtime.spec import SPECS

from . import protocol as P
from .baselines import DIRECT
from .report import finite, plot_task, render_markdown, save_predictions
from .runner import run_task
from .stores import StoreData, ensure_store, log
from .tasks import SYNTHETIC_DEFAULT, describe_tasks, resolve_tasks, shared_data_dir

PROBE_VERSION = 1


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="anyppg probe", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Frozen-embedding linear probes of PPG encoders on downstream tasks, with "
                    "classical baselines, grouped CV by subject and subject-bootstrap CIs.",
        epilog="tasks:\n" + describe_tasks() + "\n\ngroups: real, synthetic, all\n\n"
               "custom tasks on your own data (one per --task; also allowed in --tasks when the\n"
               "input has no comma):\n"
               "  custom:<source>:<input>:<label>:<kind>[:<threshold>]\n"
               "  source: a `anyppg data prepare --source`; kind: regression|binary|multiclass;\n"
               "  threshold: binary label = (label >= threshold)\n"
               "  e.g. --task custom:csv:/data/my_ppg:hr:regression --reader-opt fs=100\n\n"
               "encoders: a run folder (manifest.json + checkpoints/latest.pt), a .pt/.pth\n"
               "checkpoint ('ppg_encoder' + 'model_config', or a raw state dict with --model), or\n"
               "random:<model>[:seed] (the same architecture untrained: the control).\n"
               "Subjects an encoder was trained on (its manifest's 'trained_on_subjects', same\n"
               "dataset) are removed from every method of that task.\n\n"
               f"real datasets are read from $ANYPPG_SHARED_DATA or {shared_data_dir()}")
    p.add_argument("--encoder", action="append", default=[],
                   help="encoder to probe (repeatable): run folder, checkpoint, random:<model> or "
                        "features (classical PPG features)")
    p.add_argument("--model", default=None, help="registry model of a raw state-dict checkpoint")
    p.add_argument("--seen", action="append", default=[],
                   help="a run folder or manifest.json whose 'store' + 'trained_on_subjects' count as "
                        "seen by every encoder (for bare checkpoints without a manifest; repeatable)")
    p.add_argument("--tasks", default="", help="comma-separated task names or groups (real, synthetic, all)")
    p.add_argument("--task", action="append", default=[], help="one more task (e.g. a custom: task)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--stores", default="stores", help="cache folder of prepared stores (default: stores)")
    p.add_argument("--reader-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option for the stores of custom tasks (data prepare --opt), e.g. "
                        "fs=100, ppg_column=pleth (repeatable)")
    p.add_argument("--spec", default="small", choices=sorted(SPECS), help="signal spec of the stores")
    p.add_argument("--synthetic-input", default=None,
                   help=f"generator parameters of the synthetic tasks (default {SYNTHETIC_DEFAULT})")
    p.add_argument("--baselines", default="all",
                   help="'all', 'none' or a comma list of features,hr,rr (the subject-mean / prior "
                        "reference is always computed)")
    p.add_argument("--folds", type=int, default=P.DEFAULT_FOLDS, help="outer grouped folds (default 5)")
    p.add_argument("--inner-folds", type=int, default=P.DEFAULT_FOLDS, help="inner grouped folds (default 5)")
    p.add_argument("--bootstrap", type=int, default=P.DEFAULT_BOOTSTRAP, help="bootstrap rounds (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="store preparation workers")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--list-tasks", action="store_true", help="print the task registry and exit")
    return p


def _parse_baselines(s: str) -> set[str]:
    known = {"features", "hr", "rr"}
    if s in ("all", ""):
        return known
    if s == "none":
        return set()
    got = {b.strip() for b in s.split(",") if b.strip()}
    bad = got - known
    if bad:
        raise ValueError(f"--baselines: unknown {sorted(bad)}; known: all, none, {', '.join(sorted(known))}")
    return got


def _load_embedders(args) -> list:
    """The --encoder embedders, uniquely named, with --seen runs added to what they saw."""
    from .embedders import load_embedder, seen_from_manifest
    reserved = {"subject-mean", "prior", "features", *DIRECT["hr"], *DIRECT["rr"]}
    embedders = []
    for e in args.encoder:
        emb = load_embedder(e, model=args.model, batch_size=args.batch_size, threads=args.threads,
                            device=args.device)
        if emb.name in reserved:
            emb.name = f"encoder:{emb.name}"
        base, k = emb.name, 2
        while any(x.name == emb.name for x in embedders):
            emb.name, k = f"{base}#{k}", k + 1
        embedders.append(emb)
        for sp in args.seen:
            mp = Path(sp) / "manifest.json" if Path(sp).is_dir() else Path(sp)
            if not mp.is_file():
                raise ValueError(f"--seen {sp}: no manifest.json")
            emb.seen = list(emb.seen) + seen_from_manifest(mp)
            emb.seen_known = True
        if not getattr(emb, "seen_known", True):
            log(f"WARNING: {emb.name}: no run manifest says what it was trained on; no subjects can be "
                "excluded (pass --seen RUN); results on its training data would be leaked")
        log(f"encoder {emb.name}: {emb.info}")
    return embedders


def _report_head(args, embedders: list) -> dict:
    return {
        "probe_version": PROBE_VERSION, "stage": "probe",
        "protocol": {"folds": args.folds, "inner_folds": args.inner_folds, "bootstrap": args.bootstrap,
                     "seed": args.seed, "ridge_alphas": list(P.RIDGE_ALPHAS), "logistic_Cs": list(P.LOGISTIC_CS),
                     "ci": "95% percentile bootstrap over subjects",
                     "outer_cv": "GroupKFold (regression) / StratifiedGroupKFold (classification) by subject",
                     "classifier": "LogisticRegression(class_weight='balanced'), F1 at p >= 0.5",
                     "seen_subjects": "subjects any encoder was trained on (same dataset) are dropped for all methods",
                     "skill": {"regression": "1 - MAE/MAE_subject_mean", "binary": "(AUROC-0.5)/0.5",
                               "multiclass": "(macroF1 - F1_majority)/(1 - F1_majority)"}},
        "encoders": [{"name": e.name, "info": getattr(e, "info", {}),
                      "seen_known": bool(getattr(e, "seen_known", True)),
                      "seen": [s.to_dict() for s in (getattr(e, "seen", []) or [])]} for e in embedders],
        "baselines": sorted(args.baselines),
        "tasks": {},
    }


def _one_task(t, path: Path, cache: dict, embedders: list, args, out: Path) -> tuple[dict, int]:
    """Result of one task (plot and predictions written); an error fails this task only."""
    try:
        if path not in cache:
            cache[path] = StoreData(path)
        res, arrays = run_task(t, cache[path], embedders, args)
        if not args.no_plots and res.get("status") == "ok":
            res["plot"] = plot_task(t, arrays, out)
        if arrays:
            (out / "predictions").mkdir(exist_ok=True)
            save_predictions(out / "predictions" / f"{t.name}.npz", arrays)
        return res, 0
    except Exception as e:   # one broken task must not hide the others' results
        import traceback
        traceback.print_exc()
        return {"task": t.to_dict(), "metric": t.metric, "status": f"error: {type(e).__name__}: {e}",
                "encoders": {}, "baselines": {}}, 1


def _write_outputs(report: dict, embedders: list, args, out: Path) -> None:
    atomic_write_json(out / "probe.json", report)
    atomic_write_text(out / "probe.md", render_markdown(report))
    metrics = {n: {m: r.get("value") for grp in ("encoders", "baselines") for m, r in t.get(grp, {}).items()}
               | {"status": t.get("status")} for n, t in report["tasks"].items()}
    inputs = {f"store:{n}": str(Path(t["store"]) / "index.json") for n, t in report["tasks"].items() if t.get("store")}
    for e in embedders:
        ck = getattr(e, "info", {}).get("checkpoint")
        if ck:
            inputs[f"encoder:{e.name}"] = ck
    cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()}
    write_manifest(out, "probe", cfg, inputs, metrics, extra={"probe": "probe.json", "report": "probe.md"})


def run(args) -> tuple[dict, int]:
    from .embedders import check_embedder_spec
    tasks = resolve_tasks(args.tasks, args.task, args.synthetic_input)
    if not tasks:
        raise ValueError("no tasks: give --tasks (e.g. synthetic, real, bidmc-hr) or --task")
    args.baselines = _parse_baselines(args.baselines)
    for e in args.encoder:
        check_embedder_spec(e)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Stores first (multiprocessing preparation before torch spins up its threads).
    store_of = {t.name: ensure_store(t, Path(args.stores), args.spec, args.workers, args.reader_opt)
                for t in tasks}
    embedders = _load_embedders(args)
    report = _report_head(args, embedders)
    cache: dict[Path, StoreData] = {}
    rc = 0
    for t in tasks:
        path, reason = store_of[t.name]
        log(f"task {t.name}")
        if path is None:
            report["tasks"][t.name] = {"task": t.to_dict(), "metric": t.metric, "status": reason,
                                       "encoders": {}, "baselines": {}}
            log(f"  {reason}")
            continue
        res, failed = _one_task(t, path, cache, embedders, args, out)
        rc = max(rc, failed)
        report["tasks"][t.name] = res
        log(f"  {res.get('status')}" + "".join(
            f"; {m} {r.get('value'):.3f}" for grp in ("encoders", "baselines")
            for m, r in res.get(grp, {}).items() if r.get("value") is not None))
    report["timings"] = {str(p): sd.timings for p, sd in cache.items()}
    report = finite(report)
    _write_outputs(report, embedders, args, out)
    return report, rc


def _wants_diagnoses(argv: list[str]) -> bool:
    return any(a == "--diagnoses" or a.startswith("--diagnoses=") for a in argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _wants_diagnoses(argv):          # `anyppg probe --diagnoses TABLE ...`: the disease table
        from . import diagnoses
        return diagnoses.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_tasks:
        print(describe_tasks())
        return 0
    if not args.out:
        parser.error("--out is required")
    result: dict = {}

    def body() -> str:
        report, result["rc"] = run(args)
        return (render_markdown(report).split("## Skill")[0].rstrip()
                + f"\n\nwrote {Path(args.out) / 'probe.json'}, probe.md and plots")

    rc = run_stage("anyppg probe", body, error_rc=2)
    return rc or result.get("rc", 0)


if __name__ == "__main__":
    sys.exit(main())
