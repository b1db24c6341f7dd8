"""`anyppg data summary STORE`: what a window store holds, per split and per label."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from training.data.build import format_summary
from training.data.store import WindowStore


def label_table(store: WindowStore) -> list[str]:
    lines = [f"{'label':<14}{'n':>8}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}"]
    for name in store.label_names:
        v = store.column(name)
        v = v[np.isfinite(v)]
        if len(v):
            lines.append(f"{name:<14}{len(v):>8}{v.mean():>10.2f}{v.std():>10.2f}{v.min():>10.2f}{v.max():>10.2f}")
        else:
            lines.append(f"{name:<14}{0:>8}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg data summary")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print index.json instead")
    args = p.parse_args(argv)
    try:
        store = WindowStore(args.store)
    except (FileNotFoundError, ValueError) as e:
        print(f"anyppg data summary: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(store.index, indent=2))
        return 0
    print(format_summary(store.index))
    print("\n".join(label_table(store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
