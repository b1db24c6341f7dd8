"""`anyppg data summary STORE`: what a window store holds, per split and per label."""
from __future__ import annotations

import json
import sys

import numpy as np

from anyppg.stage import run_stage, stage_parser
from training.data.build import format_summary
from training.data.store import WindowStore


def label_table(store: WindowStore) -> list[str]:
    lines = [f"{'label':<14}{'n':>8}{'mean':>10}{'std':>10}{'min':>10}{'median':>10}{'max':>10}"]
    for name in store.label_names:
        v = store.column(name)
        v = v[np.isfinite(v)]
        if len(v):
            lines.append(f"{name:<14}{len(v):>8}{v.mean():>10.2f}{v.std():>10.2f}{v.min():>10.2f}{np.median(v):>10.2f}{v.max():>10.2f}")
        else:
            lines.append(f"{name:<14}{0:>8}")
    return lines


def main(argv=None) -> int:
    p = stage_parser("anyppg data summary", __doc__, quiet=False)
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print index.json instead")
    args = p.parse_args(argv)

    def body() -> str:
        store = WindowStore(args.store)
        if args.json:
            return json.dumps(store.index, indent=2)
        return format_summary(store.index) + "\n" + "\n".join(label_table(store))

    return run_stage("anyppg data summary", body, error_rc=2)


if __name__ == "__main__":
    sys.exit(main())
