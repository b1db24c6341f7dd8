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
and its probe into OUT/synthetic/, and prints which planted codes were found.
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


def synthetic(out: Path, encoders: list[str], sets: list[str], subjects: int, seconds: float, seed: int) -> dict:
    from training.data.synthetic_cohort import write_cohort
    truth = write_cohort(out / "cohort", subjects=subjects, seconds=seconds, seed=seed, overwrite=True)
    res = _probe(out / "cohort" / "diagnoses.csv", out / "cohort" / "store", encoders, out / "probe", sets)
    print(f"synthetic cohort ({subjects} subjects x {seconds:g} s, seed {seed}): {out / 'probe'}")
    for r in res["rows"]:
        t = truth["conditions"][r["code"]]
        ta = "-" if t["trait_auroc"] is None else f"{t['trait_auroc']:.2f}"
        print(f"  {r['encoder']:24s} {r['code']:10s} {t['strength']:11s} planted-trait AUROC {ta:>4s}  "
              f"probe {r['auroc']:.3f} q={r['q']:.2g} {'FOUND' if r['significant'] else '-'}")
    return res


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
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out, encoders = Path(args.out), args.encoder or default_encoders()
    data = Path(args.data) if args.data else shared_data_dir() / "ppg_bp"
    try:
        if not data.exists():
            print(f"PPG-BP not found at {data}: skipped (see ../shared/data/README.md)")
        else:
            text, counts = ppgbp_table(data)
            atomic_write_text(out / "ppgbp_diagnoses.csv", text)
            print(f"PPG-BP diagnosis table {out / 'ppgbp_diagnoses.csv'}: {counts}")
            res = _probe(out / "ppgbp_diagnoses.csv", ppgbp_store(data, Path(args.stores)), encoders,
                         out / "ppgbp", args.set)
            print(f"PPG-BP ({res['cohort']['subjects_probed']} subjects): {out / 'ppgbp'}")
            _print(res)
        if args.synthetic:
            synthetic(out / "synthetic", encoders, args.set, args.subjects, args.seconds, args.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"bench_diagnoses: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
