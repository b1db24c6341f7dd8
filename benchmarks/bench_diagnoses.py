"""Disease-wide probing demonstrated: PPG-BP's diagnoses, and a synthetic cohort with planted ones.

    python -m benchmarks.bench_diagnoses --out runs/diagnoses \\
        [--encoder random:net1d-small --encoder runs/bidmc/pretrain --encoder features] [--synthetic] [--set k=v ...]

PPG-BP: the subject table (`PPG-BP dataset.xlsx`, read through the PPG-BP reader) becomes a
diagnosis table with ICD-10 categories:

    Stage 1 / Stage 2 hypertension              I10  Essential (primary) hypertension
    Prehypertension                             R03  Abnormal blood-pressure reading, without diagnosis
    Diabetes column (all 'Type 2 Diabetes')     E11  Type 2 diabetes mellitus
    cerebral infarction                         I63  Cerebral infarction
    cerebrovascular disease, insufficiency of   I67  Other cerebrovascular diseases
      cerebral blood supply                          (I67.8 holds chronic cerebral ischaemia)

and subjects without any of them are in the table with no code (known, not diagnosed). The
store is `anyppg data prepare --source ppg-bp` (kept under --stores). Then `anyppg probe
--diagnoses` runs with every --encoder side by side and writes OUT/ppgbp/ (diagnoses.csv, .md,
.json, phewas.png). --synthetic also writes the planted cohort (training.data.synthetic_cohort)
and its probe into OUT/synthetic/ (OUT/synthetic/seed<N>/ for several --seeds), and prints which
planted codes were found. The synthetic test's check on five seeds:

    python -m benchmarks.bench_diagnoses --out runs/diagnoses --skip-ppgbp --synthetic --encoder features \\
        --subjects 400 --seeds 0,1,2,3,4 --codes I48,I50,E05,G20,K21,M54,F32,statin_use \\
        --set inner_folds=3 --set bootstrap=50 --set null_permutations=40 --set permutation_below=10 \\
        --set demographics=false
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from anyppg.runs import atomic_write_text
from training.data import readers
from training.probe.tasks import shared_data_dir

PPGBP_CODES = {
    "stage 1 hypertension": ("I10", "Essential (primary) hypertension"),
    "stage 2 hypertension": ("I10", "Essential (primary) hypertension"),
    "prehypertension": ("R03", "Abnormal blood-pressure reading, without diagnosis"),
    "type 2 diabetes": ("E11", "Type 2 diabetes mellitus"),
    "cerebral infarction": ("I63", "Cerebral infarction"),
    "cerebrovascular disease": ("I67", "Other cerebrovascular diseases"),
    "insufficiency of cerebral blood supply": ("I67", "Other cerebrovascular diseases"),
}


def ppgbp_table(folder: Path) -> tuple[str, dict[str, int]]:
    """The diagnosis CSV of PPG-BP (subject = the xlsx's subject_ID) and counts per code."""
    rows, counts, unmapped = [], {}, set()
    for unit in readers.discover("ppg-bp", str(folder)):
        rec = readers.read_unit("ppg-bp", unit)[0]
        sid = rec.subject_id.split("_", 1)[1]
        texts = [rec.meta.get("hypertension_class", "")] + list(rec.meta.get("comorbidities", []))
        codes = {}
        for t in filter(None, (s.strip().lower() for s in texts)):
            if t == "normal":
                continue
            if t not in PPGBP_CODES:
                unmapped.add(t)
                continue
            code, name = PPGBP_CODES[t]
            codes[code] = name
        rows += [(sid, c, n) for c, n in sorted(codes.items())] or [(sid, "", "")]
        for c in codes:
            counts[c] = counts.get(c, 0) + 1
    if unmapped:
        raise ValueError(f"{folder}: diagnosis texts without a code: {sorted(unmapped)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject", "code", "description"])
    w.writerows(rows)
    return buf.getvalue(), counts


