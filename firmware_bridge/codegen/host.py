"""Build and run generated inference on the host with gcc (the C path tests and benchmarks
compare against TensorFlow Lite Micro's reference kernels)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import C_DIR, generate_inference
from .emit import c_ident

SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")


def host_compiler() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def _ports_header(facts: dict) -> str:
    names = list(facts["inputs"])
    lens = ", ".join(str(facts["inputs"][n]["len"]) for n in names)
    binds, off = [], 0
    for n in names:
        binds.append(f"(in).{c_ident(n)} = (buf) + {off};")
        off += facts["inputs"][n]["len"]
    return (f"#define ANYPPG_HOST_IN_LENS {{{lens}}}\n"
            f"#define ANYPPG_HOST_BIND(in, buf) do {{ {' '.join(binds)} }} while (0)\n")


class HostModel:
    """Generated inference compiled for this machine: run(inputs) -> {output name: (N, len)}."""

    def __init__(self, model_bytes: bytes, sidecar: dict, work: Path | None = None, *,
                 sanitize: bool = False, opt: str = "-O2", fuse: bool = True, extra=()):
        cc = host_compiler()
        if cc is None:
            raise RuntimeError("no host C compiler (gcc) found")
        self._tmp = None
        if work is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="anyppg_cg_")
            work = Path(self._tmp.name)
        self.work = Path(work)
        self.facts = generate_inference(model_bytes, sidecar, self.work, fuse=fuse)
        (self.work / "anyppg_model_host_ports.h").write_text(_ports_header(self.facts))
        shutil.copyfile(C_DIR / "anyppg_model_host.c", self.work / "anyppg_model_host.c")
        self.exe = self.work / "model_host"
        cmd = [cc, opt, "-std=c11", "-Wall", "-Wextra", "-Werror", *(SANITIZE if sanitize else ()),
               *extra, "-I", str(self.work), *(str(self.work / f) for f in
                                               ("anyppg_model.c", "anyppg_nn.c", "anyppg_model_host.c")),
               "-o", str(self.exe)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"host build failed: {res.stderr.strip().splitlines()[:3]}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """inputs: name -> int8 (N, len) (or any shape with N first)."""
        names = list(self.facts["inputs"])
        arrs = [np.asarray(inputs[n], np.int8).reshape(len(inputs[n]), -1) for n in names]
        n = len(arrs[0])
        blob = np.concatenate(arrs, axis=1).tobytes()
        fi, fo = self.work / "in.bin", self.work / "out.bin"
        fi.write_bytes(blob)
        res = subprocess.run([str(self.exe), str(fi), str(fo)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"host run failed ({res.returncode}): {res.stderr.strip()[:2000]}")
        outs = np.frombuffer(fo.read_bytes(), np.int8)
        lens = [self.facts["outputs"][k]["len"] for k in self.facts["outputs"]]
        outs = outs.reshape(n, sum(lens))
        res_d, off = {}, 0
        for k, ln in zip(self.facts["outputs"], lens):
            res_d[k] = outs[:, off:off + ln].copy()
            off += ln
        return res_d

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
