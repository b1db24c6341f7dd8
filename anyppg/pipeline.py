"""`anyppg pipeline`: every stage from recordings to the watch, in order, skipping what is unchanged.

    anyppg pipeline --config demo --out runs/demo [--from-stage S] [--until-stage S]
                    [--data-root DIR] [--set key=value] [--no-report]

Stages, each into its own folder of --out:

    prepare -> pretrain -> probe -> distill -> qat -> export -> firmware -> mcu -> bench
    store/     pretrain/   probe/   distill/   qat/   export/   firmware/   mcu/   bench/

The pipeline is the top floor: it runs every stage through the `anyppg` dispatcher in a
subprocess (`python -m anyppg.cli <command> ...`, output in logs/<stage>.log) and knows only
each command's arguments, never a stage's internals. A stage whose command is not in this
install (its module is missing) or whose tools are not on PATH (e.g. arm-none-eabi-gcc) is
recorded as "not run" with the reason, as are the stages that need its output; the report
shows them as such. A stage that fails is recorded with the last line it printed, the stages
after it that need it are "not run", and the pipeline exits 1 after the report.

Skipping. A stage's fingerprint is the sha256 of its command line (run folder and data root
written as $OUT and $DATA), the content of the named stage config it uses
(configs/<stage>/<name>.yaml), and the content hash of every input: an upstream run folder by
the sha256 of its manifest.json (every file of it where it has none, e.g. the store), a data
folder or checkpoint by its files' contents (hashes cached in pipeline.json by size and mtime,
so an unchanged 1 GB dataset is not re-read). A stage is skipped when its fingerprint equals
the one recorded at its last success and its output still has the digest recorded then. So a
changed config reruns exactly the stages whose command line it changes, and those downstream
(their inputs' digests change). State: --out/pipeline.json, written atomically after every
stage. An interrupted stage is recorded "running"; the next run resumes it with --resume where
the stage supports that (pretrain, distill) and its fingerprint is unchanged, else starts it
afresh; finished stages are not redone.

--from-stage S reruns S and every stage after it even if unchanged; --until-stage S stops
after S. `--set key=value` overrides the pipeline config (`teacher_checkpoint=PATH`,
`pretrain.config=NAME`, `distill.set.max_steps=50`, `probe.args=[...]`, `data.input=...`);
'{data_root}' in data.input or a stage's args is replaced by --data-root.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from anyppg.cli import COMMANDS
from anyppg.config import CONFIG_DIR, ConfigError, load_config, parse_set, to_dict
from anyppg.runs import atomic_write_json, sha256_file

REPO = Path(__file__).resolve().parent.parent
STATE_FILE = "pipeline.json"
STATE_VERSION = 1


# ----------------------------------------------------------------------------------- config
@dataclass
class StageConfig:
    enabled: bool = True
    config: str | None = None                         # the stage's own named config (--config)
    set: dict[str, Any] = field(default_factory=dict)  # passed as --set key=value
    args: list[str] = field(default_factory=list)      # more command-line arguments
    launcher: list[str] = field(default_factory=list)  # e.g. [torchrun, --nproc_per_node, "8"]


@dataclass
class DataConfig:
    source: str = "synthetic"                  # `data prepare --source`
    input: str = "subjects=48,minutes=5,seed=0"  # `--input`; '{data_root}' is replaced


@dataclass
class PipelineConfig:
    description: str = ""
    data_root: str | None = None         # default: $ANYPPG_SHARED_DATA, else ../shared/data
    teacher_checkpoint: str | None = None  # a published AnyPPG checkpoint replaces pretraining
    data: DataConfig = field(default_factory=DataConfig)
    prepare: StageConfig = field(default_factory=StageConfig)
    pretrain: StageConfig = field(default_factory=StageConfig)
    probe: StageConfig = field(default_factory=StageConfig)
    distill: StageConfig = field(default_factory=StageConfig)
    qat: StageConfig = field(default_factory=StageConfig)
    export: StageConfig = field(default_factory=StageConfig)
    firmware: StageConfig = field(default_factory=StageConfig)
    mcu: StageConfig = field(default_factory=StageConfig)
    bench: StageConfig = field(default_factory=StageConfig)


def resolve_config(name: str, sets: list[str] | None) -> PipelineConfig:
    """configs/pipeline/<name>.yaml (or a path) <- --set; '<stage>.set.<key>=v' adds one --set."""
    stage_sets: dict[str, dict[str, Any]] = {}
    plain: list[str] = []
    for item in sets or []:
        key = item.split("=", 1)[0].strip()
        parts = key.split(".")
        if len(parts) >= 3 and parts[1] == "set" and parts[0] in STAGE_NAMES:
            ((k, v),) = parse_set([item]).items()
            stage_sets.setdefault(parts[0], {})[".".join(k.split(".")[2:])] = v
        else:
            plain.append(item)
    cfg = load_config(PipelineConfig(), "pipeline", name, plain)
    for st, kv in stage_sets.items():
        sc = getattr(cfg, st)
        cfg = dataclasses.replace(cfg, **{st: dataclasses.replace(sc, set={**sc.set, **kv})})
    for st in STAGE_NAMES:
        sc = getattr(cfg, st)
        if not isinstance(sc.set, dict):
            raise ConfigError(f"{st}.set: expected a mapping of the stage's config keys, got {sc.set!r}")
    return cfg


# ----------------------------------------------------------------------------------- stages
@dataclass
class Ctx:
    """What argument builders see: the run folder, the resolved config, the data root."""
    out: Path
    cfg: PipelineConfig
    data_root: Path

    def folder(self, stage: str) -> Path:
        return self.out / STAGES[stage].folder

    @property
    def teacher(self) -> Path:
        """The teacher the later stages use: the pretrain run, or the checkpoint replacing it."""
        tc = self.cfg.teacher_checkpoint
        return Path(tc).expanduser().resolve() if tc else self.folder("pretrain")


@dataclass(frozen=True)
class Stage:
    name: str
    command: tuple[str, ...]
    folder: str
    deps: tuple[str, ...]                    # stages whose output this one reads
    build: Callable[[Ctx], list[str]]         # the command's arguments
    tools: tuple[str, ...] = ()              # executables it needs on PATH
    resumable: bool = False                  # accepts --resume on a folder it left behind
    content: tuple[str, ...] = ()            # what of its folder is its output (default: manifest)
    extra_inputs: Callable[[Ctx], dict[str, Path]] = lambda ctx: {}  # data outside the run


def _stage_opts(sc: StageConfig, quiet: bool = True) -> list[str]:
    opts = ["--config", sc.config] if sc.config else []
    for k, v in sc.set.items():
        opts += ["--set", f"{k}={json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else v}"]
    return opts + list(sc.args) + (["--quiet"] if quiet and "--quiet" not in sc.args else [])


def _with_data_root(argv: list[str], ctx: Ctx) -> list[str]:
    """'{data_root}' in any argument (data.input, a stage's args) becomes the data root."""
    return [a.replace("{data_root}", str(ctx.data_root)) for a in argv]


def _data_input(ctx: Ctx) -> str:
    return _with_data_root([ctx.cfg.data.input], ctx)[0]


def _teacher_input(ctx: Ctx) -> dict[str, Path]:
    return {"teacher_checkpoint": ctx.teacher} if ctx.cfg.teacher_checkpoint else {}


def _data_inputs(ctx: Ctx) -> dict[str, Path]:
    p = Path(_data_input(ctx))
    return {"data": p} if ctx.cfg.data.source != "synthetic" else {}


def _b_prepare(c: Ctx) -> list[str]:
    return ["--source", c.cfg.data.source, "--input", _data_input(c), "--out", str(c.folder("prepare")),
            "--overwrite", *_stage_opts(c.cfg.prepare)]


def _b_pretrain(c: Ctx) -> list[str]:
    return ["--data", str(c.folder("prepare")), "--out", str(c.folder("pretrain")), *_stage_opts(c.cfg.pretrain)]


def _b_probe(c: Ctx) -> list[str]:
    return ["--encoder", str(c.teacher), "--stores", str(c.out / "stores"), "--out", str(c.folder("probe")),
            *_stage_opts(c.cfg.probe, quiet=False)]


def _b_distill(c: Ctx) -> list[str]:
    return ["--teacher", str(c.teacher), "--data", str(c.folder("prepare")), "--out", str(c.folder("distill")),
            *_stage_opts(c.cfg.distill)]


def _b_qat(c: Ctx) -> list[str]:
    return ["--from", str(c.folder("distill")), "--data", str(c.folder("prepare")), "--out",
            str(c.folder("qat")), "--overwrite", *_stage_opts(c.cfg.qat)]


def _b_export(c: Ctx) -> list[str]:
    return ["--from", str(c.folder("qat")), "--data", str(c.folder("prepare")), "--out",
            str(c.folder("export")), "--overwrite", *_stage_opts(c.cfg.export)]


def _b_firmware(c: Ctx) -> list[str]:
    return ["--from", str(c.folder("export")), "--out", str(c.folder("firmware")),
            *_stage_opts(c.cfg.firmware, quiet=False)]


def _b_mcu(c: Ctx) -> list[str]:
    return ["--from", str(c.folder("firmware")), "--out", str(c.folder("mcu")), *_stage_opts(c.cfg.mcu, quiet=False)]


def _b_bench(c: Ctx) -> list[str]:
    return ["--from", str(c.folder("export")), "--teacher", str(c.teacher), "--data", str(c.folder("prepare")),
            "--out", str(c.folder("bench")), *_stage_opts(c.cfg.bench, quiet=False)]


STAGE_LIST = (
    # Later stages add caches to the store (ECG and teacher features): its output is index + shards.
    Stage("prepare", ("data", "prepare"), "store", (), _b_prepare, extra_inputs=_data_inputs,
          content=("index.json", "parts")),
    Stage("pretrain", ("pretrain",), "pretrain", ("prepare",), _b_pretrain, resumable=True),
    Stage("probe", ("probe",), "probe", ("pretrain",), _b_probe, extra_inputs=_teacher_input),
    Stage("distill", ("distill",), "distill", ("prepare", "pretrain"), _b_distill, resumable=True,
          extra_inputs=_teacher_input),
    Stage("qat", ("qat",), "qat", ("prepare", "distill"), _b_qat),
    Stage("export", ("export",), "export", ("prepare", "qat"), _b_export),
    Stage("firmware", ("firmware",), "firmware", ("export",), _b_firmware),
    Stage("mcu", ("mcu",), "mcu", ("firmware",), _b_mcu, tools=("arm-none-eabi-gcc", "qemu-system-arm")),
    Stage("bench", ("bench",), "bench", ("prepare", "pretrain", "export"), _b_bench, extra_inputs=_teacher_input),
)
STAGES = {s.name: s for s in STAGE_LIST}
STAGE_NAMES = tuple(STAGES)


# ----------------------------------------------------------------------------------- hashing
class Hasher:
    """Content hashes of files and folders, cached by (size, mtime_ns) across runs."""

    def __init__(self, cache: dict[str, list] | None = None):
        self.cache = dict(cache or {})

    def file(self, p: Path) -> str:
        st = p.stat()
        key = str(p.resolve())
        hit = self.cache.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        h = sha256_file(p)
        self.cache[key] = [st.st_size, st.st_mtime_ns, h]
        return h

    def tree(self, p: Path) -> str:
        """sha256 over (relative path, content hash) of every file; temp files left out."""
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file() and not x.name.endswith(".tmp")):
            h.update(f"{f.relative_to(p)}\0{self.file(f)}\n".encode())
        return h.hexdigest()

    def path(self, p: Path) -> str | None:
        if p.is_file():
            return self.file(p)
        if p.is_dir():
            return self.tree(p)
        return None

    def run_folder(self, p: Path, content: tuple[str, ...] = ()) -> str | None:
        """A run folder by its manifest (stages write it last), or by the `content` paths in it,
        or (neither) by every file in it."""
        if content:
            parts = [self.path(p / c) for c in content]
            return None if None in parts else hashlib.sha256("\n".join(parts).encode()).hexdigest()
        m = p / "manifest.json"
        return self.file(m) if m.is_file() else self.path(p)


