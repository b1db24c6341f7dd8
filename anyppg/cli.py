"""`anyppg`: one console script that only dispatches to the stage modules.

Each stage is a module with `main(argv=None) -> int`; this file holds no logic of its own, and
imports a stage only when it is asked for (so `anyppg data ...` does not pay for torch).
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    ("data", "prepare"): ("training.prepare", "window a dataset into a store"),
    ("data", "summary"): ("training.store_summary", "print what a store holds"),
    ("data", "download"): ("training.download", "fetch a public dataset and verify its checksums"),
    ("pretrain",): ("training.pretrain", "ECG-guided contrastive pretraining of a PPG encoder"),
    ("probe",): ("training.probe", "frozen-embedding probes on downstream tasks"),
    ("distill",): ("training.distill", "distil a teacher into a watch-sized student"),
    ("qat",): ("quantization.qat", "quantisation-aware training of a student"),
    ("export",): ("quantization.export", "ONNX + onnx2tf export to a full-int8 TFLite"),
    ("run",): ("edge_runtime.run_cli", "run an exported int8 model over a recording"),
    ("bench",): ("benchmarks.bench_runtime", "latency, memory and accuracy: int8 student vs teacher"),
    ("firmware",): ("firmware_bridge.bundle", "generate the C bundle for a watch build"),
    ("mcu",): ("firmware_bridge.mcu", "build and measure the bundle on a simulated Cortex-M"),
    ("pipeline",): ("anyppg.pipeline", "every stage in order, skipping what is unchanged"),
    ("report",): ("benchmarks.report", "the report of a pipeline run (Markdown, HTML, figures)"),
}


def _usage() -> str:
    lines = ["usage: anyppg <command> [options]", "", "commands:"]
    for words, (mod, help_) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<14} {help_}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for n in (2, 1):
        key = tuple(argv[:n])
        if key in COMMANDS:
            module_name = COMMANDS[key][0]
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e:
                if e.name and module_name.startswith(e.name):
                    print(f"anyppg: '{' '.join(key)}' is not available in this install", file=sys.stderr)
                    return 2
                raise
            return int(module.main(argv[n:]) or 0)
    print(_usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
    return 0 if argv and argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
