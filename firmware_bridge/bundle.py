"""anyppg firmware: the C bundle a watch build takes in, generated from an export.

    anyppg firmware --from runs/<x>/export --out DIR [--sensor-fs 64] [--overwrite]

DIR/
    README.md                    how to build it in, flash and RAM, the streaming API
    src/anyppg_dsp.{c,h}         the preprocessing (float32, fixed memory, no malloc)
    src/anyppg_dsp_tables.c      the resampler's polyphase taps for --sensor-fs
    src/anyppg_hr.{c,h}          the sidecar's HR refinement (edge_runtime.hr_refine), if any
    src/anyppg_model_settings.h  rates, window, hop, band-pass constants, thresholds, quantisation
    src/anyppg_model_data.{c,h}  the .tflite as an aligned const array (for TFLite Micro)
    src/anyppg_model.{c,h} ...   the generated int8 inference (firmware_bridge.codegen)
    examples/anyppg_example.c    a complete loop: samples -> windows -> model -> numbers
    examples/tflm_main.cc        the same with TensorFlow Lite Micro (documented, not built)
    golden/                      golden vectors of a synthetic recording (firmware_bridge/golden.py)
    model_int8.tflite/.json      the model and its sidecar, as exported
    manifest.json                inputs with sha256, config, sizes
"""
from __future__ import annotations

import hashlib
import json
import shutil
import string
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_dir, write_manifest
from anyppg.stage import run_stage, stage_config, stage_parser
from edge_runtime.af_beats import AFBeats, AFBeatsConfigError
from edge_runtime.contract import DEFAULT_DECISION, sidecar_inputs
from edge_runtime.hr_refine import HRRefine, RefineConfigError
from edge_runtime.polarity import PolarityConfigError
from edge_runtime.polarity import from_sidecar as polarity_from_sidecar
from edge_runtime.show import int8_minimums
from edge_runtime.spec import SignalSpec

from . import golden, hr_check, qemu
from .qemu import object_sizes, state_ram
from .model_data import model_data_files
from .settings import dsp_constants, dsp_tables_c, settings_header

C_DIR = Path(__file__).resolve().parent / "c"
DSP_FILES = ("anyppg_dsp.c", "anyppg_dsp.h", "anyppg_hr.c", "anyppg_hr.h")
EXAMPLES = ("anyppg_example.c", "tflm_main.cc")
README_TEMPLATE = Path(__file__).resolve().parent / "bundle_readme.md"
CFLAGS = qemu.CFLAGS


@dataclass
class FirmwareConfig:
    sensor_fs: float = 0.0          # the watch's PPG rate in Hz; 0 = the model's own rate
    golden_seconds: float = 30.0    # length of the bundled synthetic golden recording
    golden_seed: int = 0
    golden_subject: int = 0
    measure_size: bool = True       # build for the Cortex-M4F and report text/data/bss
    board: str = "mps2-an386"


class BundleError(ValueError):
    """A one-line reason the bundle cannot be made."""


def find_export(src: Path) -> tuple[Path, Path]:
    """(model_int8.tflite, its sidecar) in an export folder or a run folder holding export/."""
    for d in (src, src / "export"):
        tfl, side = d / "model_int8.tflite", d / "model_int8.json"
        if tfl.is_file() and side.is_file():
            return tfl, side
    raise BundleError(f"{src}: no model_int8.tflite with its model_int8.json sidecar "
                      "(pass an `anyppg export` output folder)")


def read_export(src: Path) -> tuple[bytes, dict, Path, Path]:
    tfl, side = find_export(src)
    model = tfl.read_bytes()
    try:
        sidecar = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{side}: not valid JSON ({e.msg} at line {e.lineno})") from None
    want = sidecar.get("sha256")
    if want and want != hashlib.sha256(model).hexdigest():
        raise BundleError(f"{side}: sha256 does not match {tfl.name} (sidecar of another file?)")
    if "spec" not in sidecar:
        raise BundleError(f"{side}: no signal spec in the sidecar")
    try:
        HRRefine.from_sidecar(sidecar)
        polarity_from_sidecar(sidecar)
        if AFBeats.from_sidecar(sidecar) is not None and not any(
                o.get("name") == "af_logit" for o in sidecar.get("outputs", [])):
            raise AFBeatsConfigError("af_beats needs an af_logit output; the model has none")
    except (RefineConfigError, PolarityConfigError, AFBeatsConfigError) as e:
        raise BundleError(f"{side}: {e}") from None
    except TypeError as e:
        raise BundleError(f"{side}: af_beats: {e}") from None
    dec = sidecar.get("decision") or {}
    bad = [k for k, v in dec.items() if k in DEFAULT_DECISION and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v))] \
        if isinstance(dec, dict) else ["(not an object)"]
    if bad:
        raise BundleError(f"{side}: decision {bad}: thresholds must be finite numbers")
    names = [e.get("name") for e in sidecar_inputs(sidecar)]
    if "ppg" not in names:
        raise BundleError(f"{side}: the model has no 'ppg' input (inputs: {names})")
    if names != ["ppg"]:   # e.g. accel: the C preprocessing and golden vectors carry PPG only
        raise BundleError(f"{side}: the model takes input(s) {[n for n in names if n != 'ppg']} "
                          f"besides 'ppg'; the C bundle supports only the PPG input (no "
                          f"accelerometer path in the firmware yet)")
    return model, sidecar, tfl, side