def _portable(argv: list[str], ctx: Ctx) -> list[str]:
    """The command line with the run folder and data root as $OUT / $DATA (moving them is no change)."""
    out, data = str(ctx.out), str(ctx.data_root)
    return [a.replace(out, "$OUT").replace(data, "$DATA") for a in argv]


def _named_config_hash(stage: Stage, argv: list[str]) -> str | None:
    """Content of configs/<command>/<name>.yaml named by --config (its values shape the run)."""
    if "--config" not in argv:
        return None
    name = argv[argv.index("--config") + 1]
    p = Path(name) if Path(name).suffix else CONFIG_DIR / stage.command[-1] / f"{name}.yaml"
    return sha256_file(p) if p.is_file() else None


def fingerprint(stage: Stage, argv: list[str], inputs: dict[str, str | None], ctx: Ctx) -> str:
    blob = {"stage": stage.name, "command": list(stage.command), "argv": _portable(argv, ctx),
            "launcher": list(getattr(ctx.cfg, stage.name).launcher),
            "named_config": _named_config_hash(stage, argv), "inputs": inputs}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------- running
def why_unavailable(stage: Stage, launcher: list[str] | None = None) -> str | None:
    """None when the stage can run here, else the reason it cannot (one line)."""
    module = COMMANDS.get(stage.command, ("?",))[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return f"`anyppg {' '.join(stage.command)}` is not available in this checkout ({module} missing)"
    missing = [t for t in stage.tools if shutil.which(t) is None]
    if launcher:
        exe = _resolve_launcher(launcher)[0]
        if not (Path(exe).is_file() or shutil.which(exe)):
            missing.append(exe)
    if missing:
        return f"{', '.join(missing)} not found on PATH"
    return None


def _resolve_launcher(launcher: list[str] | None) -> list[str]:
    """A bare launcher name (torchrun) is taken from this interpreter's bin folder first, so an
    unactivated venv still finds its own torchrun."""
    if not launcher:
        return []
    exe = launcher[0]
    if os.sep not in exe:
        sibling = Path(sys.executable).parent / exe
        exe = str(sibling) if sibling.is_file() else (shutil.which(exe) or exe)
    return [exe, *launcher[1:]]


def run_subprocess(stage: Stage, argv: list[str], log: Path, env: dict[str, str],
                   launcher: list[str] | None = None) -> tuple[int, str]:
    """Run `anyppg <command> argv` in a child process (through `launcher`, e.g. torchrun, when
    given); returns (exit code, the last error line it printed, else its last line)."""
    cmd = [*(_resolve_launcher(launcher) or [sys.executable]), "-m", "anyppg.cli", *stage.command, *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ anyppg " + " ".join(stage.command + tuple(argv)) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait()
        except BaseException:
            # Interrupted: stop the stage's whole process group (torch workers too), then re-raise.
            with _suppress():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            with _suppress():
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    return rc, _last_line(log)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], (OSError, subprocess.SubprocessError))