def ppgbp_store(data: Path, stores: Path) -> Path:
    """`anyppg data prepare --source ppg-bp` once into stores/ppgbp-diagnoses."""
    out = stores / "ppgbp-diagnoses"
    if not (out / "index.json").is_file():
        from training import prepare
        if prepare.main(["--source", "ppg-bp", "--input", str(data), "--out", str(out), "--quiet",
                         "--workers", "1", "--overwrite"]) != 0:
            raise ValueError(f"{data}: could not prepare the PPG-BP store")
    return out


def _probe(table: Path, store: Path, encoders: list[str], out: Path, sets: list[str]) -> dict:
    from training.probe import diagnoses
    argv = ["--diagnoses", str(table), "--store", str(store), "--out", str(out), "--overwrite", "--quiet"]
    for e in encoders:
        argv += ["--encoder", e]
    for s in sets:
        argv += ["--set", s]
    if diagnoses.main(argv) != 0:
        raise ValueError(f"the probe of {table} failed (see above)")
    return json.loads((out / "diagnoses.json").read_text())


def _print(result: dict) -> None:
    for e in result["encoders"]:
        print(f"  {e['name']}: {e['headline']['text']}")
        for r in sorted((r for r in result["rows"] if r["encoder"] == e["name"]), key=lambda r: r["code"]):
            print(f"    {r['code']:10s} n+={r['n_pos']:4d} AUROC {r['auroc']:.3f} "
                  f"[{r['auroc_lo']:.3f}, {r['auroc_hi']:.3f}] p={r['p']:.2g} q={r['q']:.2g}"
                  f"{' *' if r['significant'] else ''}"
                  + (f"  age+sex {r['auroc_demo']:.3f}, PPG+age+sex {r['auroc_ppg_demo']:.3f}"
                     if r.get("auroc_demo") is not None else ""))


def _print_paired(probe_dir: Path, table: Path) -> None:
    print("  paired AUROC differences (95% CI, subject bootstrap; a CI that holds 0 is a tie):")
    for d in paired_deltas(probe_dir, table):
        lo, hi = d["ci"] or (float("nan"), float("nan"))
        print(f"    {d['code']:10s} {d['a']} - {d['b']}: {d['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
              f"{'' if d['ci'] is None or lo <= 0 <= hi else ' (CI excludes 0)'}")


def synthetic(out: Path, encoders: list[str], sets: list[str], subjects: int, seconds: float, seed: int,
              codes: list[str] | None = None) -> dict:
    """The planted cohort (only `codes`, if given) written to OUT/cohort and probed into OUT/probe."""
    from training.data.synthetic_cohort import DEFAULT_CONDITIONS, write_cohort
    conds = DEFAULT_CONDITIONS
    if codes:
        unknown = sorted(set(codes) - {c.code for c in conds})
        if unknown:
            raise ValueError(f"--codes: {unknown} are not conditions of the synthetic cohort")
        conds = tuple(c for c in conds if c.code in codes)
    truth = write_cohort(out / "cohort", subjects=subjects, seconds=seconds, seed=seed, conditions=conds,
                         overwrite=True)
    res = _probe(out / "cohort" / "diagnoses.csv", out / "cohort" / "store", encoders, out / "probe", sets)
    print(f"synthetic cohort ({subjects} subjects x {seconds:g} s, seed {seed}): {out / 'probe'}")
    for r in res["rows"]:
        t = truth["conditions"][r["code"]]
        ta = "-" if t["trait_auroc"] is None else f"{t['trait_auroc']:.2f}"
        oa = "" if t.get("observed_auroc") is None else f" (in the recording {t['observed_auroc']:.2f})"
        print(f"  {r['encoder']:24s} {r['code']:10s} {t['strength']:11s} planted-trait AUROC {ta:>4s}{oa}  "
              f"probe {r['auroc']:.3f} [{r['auroc_lo']:.3f}, {r['auroc_hi']:.3f}] q={r['q']:.2g} "
              f"{'FOUND' if r['significant'] else '-'}")
    return res


