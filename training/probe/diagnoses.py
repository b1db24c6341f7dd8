"""`anyppg probe --diagnoses TABLE`: disease-wide probing of frozen PPG embeddings.

    anyppg probe --diagnoses dx.csv --store stores/ppgbp --encoder runs/bidmc/pretrain \\
                 --encoder random:net1d-small --encoder features --out runs/ppgbp/diagnoses
    anyppg probe --diagnoses dx.csv --source ppg-bp --input ../shared/data/ppg_bp ...  (prepared
                 on demand into --stores)

The table (CSV: subject, code[, description]; see diagnoses_codes) names each subject's codes;
ICD-10 codes are cut to three characters and grouped by chapter. Only subjects in both the
table and the store are probed; store subjects absent from the table are excluded (unknown,
not healthy), table ids absent from the store are listed, and so are subjects an encoder was
trained on (same dataset), dropped for every encoder alike.

Per subject, window embeddings are pooled (mean, or quality-weighted: windows with PPG quality
flags count `flagged_weight`). Then for every code with at least `min_positives` positive (and
negative) subjects: a logistic probe with subject-level cross-validation, its AUROC with a
bootstrap CI, the one-sided Mann-Whitney p of AUROC = 0.5 and, where age and sex are store
labels, demographics alone and PPG + demographics on the same folds (diagnoses_stats).
Benjamini-Hochberg across each encoder's codes gives q; a code is significant at q < fdr.

Writes DIR/diagnoses.csv (one row per encoder and code), DIR/diagnoses.md, DIR/diagnoses.json,
DIR/phewas.png and DIR/manifest.json, all into a temp folder renamed at the end.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anyppg.config import ConfigError, load_config
from anyppg.runs import atomic_dir, write_manifest
from edge_runtime.spec import FLAG_ECG_BAD, FLAG_TOO_SHORT, SPECS

from . import protocol as P
from .diagnoses_codes import DiagnosisTable, chapter_of, match_subjects, read_table
from .diagnoses_report import headline, write_reports
from .diagnoses_stats import ProbeSettings, benjamini_hochberg, probe_code
from .embedders import embed_windows, load_embedder, seen_subjects_in_store

DIAGNOSES_VERSION = 1
# Flags that leave the PPG itself usable: a tiled short record, a bad paired ECG.
BENIGN_FLAGS = FLAG_TOO_SHORT | FLAG_ECG_BAD


@dataclass
class DiagnosesConfig:
    """Defaults of `anyppg probe --diagnoses` (override with --set key=value)."""

    min_positives: int = 20          # codes with fewer positive (or negative) subjects: not tested
    folds: int = 5                   # outer subject-level CV folds
    inner_folds: int = 5             # inner CV choosing C on the training subjects
    # The probe protocol's C grid without C = 10, 100: near-unregularised fits of a 128-d
    # embedding on a few hundred subjects, never chosen here and the slowest to converge.
    grid: tuple[float, ...] = tuple(c for c in P.LOGISTIC_CS if c <= 1.0)
    bootstrap: int = 500             # rounds of the subject bootstrap (95% CIs)
    fdr: float = 0.05                # Benjamini-Hochberg level
    pool: str = "mean"               # 'mean' or 'quality'
    flagged_weight: float = 0.1      # pool=quality: weight of a window with PPG quality flags
    null_permutations: int = 100     # label permutations giving the null of each code's AUROC
    permutation_below: int = 30      # fewer positives: empirical permutation p, not its normal tail
    demographics: bool = True        # use store labels 'age' and 'sex' where present
    split: str = "all"               # 'all', 'train', 'val' or 'test' subjects of the store
    seed: int = 0
    batch_size: int = 256
    threads: int = 1

    def settings(self) -> ProbeSettings:
        return ProbeSettings(self.folds, self.inner_folds, tuple(self.grid), self.bootstrap,
                             self.null_permutations, self.permutation_below, self.seed)

    def check(self) -> None:
        if self.pool not in ("mean", "quality"):
            raise ConfigError(f"pool must be 'mean' or 'quality', got {self.pool!r}")
        if self.split not in ("all", "train", "val", "test"):
            raise ConfigError(f"split must be all/train/val/test, got {self.split!r}")
        if self.min_positives < 2 or self.folds < 2 or not 0 < self.fdr < 1 or self.null_permutations < 2:
            raise ConfigError("need min_positives >= 2, folds >= 2, 0 < fdr < 1 and null_permutations >= 2")


def log(msg: str) -> None:
    print(f"[diagnoses] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data
def resolve_store(args) -> Path:
    """The store folder: --store as given, or --input prepared once into --stores."""
    if args.store:
        return Path(args.store)
    if not args.input or not args.source:
        raise ValueError("give --store DIR, or --source SRC and --input PATH to prepare one")
    from .stores import ensure_store
    from .tasks import Task
    task = Task("diagnoses", args.source, str(Path(args.input).resolve()), "none", "binary", group="custom")
    path, why = ensure_store(task, Path(args.stores), args.spec)
    if path is None:
        raise ValueError(f"{args.input}: {why}")
    return path


@dataclass
class Cohort:
    """The windows of the probed subjects and what is known per subject.

    x (N, L) windows, flags (N,), row_subject (N,) index into `subjects`;
    demo (S, 2) age and sex per subject (NaN unknown) or None; codes: subject -> set of codes.
    """

    store_index: dict
    spec: object
    subjects: list[str]
    x: np.ndarray
    flags: np.ndarray
    row_subject: np.ndarray
    demo: np.ndarray | None
    codes: list[set[str]]
    report: dict


def _per_subject_label(store, name: str, rows: np.ndarray, inv: np.ndarray, n: int) -> np.ndarray:
    if name not in store.label_names:
        return np.full(n, np.nan)
    v = store.column(name)[rows].astype(float)
    out = np.full(n, np.nan)
    for i in range(n):
        vi = v[inv == i]
        vi = vi[np.isfinite(vi)]
        out[i] = vi.mean() if len(vi) else np.nan
    return out


def load_cohort(store_path: Path, table: DiagnosisTable, embedders, cfg: DiagnosesConfig) -> Cohort:
    """Match table and store, drop subjects any encoder saw, read their windows."""
    from training.data.store import WindowStore
    store = WindowStore(store_path, split=None if cfg.split == "all" else cfg.split)
    store_ids = np.array(store.subject_ids())
    present = sorted(set(store_ids.tolist()))
    mapping, unknown, how = match_subjects(table.subjects, present)
    in_table = {v: k for k, v in mapping.items()}
    excluded: set[str] = set()
    seen_report = {}
    for emb in embedders:
        ex, reasons = seen_subjects_in_store(getattr(emb, "seen", []) or [], store.index, present)
        seen_report[emb.name] = {"n_subjects": len(ex), "reasons": reasons,
                                 "seen_known": bool(getattr(emb, "seen_known", True))}
        excluded |= ex
    subjects = [s for s in present if s in in_table and s not in excluded]
    if len(subjects) < 2:
        raise ValueError(f"{table.path}: only {len(subjects)} subject(s) of the table are in the store "
                         f"{store_path} ({how}; e.g. table id {table.subjects[0]!r}, store id "
                         f"{present[0] if present else None!r})")
    pos = {s: i for i, s in enumerate(subjects)}
    rows = np.flatnonzero(np.isin(store_ids, subjects))
    inv = np.array([pos[s] for s in store_ids[rows]])
    demo = None
    if cfg.demographics:
        demo = np.stack([_per_subject_label(store, k, rows, inv, len(subjects)) for k in ("age", "sex")], 1)
        if not np.isfinite(demo).any():
            demo = None
    absent = [s for s in present if s not in in_table]
    report = {"store": str(store_path), "split": cfg.split, "matching": how,
              "subjects_probed": len(subjects), "windows": int(len(rows)),
              "store_subjects_not_in_table": len(absent), "examples_not_in_table": absent[:10],
              "table_ids_not_in_store": len(unknown), "examples_unknown_ids": unknown[:10],
              "seen_excluded": len(excluded & set(in_table)), "seen_by_encoder": seen_report,
              "table_rows": table.raw_rows, "duplicate_rows": table.duplicate_rows,
              "demographics": None if demo is None else
              {k: int(np.isfinite(demo[:, j]).sum()) for j, k in enumerate(("age", "sex"))}}
    return Cohort(store.index, store.spec, subjects, store.column("ppg")[rows], store.column("flags")[rows],
                  inv, demo, [table.codes[in_table[s]] for s in subjects], report)


def pool_embeddings(z: np.ndarray, row_subject: np.ndarray, n: int, flags: np.ndarray | None = None,
                    flagged_weight: float = 1.0) -> np.ndarray:
    """Per-subject (weighted) mean of window embeddings z (N, D) -> (S, D). With flags, windows
    whose flags go beyond BENIGN_FLAGS weigh flagged_weight."""
    w = np.ones(len(z))
    if flags is not None:
        w = np.where((flags.astype(int) & ~BENIGN_FLAGS) != 0, flagged_weight, 1.0)
    num = np.zeros((n, z.shape[1]))
    np.add.at(num, row_subject, z * w[:, None])
    den = np.bincount(row_subject, weights=w, minlength=n)
    if (den <= 0).any():
        raise ValueError("a subject has no window with positive weight (flagged_weight must be > 0)")
    return (num / den[:, None]).astype(np.float64)


# --------------------------------------------------------------------------- codes
def testable_codes(table: DiagnosisTable, cohort: Cohort, min_pos: int) -> tuple[list[dict], list[dict]]:
    """([{code, y}] to test, [{code, n_pos, n_neg, reason}] not tested), in chapter order."""
    tested, untested = [], []
    for code in table.all_codes():
        y = np.array([code in cs for cs in cohort.codes], int)
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        if n_pos < min_pos or n_neg < min_pos:
            untested.append({"code": code, "n_pos": n_pos, "n_neg": n_neg,
                             "reason": f"fewer than {min_pos} {'positive' if n_pos < min_pos else 'negative'} subjects"})
        else:
            tested.append({"code": code, "y": y})
    return tested, untested


def code_row(encoder: str, code: str, table: DiagnosisTable, r) -> dict:
    num, title = chapter_of(code, table.system[code])
    n = r.n_pos + r.n_neg
    row = {"encoder": encoder, "code": code, "description": table.descriptions.get(code, ""),
           "system": table.system[code], "chapter": num, "chapter_name": title,
           "n_pos": r.n_pos, "n_neg": r.n_neg, "prevalence": r.n_pos / n if n else None,
           "status": r.status, "p": r.p, "p_method": r.p_method, "p_mwu": r.p_mwu,
           "null_mean": r.null_mean, "null_sd": r.null_sd, "q": None, "significant": False}
    for m, key in (("ppg", "auroc"), ("demo", "auroc_demo"), ("ppg+demo", "auroc_ppg_demo")):
        ci = r.ci.get(m)
        row[key] = r.auroc.get(m)
        row[key + "_lo"], row[key + "_hi"] = (ci or [None, None])
    row["delta_vs_demo"] = r.delta
    row["delta_lo"], row["delta_hi"] = (r.delta_ci or [None, None])
    return row


def probe_encoder(emb, cohort: Cohort, table: DiagnosisTable, tested: list[dict],
                  cfg: DiagnosesConfig) -> tuple[list[dict], dict]:
    """All codes for one encoder: rows with q and significance filled in, and OOF scores."""
    t0 = time.perf_counter()
    z = embed_windows(emb, cohort.x, cohort.flags, cohort.spec)
    log(f"{emb.name}: embedded {len(cohort.x)} windows ({z.shape[1]}-d, {time.perf_counter() - t0:.1f} s)")
    feats = pool_embeddings(z, cohort.row_subject, len(cohort.subjects),
                            cohort.flags if cfg.pool == "quality" else None, cfg.flagged_weight)
    st = cfg.settings()
    rows, scores = [], {}
    for t in tested:
        r = probe_code(feats, cohort.demo, t["y"], st)
        rows.append(code_row(emb.name, t["code"], table, r))
        if r.scores is not None:
            scores[t["code"]] = r.scores
    q = benjamini_hochberg([r["p"] if r["p"] is not None else np.nan for r in rows])
    for r, qi in zip(rows, q):
        r["q"] = None if not np.isfinite(qi) else float(qi)
        r["significant"] = bool(r["q"] is not None and r["q"] < cfg.fdr)
    log(f"{emb.name}: {len(rows)} codes probed ({time.perf_counter() - t0:.1f} s); "
        + headline(rows, cfg.fdr)["text"])
    return rows, scores


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anyppg probe --diagnoses", description=__doc__.split("\n\n")[0])
    p.add_argument("--diagnoses", required=True, metavar="TABLE", help="CSV: subject, code[, description]")
    p.add_argument("--store", help="window store folder")
    p.add_argument("--source", help="with --input: a recording folder prepared on demand")
    p.add_argument("--input")
    p.add_argument("--stores", default="stores", help="where on-demand stores are kept")
    p.add_argument("--spec", default="small", choices=sorted(SPECS))
    p.add_argument("--encoder", action="append", required=True,
                   help="run folder, checkpoint, random:<model> or features (classical PPG "
                        "features, training.probe.feature_encoder); repeat: side by side")
    p.add_argument("--model", help="registry architecture of a raw state dict")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override DiagnosesConfig (min_positives, folds, bootstrap, fdr, pool, ...)")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args) -> dict:
    cfg = load_config(DiagnosesConfig(), "probe-diagnoses", None, args.set)
    cfg.check()
    table = read_table(args.diagnoses)
    store_path = resolve_store(args)
    embedders = []
    for e in args.encoder:
        emb = load_embedder(e, model=args.model, batch_size=cfg.batch_size, threads=cfg.threads)
        base, k = emb.name, 2
        while any(x.name == emb.name for x in embedders):
            emb.name, k = f"{base}#{k}", k + 1
        if not getattr(emb, "seen_known", True):
            log(f"WARNING: {emb.name}: no manifest says what it was trained on; no subjects can be excluded")
        embedders.append(emb)
    cohort = load_cohort(store_path, table, embedders, cfg)
    for emb in embedders:
        if getattr(emb, "spec", None) is not None:
            emb.spec.check_compatible(cohort.spec, f"store {store_path}")
    tested, untested = testable_codes(table, cohort, cfg.min_positives)
    log(f"{len(cohort.subjects)} subjects ({cohort.report['matching']}), {len(tested)} codes to test, "
        f"{len(untested)} below {cfg.min_positives} positives")
    result = {"diagnoses_version": DIAGNOSES_VERSION, "table": str(args.diagnoses), "config": asdict(cfg),
              "cohort": cohort.report, "untested": untested, "encoders": [], "rows": []}
    scores = {}
    for emb in embedders:
        rows, sc = probe_encoder(emb, cohort, table, tested, cfg)
        result["rows"] += rows
        result["encoders"].append({"name": emb.name, "info": getattr(emb, "info", {}),
                                   "headline": headline(rows, cfg.fdr)})
        scores[emb.name] = sc
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        write_reports(tmp, result, cfg.fdr)
        np.savez_compressed(tmp / "scores.npz", subjects=np.array(cohort.subjects),
                            **{f"{e}|{c}": s for e, sc in scores.items() for c, s in sc.items()})
        write_manifest(tmp, "probe-diagnoses", asdict(cfg), {"diagnoses": args.diagnoses,
                       "store_index": str(store_path / "index.json")},
                       {e["name"]: e["headline"] for e in result["encoders"]},
                       extra={"encoders": args.encoder, "cohort": cohort.report})
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as e:
        msg = str(e).strip().splitlines()
        print(f"anyppg probe --diagnoses: error: {msg[0] if msg else type(e).__name__}", file=sys.stderr)
        return 1
    if not args.quiet:
        for e in result["encoders"]:
            print(f"{e['name']}: {e['headline']['text']}")
        print(f"wrote {Path(args.out) / 'diagnoses.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