def _last_line(log: Path) -> str:
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    errs = [x for x in lines if "error" in x.lower()]
    return (errs or lines or ["(no output)"])[-1][:300]


RUNNER: Callable[..., tuple[int, str]] = run_subprocess


# ----------------------------------------------------------------------------------- the loop
OK = ("done", "replaced")


class Pipeline:
    """One pipeline run over --out: the stage loop and its state file."""

    def __init__(self, cfg: PipelineConfig, out: Path, data_root: Path, config_name: str,
                 log: Callable[[str], None] = print):
        self.ctx = Ctx(out.resolve(), cfg, data_root.resolve())
        self.log = log
        self.state_path = self.ctx.out / STATE_FILE
        self.state = self._load_state()
        self.state.update({"state_version": STATE_VERSION, "config_name": config_name,
                           "config": to_dict(cfg), "data_root": str(self.ctx.data_root),
                           "stage_order": list(STAGE_NAMES)})
        self.hasher = Hasher(self.state.get("file_cache"))

    def _load_state(self) -> dict:
        if self.state_path.is_file():
            try:
                s = json.loads(self.state_path.read_text())
                if s.get("state_version") == STATE_VERSION:
                    return s
            except json.JSONDecodeError:
                pass
            self.log(f"pipeline: {self.state_path} unreadable or of another version; every stage reruns")
        return {"stages": {}}

    def save(self) -> None:
        self.state["file_cache"] = self.hasher.cache
        atomic_write_json(self.state_path, self.state)

    def record(self, name: str, **kv) -> dict:
        rec = self.state["stages"].setdefault(name, {})
        rec.update(kv)
        self.save()
        return rec

    def output_digest(self, name: str) -> str | None:
        if name == "pretrain" and self.ctx.cfg.teacher_checkpoint:
            return self.hasher.path(self.ctx.teacher)
        return self.hasher.run_folder(self.ctx.folder(name), STAGES[name].content)

    def usable(self, name: str) -> bool:
        """Did `name` finish, with its output still as it left it?"""
        rec = self.state["stages"].get(name, {})
        if rec.get("status") not in OK:
            return False
        return rec.get("output_digest") is not None and rec.get("output_digest") == self.output_digest(name)

    def run(self, from_stage: str | None, until_stage: str | None) -> int:
        names = list(STAGE_NAMES)
        lo = names.index(from_stage) if from_stage else 0
        hi = names.index(until_stage) if until_stage else len(names) - 1
        rc = 0
        for i, name in enumerate(names[: hi + 1]):
            if i < lo:
                continue
            status = self.step(STAGES[name], forced=from_stage is not None, n=(i + 1, len(names)))
            rc = max(rc, 1 if status == "failed" else 0)
        return rc

    def step(self, st: Stage, forced: bool, n: tuple[int, int]) -> str:
        tag = f"[{n[0]}/{n[1]}] {st.name:<9}"
        sc: StageConfig = getattr(self.ctx.cfg, st.name)
        rec = self.state["stages"].get(st.name, {})
        if st.name == "pretrain" and self.ctx.cfg.teacher_checkpoint:
            return self._replaced(st, tag)
        reason = None
        if not sc.enabled:
            reason = "disabled in the pipeline config"
        else:
            bad = [d for d in st.deps if not self.usable(d)]
            if bad:
                d = bad[0]
                why = self.state["stages"].get(d, {}).get("status", "not run")
                reason = f"needs {d}, which is {why if why != 'done' else 'changed since it ran'}"
            else:
                reason = why_unavailable(st, sc.launcher)
        if reason:
            self.log(f"{tag} not run: {reason}")
            self.record(st.name, status="not run", reason=reason, action=None)
            return "not run"
        argv = _with_data_root(st.build(self.ctx), self.ctx)
        inputs = {d: self.state["stages"][d]["output_digest"] for d in st.deps}
        for role, p in st.extra_inputs(self.ctx).items():
            if not p.exists():
                reason = f"input {role} not found: {p}"
                self.log(f"{tag} failed: {reason}")
                self.record(st.name, status="failed", reason=reason, action=None)
                return "failed"
            inputs[role] = self.hasher.path(p)
        fp = fingerprint(st, argv, inputs, self.ctx)
        if not forced and rec.get("fingerprint") == fp and self.usable(st.name):
            self.log(f"{tag} unchanged, skipped ({self.ctx.folder(st.name)})")
            self.record(st.name, action="skipped", reason=None)
            return "done"
        return self._execute(st, argv, inputs, fp, rec, tag)

    def _replaced(self, st: Stage, tag: str) -> str:
        ck = self.ctx.teacher
        if not ck.exists():
            reason = f"teacher_checkpoint not found: {ck}"
            self.log(f"{tag} failed: {reason}")
            self.record(st.name, status="failed", reason=reason, action=None)
            return "failed"
        reason = f"replaced by teacher_checkpoint={ck}"
        self.log(f"{tag} {reason}")
        self.record(st.name, status="replaced", reason=reason, action=None, output_digest=self.output_digest(st.name))
        return "replaced"

    def _execute(self, st: Stage, argv: list[str], inputs: dict, fp: str, rec: dict, tag: str) -> str:
        folder = self.ctx.folder(st.name)
        resume = (st.resumable and rec.get("status") == "running" and rec.get("fingerprint") == fp
                  and (folder / "checkpoints" / "latest.pt").is_file())
        if resume:
            argv = argv + ["--resume"]
        elif folder.exists():
            shutil.rmtree(folder)      # a stale or half-finished output: start afresh
        log = self.ctx.out / "logs" / f"{st.name}.log"
        self.log(f"{tag} {'resuming' if resume else 'running'}: anyppg {' '.join(st.command)} ... (log: {log})")
        self.record(st.name, status="running", reason=None, fingerprint=fp, inputs=inputs,
                    argv=_portable(argv, self.ctx), folder=st.folder, log=str(log.relative_to(self.ctx.out)),
                    action="resumed" if resume else "ran", started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    output_digest=None)
        env = dict(os.environ, ANYPPG_SHARED_DATA=str(self.ctx.data_root), PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        code, last = RUNNER(st, argv, log, env, getattr(self.ctx.cfg, st.name).launcher)
        secs = round(time.perf_counter() - t0, 1)
        if code == 0 and folder.exists():
            self.record(st.name, status="done", seconds=secs, output_digest=self.output_digest(st.name),
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.log(f"{tag} done in {secs:.1f} s -> {folder}")
            return "done"
        reason = last if code != 0 else f"exited 0 but wrote no {folder}"
        self.record(st.name, status="failed", reason=f"exit {code}: {reason}", seconds=secs)
        self.log(f"{tag} failed (exit {code}) after {secs:.1f} s: {reason}  [log: {log}]")
        return "failed"


# ----------------------------------------------------------------------------------- CLI
def default_data_root() -> Path:
    return Path(os.environ.get("ANYPPG_SHARED_DATA", REPO.parent / "shared" / "data"))


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo", help="configs/pipeline/<name>.yaml or a path (default demo)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/demo")
    p.add_argument("--from-stage", choices=STAGE_NAMES, help="rerun this stage and the ones after it")
    p.add_argument("--until-stage", choices=STAGE_NAMES, help="stop after this stage")
    p.add_argument("--data-root", help="folder holding the real datasets (default ../shared/data)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    args = p.parse_args(argv)
    if args.from_stage and args.until_stage and STAGE_NAMES.index(args.from_stage) > STAGE_NAMES.index(args.until_stage):
        p.error("--from-stage comes after --until-stage")
    try:
        cfg = resolve_config(args.config, args.set)
    except ConfigError as e:
        print(f"anyppg pipeline: error: {e}", file=sys.stderr)
        return 2
    data_root = Path(args.data_root or cfg.data_root or default_data_root()).expanduser()
    out = Path(args.out)
    pipe = Pipeline(cfg, out, data_root, args.config)
    # SIGTERM (a killed job) is handled like Ctrl-C: the running stage is stopped, state kept.
    old = signal.signal(signal.SIGTERM, _sigterm)
    print(f"pipeline {args.config}: {out} ({cfg.description.strip().splitlines()[0] if cfg.description else ''})")
    t0 = time.perf_counter()
    try:
        rc = pipe.run(args.from_stage, args.until_stage)
    except KeyboardInterrupt:
        pipe.save()
        print(f"pipeline interrupted; rerun the same command to resume ({out / STATE_FILE})", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
    pipe.state["last_run_seconds"] = round(time.perf_counter() - t0, 1)
    pipe.save()
    print(f"pipeline finished in {pipe.state['last_run_seconds']:.0f} s")
    if not args.no_report:
        from anyppg.cli import main as dispatch
        rrc = dispatch(["report", "--run", str(out)])
        rc = max(rc, 1 if rrc else 0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