def paired_deltas(probe_dir: Path, table: Path, rounds: int = 1000, seed: int = 0) -> list[dict]:
    """AUROC(a) - AUROC(b) with a 95% subject-bootstrap CI for every code and pair of encoders of
    a finished probe folder, on its saved out-of-fold scores (same subjects, same folds)."""
    import numpy as np
    from training.probe.diagnoses_codes import match_subjects, read_table
    from training.probe.diagnoses_stats import paired_delta_ci
    from training.probe import protocol as P
    sc = np.load(probe_dir / "scores.npz")
    subjects = [str(s) for s in sc["subjects"]]
    t = read_table(table)
    mapping, _, _ = match_subjects(t.subjects, subjects)
    codes_of = {mapping[k]: v for k, v in t.codes.items() if k in mapping}
    by_code: dict[str, dict[str, np.ndarray]] = {}
    for key in sc.files:
        if "|" in key:
            enc, code = key.split("|", 1)
            by_code.setdefault(code, {})[enc] = sc[key]
    out = []
    for code, scores in sorted(by_code.items()):
        y = np.array([code in codes_of.get(s, set()) for s in subjects], int)
        encs = list(scores)
        for i, a in enumerate(encs):
            for b in encs[i + 1:]:
                ci = paired_delta_ci(y, scores[a], scores[b], rounds, seed)
                out.append({"code": code, "a": a, "b": b, "delta": P.auroc(y, scores[a]) - P.auroc(y, scores[b]),
                            "ci": ci})
    return out


def default_encoders() -> list[str]:
    runs = [p for p in ("runs/bidmc/pretrain", "runs/bidmc-diag/pretrain") if (Path(p) / "manifest.json").is_file()]
    return runs[:1] + ["random:net1d-small", "features"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_diagnoses", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/diagnoses")
    ap.add_argument("--data", default=None, help="PPG-BP folder (default: <shared data>/ppg_bp)")
    ap.add_argument("--stores", default="stores")
    ap.add_argument("--encoder", action="append",
                    help="default: runs/bidmc/pretrain if present, random:net1d-small, features")
    ap.add_argument("--set", action="append", default=[], help="DiagnosesConfig override for the probes")
    ap.add_argument("--synthetic", action="store_true", help="also the planted synthetic cohort")
    ap.add_argument("--subjects", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seeds", default="0", help="cohort seeds, comma-separated (one cohort and probe each)")
    ap.add_argument("--codes", default=None, help="only these planted conditions, comma-separated "
                    "(default: all of synthetic_cohort.DEFAULT_CONDITIONS)")
    ap.add_argument("--skip-ppgbp", action="store_true", help="only the synthetic cohort")
    ap.add_argument("--paired-only", action="store_true",
                    help="print the paired encoder differences of an existing OUT/ppgbp probe and exit")
    args = ap.parse_args(argv)
    out, encoders = Path(args.out), args.encoder or default_encoders()
    data = Path(args.data) if args.data else shared_data_dir() / "ppg_bp"
    try:
        if args.paired_only:
            _print_paired(out / "ppgbp", out / "ppgbp_diagnoses.csv")
            return 0
        if args.skip_ppgbp:
            pass
        elif not data.exists():
            print(f"PPG-BP not found at {data}: skipped (see ../shared/data/README.md)")
        else:
            text, counts = ppgbp_table(data)
            atomic_write_text(out / "ppgbp_diagnoses.csv", text)
            print(f"PPG-BP diagnosis table {out / 'ppgbp_diagnoses.csv'}: {counts}")
            res = _probe(out / "ppgbp_diagnoses.csv", ppgbp_store(data, Path(args.stores)), encoders,
                         out / "ppgbp", args.set)
            print(f"PPG-BP ({res['cohort']['subjects_probed']} subjects): {out / 'ppgbp'}")
            _print(res)
            _print_paired(out / "ppgbp", out / "ppgbp_diagnoses.csv")
        if args.synthetic:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
            codes = [c.strip() for c in args.codes.split(",")] if args.codes else None
            for seed in seeds:
                sub = out / "synthetic" / (f"seed{seed}" if len(seeds) > 1 else "")
                synthetic(sub, encoders, args.set, args.subjects, args.seconds, seed, codes)
    except (ValueError, FileNotFoundError) as e:
        print(f"bench_diagnoses: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
