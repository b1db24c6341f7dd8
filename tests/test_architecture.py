"""The floors hold: imports parsed from every module's source (ast), nothing imported or run.

    benchmarks, anyppg pipeline/report   compose stages
    stages (anyppg's commands)           orchestrate; never import one another
    shared machinery                     never imports a stage
    edge_runtime                         numpy, scipy, the standard library, the TFLite runtimes
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from anyppg.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("anyppg", "training", "quantization", "firmware_bridge", "edge_runtime", "benchmarks")
# Compose stages by design: the pipeline runs them in order, the report and benchmarks read them.
COMPOSERS = ("benchmarks", "anyppg.pipeline", "anyppg.cli")
EDGE_ALLOWED = {"numpy", "scipy", "ai_edge_litert", "tflite_runtime", "tflite_micro", "edge_runtime"}
# Violations on record, each with its way out; the tests fail on any other one, and on an entry
# here that no longer occurs (so the list only shrinks). Keys: "<file>: imports <module>".
KNOWN = {
    "edge_runtime/recordings.py: imports wfdb":
        "optional, lazily imported WFDB reading in the runtime's recording reader; read WFDB "
        "with numpy or move the reader out of edge_runtime",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, relative ones resolved."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` imports the submodule pkg.mod when there is one
            out += [(node.lineno, f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target)
                    for a in node.names]
    return out


def _is_module(name: str) -> bool:
    p = ROOT.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _assert_none_new(found: list[tuple[str, str]]) -> None:
    new = [f"{key} ({where})" for key, where in found if key not in KNOWN]
    assert not new, "\n".join(new)


def test_known_violations_still_exist():
    """An entry of KNOWN that was fixed must leave the list."""
    seen = {f"{p.relative_to(ROOT)}: imports {name}" for p in _sources() for _, name in _imports(p)}
    gone = [k for k in KNOWN if k not in seen]
    assert not gone, f"fixed, remove from KNOWN: {gone}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


STAGES = sorted({mod for mod, _ in COMMANDS.values()
                 if not any(_within(mod, c) for c in COMPOSERS) and _is_module(mod)})


def _stage_of(name: str) -> str | None:
    return next((s for s in STAGES if _within(name, s)), None)


def test_stages_are_known():
    assert {"training.pretrain", "training.distill", "training.probe", "quantization.qat",
            "quantization.export", "training.prepare"} <= set(STAGES), STAGES


def test_a_stage_never_imports_another_stage_and_machinery_never_imports_a_stage():
    bad = []
    for path in _sources():
        mod = _module_name(path)
        if any(_within(mod, c) for c in COMPOSERS):
            continue
        own = _stage_of(mod)
        for line, name in _imports(path):
            other = _stage_of(name)
            if other and other != own:
                who = f"stage {own}" if own else "shared machinery"
                bad.append((f"{path.relative_to(ROOT)}: imports {name}", f"line {line}: {who} imports stage {other}"))
    _assert_none_new(bad)


def test_edge_runtime_imports_only_numpy_scipy_stdlib_and_tflite_runtimes():
    bad = []
    for path in sorted((ROOT / "edge_runtime").rglob("*.py")):
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top and top not in EDGE_ALLOWED and top not in sys.stdlib_module_names:
                bad.append((f"{path.relative_to(ROOT)}: imports {name}", f"line {line}"))
    _assert_none_new(bad)


def test_training_never_imports_quantization():
    bad = [f"{p.relative_to(ROOT)}:{line}: imports {name}"
           for p in sorted((ROOT / "training").rglob("*.py")) for line, name in _imports(p)
           if _within(name, "quantization")]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_violations(tmp_path, monkeypatch):
    """The parser resolves relative imports and `from pkg import module`, so a violation written
    either way would be caught."""
    p = ROOT / "training" / "distill.py"
    names = {n for _, n in _imports(p)}
    assert "training.loop" in names and "training.models.student" in names
    q = ROOT / "training" / "probe" / "main.py"
    assert "training.probe.runner" in {n for _, n in _imports(q)}
    assert _stage_of("training.probe.runner") == "training.probe"
    assert _stage_of("training.probe_extra") is None


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_module_has_main(stage):
    path = ROOT.joinpath(*stage.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "main" in defined | imported, f"{stage} has no main(argv)"
