"""The one helper behind every stage's `main(argv)`: argparse with the shared options, a named
config with type-checked `--set` overrides, and one-line errors instead of tracebacks.

    def main(argv=None) -> int:
        p = stage_parser("anyppg qat", __doc__, config_stage="qat")
        p.add_argument("--from", dest="src", required=True)
        args = p.parse_args(argv)
        return run_stage("anyppg qat", lambda: train(stage_config(QATConfig(), "qat", args), ...))

A stage's body returns a result (printed as JSON unless --quiet, or by `show`) or raises one of
`EXPECTED_ERRORS` (or the stage's own `errors`): the user then sees `<prog>: error: <first line>`
on stderr and the exit status 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from anyppg.config import ConfigError, load_config

# What bad input raises anywhere below a stage (the spec check's SpecMismatch is a ValueError).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, FileNotFoundError,
                                                    FileExistsError, FloatingPointError)


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def stage_parser(prog: str, doc: str, config_stage: str | None = None,
                 default_config: str | None = None, quiet: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first paragraph of `doc`; with `config_stage`, also
    --config (configs/<stage>/<name>.yaml or a path) and repeatable --set KEY=VALUE."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    if config_stage:
        p.add_argument("--config", default=default_config,
                       help=f"configs/{config_stage}/<name>.yaml or a path")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    if quiet:
        p.add_argument("--quiet", action="store_true")
    return p


def add_run_io(p: argparse.ArgumentParser, src: str | None = None, data: str | None = None,
               out: str | None = None, overwrite: bool = False, resume: bool = False) -> None:
    """The usual inputs and output of a stage, each with its help text: --from SRC (a run
    folder), --data (a window store), --out (this stage's run folder), --overwrite, --resume."""
    if src:
        p.add_argument("--from", dest="src", required=True, help=src)
    if data:
        p.add_argument("--data", required=True, help=data)
    if out:
        p.add_argument("--out", required=True, help=out)
    if overwrite:
        p.add_argument("--overwrite", action="store_true")
    if resume:
        p.add_argument("--resume", action="store_true")


def stage_config(default: Any, stage: str, args: argparse.Namespace, extra_sets: list[str] = ()) -> Any:
    """The stage's dataclass config: defaults <- --config <- --set (<- `extra_sets`)."""
    return load_config(default, stage, args.config, list(args.set) + list(extra_sets))


def run_stage(prog: str, body: Callable[[], Any], errors: tuple[type[BaseException], ...] = (),
              quiet: bool = False, show: Callable[[Any], Any] | None = None,
              cleanup: Callable[[], None] | None = None, error_rc: int = 1) -> int:
    """Run a stage's body; 0 on success, `error_rc` with a one-line error on expected failures.
    Unless quiet, print the result (or `show(result)`): a string as it is, anything else as
    JSON."""
    try:
        result = body()
    except EXPECTED_ERRORS + tuple(errors) as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return error_rc
    finally:
        if cleanup is not None:
            cleanup()
    shown = show(result) if show else result
    if not quiet and shown is not None:
        print(shown if isinstance(shown, str) else json.dumps(shown, indent=2, default=float))
    return 0