def generate_inference(model: bytes, sidecar: dict, out: Path) -> dict:
    """The codegen stage's C inference (imported here so a bundle-only import stays light)."""
    from firmware_bridge.codegen import generate_inference as gen
    try:
        return gen(model, sidecar, out)
    except Exception as e:  # its CodegenError and anything else: one line, no half bundle
        msg = str(e).strip().splitlines()
        raise BundleError(f"generated inference: {msg[0] if msg else type(e).__name__}") from None


def golden_stream(cfg: FirmwareConfig, fs: float):
    """The bundled recording: one synthetic subject at the sensor's rate (deterministic)."""
    from training.data.synthetic import generate_subject
    rec = generate_subject(cfg.golden_subject, seed=cfg.golden_seed,
                           duration_s=cfg.golden_seconds, ppg_fs=fs)
    sig = rec.signals["ppg"]
    return getattr(sig, "data", getattr(sig, "values", None))


def measure(bundle: Path, board: str) -> dict:
    """Flash/RAM of the bundle's parts and of the linked example for the Cortex-M4F."""
    src = bundle / "src"
    objs = object_sizes(sorted(src.glob("*.c")), [src], board)

    def total(names):
        return {k: sum(objs[n][k] for n in names if n in objs) for k in ("text", "data", "bss")}
    parts = {"preprocessing": total(["anyppg_dsp.c", "anyppg_dsp_tables.c"]),
             "inference": total([n for n in objs if n.startswith("anyppg_model.") or
                                 n.startswith("anyppg_nn")]),
             "hr_refine": total(["anyppg_hr.c"]),
             "model_array_for_tflm": total(["anyppg_model_data.c"])}
    with tempfile.TemporaryDirectory() as tmp:
        sources = [p for p in sorted(src.glob("*.c")) if p.name != "anyppg_model_data.c"]
        elf = qemu.build_elf([*sources, bundle / "examples" / "anyppg_example.c"],
                             Path(tmp) / "example.elf", board, include_dirs=[src],
                             cflags=["-Werror", "-ffp-contract=off"])
        linked = qemu.elf_size(elf)
    return {"board": board, "objects": objs, "parts": parts, "example_elf": linked,
            "hr_refine_insns": hr_refine_insns(bundle, board),
            "af_beats_insns": af_beats_insns(bundle, board),
            "preprocessing_state_ram": state_ram([src], board),
            "preprocessing_ram_with_input": state_ram([src], board, with_input=True)}


