"""The bundle's example loop (examples/anyppg_example.c) on the host: build it, feed it a
recording, read what it printed per window. What the bundle tests and
`benchmarks.bench_watch_parity` compare with edge_runtime.

    exe = build_host(bundle, out_dir)                  # -Werror; sanitizers optional
    rows = run(exe, x, work_dir)                       # [{'start', 'flags', 'show', ...}]
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from .dsp_check import HOST_FLAGS, SANITIZE, CheckError

RAW_NAME = "raw.f32"


def build_host(bundle: Path, out_dir: Path, sanitize: bool = False, compiler: str = "gcc") -> Path:
    """All of the bundle's src/ + the example, reading RAW_NAME from its working folder."""
    bundle, out_dir = Path(bundle), Path(out_dir)
    src = bundle / "src"
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / ("anyppg_example" + ("_san" if sanitize else ""))
    cmd = [compiler, *HOST_FLAGS, "-Wno-conversion", *(SANITIZE if sanitize else ()), f"-I{src}",
           f'-DEXAMPLE_RAW="{RAW_NAME}"', *map(str, sorted(src.glob("*.c"))),
           str(bundle / "examples" / "anyppg_example.c"), "-lm", "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines()
        raise CheckError(f"{bundle}: the example does not build: {lines[0] if lines else 'no message'}")
    return exe


def parse(stdout: str) -> list[dict]:
    """Per window: start, flags, each output's int8 codes by name, show and withheld (ints) and
    hr_bpm (float) where printed."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("window "):
            continue
        f = line.split()
        row: dict = {"start": int(f[3]), "flags": int(f[5])}
        for tok in f[6:]:
            name, _, vals = tok.partition("=")
            if name == "hr_bpm":
                row[name] = float(vals)
            elif name in ("show", "withheld"):
                row[name] = int(vals)
            else:
                row[name] = [int(v) for v in vals.split(",")]
        rows.append(row)
    return rows


def run(exe: Path, x: np.ndarray, work: Path, timeout_s: float = 600) -> list[dict]:
    """The example on sensor samples x (T,) (float32, as a driver delivers them) in work/."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    np.asarray(x, "<f4").tofile(work / RAW_NAME)
    res = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        out = res.stdout + res.stderr
        raise CheckError(f"{Path(exe).name} exited {res.returncode}: {(out.strip().splitlines() or ['?'])[-1]}")
    return parse(res.stdout)
