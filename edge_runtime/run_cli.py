"""`anyppg run`: a recording through an exported int8 model, as a device would run it.

    anyppg run --model EXPORT --input recording.csv --fs 64 [--ppg-column NAME]
               [--time-column NAME [--time-unit ms]] [--out results.csv|results.json]
               [--backend xnnpack|ref|tflite-runtime] [--threads N] [--chunk-s S]
               [--accel-columns AX,AY,AZ]   (a model with an accel input; g)
               [--polarity up|down|auto]    (which way up the sensor reports the pulse;
                                             default: the sidecar's, else up)

Prints one row per window (status, reasons, HR (refined where the sidecar says so; the
network's own as hr_network), confidence, AF probability, the other heads)
and writes CSV or JSON (the JSON adds embeddings). Without --fs the rate comes from the file
(NPZ `fs`, WFDB header) or from its timestamps. Needs numpy, scipy and ai-edge-litert only.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from .interpreters import BACKENDS
from .polarity import POLARITIES
from .model import EdgeModel
from .recordings import read_recording
from .sidecar import ModelFileError
from .stream import PPGStream, WindowResult
from .timebase import InputError, rate_from_timestamps


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anyppg run", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="export folder or .tflite (sidecar beside or embedded)")
    p.add_argument("--input", required=True, help="CSV, CSV.GZ, NPZ or WFDB .hea")
    p.add_argument("--fs", type=str, default=None, help="sensor rate in Hz")
    p.add_argument("--ppg-column")
    p.add_argument("--time-column", help="place samples by these per-sample timestamps (seconds unless "
                   "--time-unit ms); a column named time/timestamp is otherwise only used for the rate")
    p.add_argument("--time-unit", choices=("s", "ms"), default="s")
    p.add_argument("--accel-columns", help="x,y,z accelerometer columns in g (CSV/NPZ), for a model "
                   "with an 'accel' input (edge_runtime.accel)")
    p.add_argument("--polarity", choices=POLARITIES, default=None,
                   help="which way up the sensor reports the pulse: up (the model's contract), down "
                        "(camera brightness, raw photocurrent: flipped), auto (voted by the model's "
                        "confidence; see edge_runtime.polarity). Default: the sidecar's \"polarity\" "
                        "default (auto where the export found the vote reliable), else up")
    p.add_argument("--out", help="results .csv or .json")
    p.add_argument("--backend", choices=BACKENDS, default="xnnpack")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunk-s", type=float, default=0.0,
                   help="push the file in chunks of this many seconds (0: one push); results are identical")
    p.add_argument("--quiet", action="store_true", help="no table on stdout")
    return p


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(results: list[WindowResult], names: list[str]) -> str:
    cols = ["window", "t_start_s", "status", "reasons"] + names
    rows = [cols] + [[_fmt(r.row().get(c)) for c in cols] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows)


def write_results(path: Path, results: list[WindowResult], meta: dict) -> None:
    """CSV (one row per window) or JSON (meta + rows + embeddings), written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".json":
        rows = [{**r.row(), "embedding": None if r.embedding is None else r.embedding.tolist()}
                for r in results]
        tmp.write_text(json.dumps({**meta, "windows": rows}, indent=1))
    else:
        keys: list[str] = []
        for r in results:
            keys += [k for k in r.row() if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in results:
            w.writerow({k: ("" if v is None else v) for k, v in r.row().items()})
        tmp.write_text(buf.getvalue())
    tmp.replace(path)


def run(args) -> tuple[list[WindowResult], dict]:
    model = EdgeModel.load(args.model, backend=args.backend, threads=args.threads)
    acc_cols = [c.strip() for c in args.accel_columns.split(",")] if args.accel_columns else None
    rec = read_recording(args.input, args.ppg_column, args.time_column, args.time_unit, acc_cols)
    takes = "accel" in model.inputs
    if takes and rec.accel is None:
        raise InputError(f"{args.model}: the model takes an 'accel' input: pass --accel-columns x,y,z (g)")
    if rec.accel is not None and not takes:
        raise InputError(f"{args.model}: the model takes no 'accel' input; drop --accel-columns")
    fs = args.fs if args.fs is not None else rec.fs
    if fs is None and rec.timestamps is not None:
        fs = rate_from_timestamps(rec.timestamps, f"{rec.path}")
    if fs is None:
        raise InputError(f"{rec.path}: the file gives no rate: pass --fs (or a --time-column)")
    stream = PPGStream(model, fs, polarity=args.polarity)
    results: list[WindowResult] = []
    # a time column found by its name only gives the rate; --time-column places samples by it
    x, t = rec.samples, (rec.timestamps if args.time_column else None)
    step = max(1, int(round(args.chunk_s * stream.plan.nominal_hz))) if args.chunk_s > 0 else len(x)
    for i in range(0, len(x), step):
        results += stream.push(x[i:i + step], None if t is None else t[i:i + step],
                               None if rec.accel is None else rec.accel[i:i + step])
    results += stream.close()
    meta = {"model": str(args.model), "sidecar": model.sidecar_source, "backend": args.backend,
            "input": str(rec.path), "column": rec.column, "fs_declared": float(fs),
            "fs_nominal": stream.plan.nominal_hz, "rate_note": stream.plan.note,
            "timestamps": t is not None, "outputs": model.output_names,
            "hr_refine": None if model.hr_refine is None else model.hr_refine.to_dict(),
            "polarity": stream.polarity.state(),
            "accel_columns": acc_cols}
    return results, meta


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        results, meta = run(args)
    except (InputError, ModelFileError) as e:
        print(f"anyppg run: error: {e}", file=sys.stderr)
        return 2
    names = [n for n in ("hr", "hr_network", "hr_confidence", "af_prob", "quality_prob", "rr", "sbp", "dbp")
             if any(n in r.values for r in results)]
    if not args.quiet:
        print(table(results, names))
    ok = sum(r.status == "ok" for r in results)
    hr = [r.values["hr"] for r in results if r.values.get("hr") is not None]
    note = f"; {meta['rate_note']}" if meta["rate_note"] else ""
    pol = meta["polarity"]
    if pol["mode"] == "auto" and pol["polarity"] == "down":
        note += ("; the pulse is upside down in this recording (auto polarity, decided over "
                 f"{pol['windows_voted']} windows): flipped; on a device negate the samples")
    print(f"{len(results)} windows, {ok} usable, {len(results) - ok} low quality"
          + (f", median HR {np.median(hr):.1f} bpm" if hr else "") + note, file=sys.stderr)
    if args.out:
        write_results(Path(args.out), results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