def hr_refine_insns(bundle: Path, board: str) -> int | None:
    """Instructions of anyppg_hr_refine per window on `board` (QEMU), at most over the golden
    windows with hr in the middle of the bins, where every candidate within the radius is
    used (its worst case); None for a bundle without a refinement."""
    sidecar = json.loads((bundle / "model_int8.json").read_text())
    cfg = HRRefine.from_sidecar(sidecar)
    if cfg is None:
        return None
    g = golden.load_golden(bundle / "golden")
    q = next(e for e in g["inputs"] if e["name"] == "ppg")
    hr = np.full(len(q["data"]), 0.5 * float(cfg.candidates()[0] + cfg.candidates()[-1]), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(bundle / "src" / "anyppg_model_settings.h", Path(tmp) / "anyppg_model_settings.h")
        try:
            elf = hr_check.build_board(Path(tmp), board)
            _, insns = hr_check.run(elf, q["data"].reshape(len(hr), -1), int(q["zero_point"]), hr,
                                    Path(tmp) / "run", board=board)
        except hr_check.CheckError as e:
            raise BundleError(f"anyppg_hr on {board}: {e}") from None
    return insns["hr_max"]


def af_beats_insns(bundle: Path, board: str) -> int | None:
    """Instructions of anyppg_hr_show per window on `board` (QEMU) on the beat-count path (every
    gate open, af_logit at its top code), at most over the golden windows (where a window has
    under 3 peaks the refinement runs too, so this bounds the path); None without an
    af_beats block."""
    sidecar = json.loads((bundle / "model_int8.json").read_text())
    if AFBeats.from_sidecar(sidecar) is None:
        return None
    g = golden.load_golden(bundle / "golden")
    q = next(e for e in g["inputs"] if e["name"] == "ppg")
    n = len(q["data"])
    cases = np.zeros(n, hr_check.SHOW_CASE)
    for name in ("quality_logit", "hr_confidence", "hr", "af_logit"):
        cases[name] = 127
    cases["window"] = np.arange(n)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(bundle / "src" / "anyppg_model_settings.h", Path(tmp) / "anyppg_model_settings.h")
        try:
            elf = hr_check.build_board(Path(tmp), board, runner=hr_check.SHOW_SOURCES)
            _, insns = hr_check.run_show(elf, cases, q["data"].reshape(n, -1), int(q["zero_point"]),
                                         Path(tmp) / "run", board=board)
        except hr_check.CheckError as e:
            raise BundleError(f"anyppg_hr_show on {board}: {e}") from None
    return insns["show_max"]


def hr_refine_text(sidecar: dict, sizes: dict | None) -> str:
    """The README's paragraph on the HR refinement: what it is, what this build does, its cost."""
    cfg = HRRefine.from_sidecar(sidecar)
    if cfg is None:
        return ("This model's sidecar has no `hr_refine` block: `ANYPPG_HAS_HR_REFINE` is 0 and "
                "`anyppg_hr_refine` returns the network's hr unchanged.")
    used = int(np.floor(2.0 * cfg.radius_bpm / cfg.step_bpm + 1e-9)) + 1
    cost = "not measured here (arm-none-eabi-gcc or QEMU absent)"
    if sizes and sizes.get("hr_refine_insns"):
        hr = sizes["parts"]["hr_refine"]
        cost = (f"{sizes['hr_refine_insns']:,} instructions per window at most on the Cortex-M4F "
                f"(QEMU, exact count; all {used} candidates), {hr['text']} bytes of flash, no "
                f"static RAM, {4 * (used + 1)} bytes of stack for the candidates' powers")
    return (f"The sidecar's `hr_refine` block (sigma {cfg.sigma_bpm:g} bpm, power {cfg.power:g}, "
            f"radius {cfg.radius_bpm:g} bpm, candidates every {cfg.step_bpm:g} bpm) is in "
            f"`anyppg_model_settings.h` (`ANYPPG_HAS_HR_REFINE` 1). Cost: {cost}.")


def polarity_text(sidecar: dict) -> str:
    """The README's sentence on the sidecar's "polarity" block (edge_runtime.polarity)."""
    mode, votes = polarity_from_sidecar(sidecar)
    block = sidecar.get("polarity")
    if block is None:
        return "This model's sidecar has no `polarity` block: its way-up vote was not measured."
    if mode == "auto":
        return (f"For recordings of unknown origin the Python runtime (`anyppg run`) finds the way "
                f"up itself by default: this model's export measured its confidence vote over "
                f"{votes} windows ({block.get('chosen_on', 'on validation recordings')}).")
    return ("The Python runtime does not guess the way up for this model by default: its export "
            f"found its confidence vote unreliable ({block.get('chosen_on', 'no figures')}).")


def decision_text(sidecar: dict) -> str:
    """The README's figures of the sidecar's "decision" block and their int8 codes."""
    dec = {**DEFAULT_DECISION, **(sidecar.get("decision") or {})}
    mins = int8_minimums(sidecar.get("outputs", []), dec)
    return (f"quality_min_prob {dec['quality_min_prob']:g} -> quality_logit code >= "
            f"{mins.get('quality_logit', -128)}, hr_confidence_min {dec['hr_confidence_min']:g} -> "
            f"hr_confidence code >= {mins.get('hr_confidence', -128)} in this build")


def af_beats_text(sidecar: dict, sizes: dict | None) -> str:
    """The README's words on the sidecar's "af_beats" block and its measured cost."""
    cfg = AFBeats.from_sidecar(sidecar)
    if cfg is None:
        return "this model's sidecar has none, so `ANYPPG_HAS_AF_BEATS` is 0"
    cost = "cost not measured here (arm-none-eabi-gcc or QEMU absent)"
    if sizes and sizes.get("af_beats_insns"):
        cost = (f"{sizes['af_beats_insns']:,} instructions per window at most for `anyppg_hr_show` "
                f"on that path on the Cortex-M4F (QEMU), 512 bytes of stack for its histogram")
    return (f"this build: from af_prob {cfg.min_af_prob:g}, peaks above {cfg.fraction:g} of the "
            f"window's 95th-percentile level; chosen {cfg.chosen_on or 'by the export config'}; {cost}")


def _size_table(sizes: dict | None) -> str:
    if not sizes:
        return ("Not measured here (arm-none-eabi-gcc absent). Run `anyppg firmware` where it is "
                "installed, or `arm-none-eabi-size` on your objects.")
    rows = ["| part | text (flash) | data (flash + RAM) | bss (RAM) |", "|---|---:|---:|---:|"]
    for name, s in sizes["parts"].items():
        rows.append(f"| {name} | {s['text']} | {s['data']} | {s['bss']} |")
    e = sizes["example_elf"]
    rows.append(f"| example firmware (all of src/ but the TFLM array, + newlib printf) | "
                f"{e['text']} | {e['data']} | {e['bss']} |")
    return (f"Measured with arm-none-eabi-gcc -O2 for {sizes['board']} (Cortex-M4F, hard float), "
            "bytes:\n\n" + "\n".join(rows) + "\n\nThe preprocessing's state "
            f"(`anyppg_dsp_t` + `anyppg_dsp_window_t`, yours to place): "
            f"{sizes['preprocessing_state_ram']} bytes of RAM; "
            f"{sizes['preprocessing_ram_with_input']} with the int8 model input it writes, where "
            "that is not already the model's own input tensor.")


def write_bundle(tmp: Path, model: bytes, sidecar: dict, cfg: FirmwareConfig, fs: float) -> dict:
    src = tmp / "src"
    src.mkdir()
    for name in DSP_FILES:
        shutil.copyfile(C_DIR / name, src / name)
    (src / "anyppg_model_settings.h").write_text(settings_header(sidecar, fs))
    (src / "anyppg_dsp_tables.c").write_text(dsp_tables_c(sidecar, fs))
    for name, text in model_data_files(model).items():
        (src / name).write_text(text)
    facts = generate_inference(model, sidecar, src)
    (tmp / "examples").mkdir()
    for name in EXAMPLES:
        shutil.copyfile(C_DIR / "examples" / name, tmp / "examples" / name)
    g = golden.write_golden(tmp / "golden", golden_stream(cfg, fs), fs, sidecar, model,
                            source=f"synthetic subject {cfg.golden_subject}, seed {cfg.golden_seed}, "
                                   f"{cfg.golden_seconds:g} s at {fs:g} Hz")
    return {"inference": {k: facts.get(k) for k in ("arena_bytes", "weight_bytes", "macs", "invoke")},
            "golden_windows": g["n_windows"]}


def make_bundle(src: Path, out: Path, cfg: FirmwareConfig, overwrite: bool = False) -> dict:
    model, sidecar, tfl, side = read_export(Path(src))
    spec = SignalSpec.from_dict(sidecar["spec"])
    fs = float(cfg.sensor_fs) or float(spec.ppg_fs)
    k = dsp_constants(spec, fs)           # refuses a rate the resampler cannot reach
    if cfg.measure_size:
        qemu.board_of(cfg.board)          # an unknown board fails before anything is written
    with atomic_dir(out, overwrite=overwrite) as tmp:
        facts = write_bundle(tmp, model, sidecar, cfg, fs)
        shutil.copyfile(tfl, tmp / "model_int8.tflite")
        shutil.copyfile(side, tmp / "model_int8.json")
        sizes = measure(tmp, cfg.board) if cfg.measure_size and qemu.missing_tools() is None else None
        readme = string.Template(README_TEMPLATE.read_text()).substitute(
            sensor_fs=f"{fs:g}", ppg_fs=f"{spec.ppg_fs:g}", window=k.window, hop=k.hop,
            up=k.up, down=k.down, student=sidecar.get("student", "?"),
            sha256=sidecar.get("sha256", "?"), size_table=_size_table(sizes),
            hr_refine=hr_refine_text(sidecar, sizes), polarity=polarity_text(sidecar),
            decision=decision_text(sidecar), af_beats=af_beats_text(sidecar, sizes),
            outputs=", ".join(f"`{o['name']}` ({o.get('unit', '')})" for o in sidecar.get("outputs", [])))
        (tmp / "README.md").write_text(readme)
        metrics = {"sensor_fs": fs, "sizes": sizes, **facts}
        write_manifest(tmp, "firmware", asdict(cfg), {"model": str(tfl), "sidecar": str(side)},
                       metrics)
    return {"out": str(out), **metrics}


def main(argv=None) -> int:
    p = stage_parser("anyppg firmware", __doc__, config_stage="firmware")
    p.add_argument("--from", dest="src", required=True, help="an `anyppg export` output folder")
    p.add_argument("--out", required=True, help="the bundle folder to write")
    p.add_argument("--sensor-fs", type=float, default=None, help="the watch's PPG rate in Hz")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    def body():
        cfg = stage_config(FirmwareConfig(), "firmware", args)
        if args.sensor_fs is not None:
            cfg.sensor_fs = args.sensor_fs
        return make_bundle(Path(args.src), Path(args.out), cfg, args.overwrite)
    return run_stage("anyppg firmware", body, errors=(BundleError, qemu.QemuError, OSError),
                     quiet=args.quiet)
