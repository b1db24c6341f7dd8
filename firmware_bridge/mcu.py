"""`anyppg mcu --from FIRMWARE_RUN --out DIR`: the firmware bundle's preprocessing + generated
int8 inference on simulated Cortex-M boards (QEMU, exact instruction counts), checked byte for
byte against the golden vectors, with flash / RAM from the linked image, and the same .tflite
compiled for an Ethos-U55 with Vela. Writes DIR/mcu.json, DIR/mcu.md and DIR/manifest.json.

Per 10-s window (one hop): instructions for preprocessing (push of one hop + poll), for
inference and, where the sidecar has an "hr_refine" block, for the HR refinement (anyppg_hr.c:
its worst case, every candidate within the radius, counts in the total; its results are checked
against edge_runtime.hr_refine) separately; latency at ASSUMED_CLOCK_HZ with ASSUMED_CPI cycles per instruction
(QEMU models no pipeline: the CPI is an assumption, stated in the report); duty cycle per hop.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anyppg.runs import atomic_write_json, atomic_write_text, write_manifest
from edge_runtime.hr_refine import HRRefine
from firmware_bridge import qemu
from firmware_bridge.codegen import CodegenError, generate_inference
from firmware_bridge.golden import golden_refined_hr, load_golden
from firmware_bridge.mcu_image import attribute_sizes, build_image, golden_header, run_image
from firmware_bridge.vela import VelaError, compile_u55

ASSUMED_CLOCK_HZ = 64_000_000
ASSUMED_CPI = 1.25          # Cortex-M4 on int8 kernels from flash with wait states (assumption)
ANCHOR_TFLM_CMSIS_NN_INSNS = 7_140_000   # ../shared/DESIGN.md, same simulated M4, student-s
HR_C = Path(__file__).resolve().parent / "c" / "anyppg_hr.c"
HR_TOL_BPM = 0.002      # tests/firmware_bridge/test_hr_refine_c.py: C vs edge_runtime


@dataclass
class McuConfig:
    windows: int = 3                   # golden windows run per image
    boards: tuple[str, ...] = ("mps2-an386",)
    extra_boards: tuple[str, ...] = ("mps2-an500", "mps3-an547")   # tried with --all-boards
    opt: str = "-O2"
    vela: bool = True


class McuError(RuntimeError):
    """A one-line reason the MCU stage cannot run on this firmware run."""


def _find(run: Path, pattern: str, what: str, required: bool = True) -> Path | None:
    hits = sorted(p for p in run.rglob(pattern) if "_vela" not in p.name and "calib" not in p.name)
    if not hits and required:
        raise McuError(f"{run}: no {what} ({pattern}) in the firmware run")
    return hits[0] if hits else None


def locate(run: Path) -> dict[str, Path | None]:
    """The model, its sidecar, the golden set and the preprocessing sources in a firmware run."""
    tfl = _find(run, "model_int8.tflite", "int8 model", False) or _find(run, "*.tflite", "int8 model")
    side = tfl.with_suffix(".json")
    if not side.is_file():
        side = _find(run, "model_int8.json", "model sidecar")
    golden = _find(run, "golden.json", "golden vectors (golden.json)")
    dsp = _find(run, "anyppg_dsp.c", "C preprocessing", False)
    if dsp is not None and not (dsp.parent / "anyppg_model_settings.h").is_file():
        settings = _find(run, "anyppg_model_settings.h", "preprocessing settings", False)
        dsp = dsp if settings is None else dsp
    return {"tflite": tfl, "sidecar": side, "golden": golden.parent,
            "dsp_dir": dsp.parent if dsp is not None else None}


def hr_source(dsp_dir: Path | None, sidecar: dict) -> Path | None:
    """The HR refinement to build in: the firmware run's anyppg_hr.c (this package's where the
    run has none), when the sidecar has a block and the run's settings header carries it;
    McuError for a header generated before the block existed (it would measure a copy)."""
    if HRRefine.from_sidecar(sidecar) is None or dsp_dir is None:
        return None
    if "#define ANYPPG_HAS_HR_REFINE 1" not in (dsp_dir / "anyppg_model_settings.h").read_text():
        raise McuError(f"{dsp_dir / 'anyppg_model_settings.h'}: no HR refinement although the "
                       f"sidecar has an hr_refine block (regenerate with `anyppg firmware`)")
    own = dsp_dir / "anyppg_hr.c"
    return own if own.is_file() else HR_C


def check_hr(run: dict, golden: dict, sidecar: dict) -> float | None:
    """max |board - edge_runtime.refine_hr| (bpm) of the refined hr over the windows run, with
    the network's hr dequantised in float32 as the harness does; None without a refinement."""
    got = np.asarray(run.get("hr_refined") or [], np.float64)
    want = golden_refined_hr(golden, sidecar, len(got)) if len(got) else None
    return None if want is None else float(np.abs(got - want).max())


_ARENA_PROBE = ("import sys, tflite_micro; "
                "tflite_micro.runtime.Interpreter.from_file(sys.argv[1]).print_allocations()")


def tflm_arena(tflite: Path) -> dict:
    """TFLite Micro's arena for the same file (tflite-micro wheel, print_allocations; it prints
    through C stdio, so it runs in a child process whose output is read)."""
    res = subprocess.run([sys.executable, "-c", _ARENA_PROBE, str(tflite)], capture_output=True,
                         text=True, timeout=120)
    vals: dict = {}
    for key in ("total", "head", "tail"):
        for line in (res.stdout + res.stderr).splitlines():
            if f"Arena allocation {key} " in line:
                vals[f"arena_{key}_bytes"] = int(line.split()[-2])
    vals["note"] = "host build of the wheel (64-bit pointers); head = activation plan"
    return vals


def _per_window(run: dict, hop_raw: int, n_raw_used: int) -> dict:
    infer = run["infer_insns"]
    poll = run["poll_insns"]
    k = max(1, run["windows"])
    push = run["push_total_insns"]
    push_per_hop = round(push * hop_raw / n_raw_used) if push is not None and n_raw_used else None
    pre = (max(poll) + push_per_hop) if poll and push_per_hop is not None else None
    inf = max(infer) if infer else None
    hr = run.get("hr_worst_insns")
    total = (pre or 0) + (inf or 0) + (hr or 0)
    return {"preprocessing_insns": pre, "poll_insns_max": max(poll) if poll else None,
            "push_insns_per_hop": push_per_hop, "inference_insns": inf,
            "inference_insns_all_windows": infer, "hr_refine_insns": hr,
            "hr_refine_insns_all_windows": run.get("hr_insns") or None,
            "total_insns": total, "windows": k}


def _timing(total: int, hop_s: float) -> dict:
    lat = total * ASSUMED_CPI / ASSUMED_CLOCK_HZ
    return {"latency_ms": round(lat * 1e3, 3), "duty_cycle_pct": round(100 * lat / hop_s, 4)}


def _budget(sizes: dict, stack: int | None) -> dict:
    parts = ("model", "kernels", "preprocessing", "hr_refine")
    flash = sum(sizes.get(g, {}).get("flash", 0) for g in parts)
    ram = sum(sizes.get(g, {}).get("ram", 0) for g in parts)
    return {"flash_bytes": flash, "static_ram_bytes": ram, "stack_bytes": stack,
            "ram_bytes": ram + (stack or 0), "by_group": sizes}


def measure(run_dir: Path, out: Path, cfg: McuConfig, boards: tuple[str, ...], log) -> dict:
    loc = locate(run_dir)
    model_bytes = loc["tflite"].read_bytes()
    sidecar = json.loads(loc["sidecar"].read_text())
    golden = load_golden(loc["golden"])
    work = out / "build"
    gen = work / "gen"
    facts = generate_inference(model_bytes, sidecar, gen)
    with_dsp = loc["dsp_dir"] is not None
    hr_c = hr_source(loc["dsp_dir"], sidecar)
    hop = int(golden["hop"])
    hop_raw = int(round(hop * golden["sensor_fs"] / golden["ppg_fs"]))
    header = golden_header(golden, facts, cfg.windows, with_dsp, chunk=max(1, hop_raw))
    atomic_write_text(work / "anyppg_mcu_golden.h", header)
    n_raw_used = int(header.split("ANYPPG_MCU_N_RAW ")[1].split("u")[0])
    hop_s = hop / float(golden["ppg_fs"])
    rows = []
    for board in boards:
        for variant in ("dsp", "portable") if board == "mps2-an386" else ("dsp",):
            try:
                b = build_image(work, gen, loc["dsp_dir"], board, variant, cfg.opt, hr_c)
                r = run_image(b)
            except qemu.QemuError as e:
                rows.append({"board": board, "variant": variant, "error": str(e)})
                log(f"{board} {variant}: {e}")
                continue
            r.update(_per_window(r, hop_raw, n_raw_used))
            r["hr_refine_max_abs_diff_bpm"] = check_hr(r, golden, sidecar)
            r.update(_timing(r["total_insns"], hop_s))
            r.update(_budget(attribute_sizes(b.elf), (r["stack_infer_bytes"] or 0) if not with_dsp else
                             max(r["stack_infer_bytes"] or 0, r["stack_poll_bytes"] or 0,
                                 r["stack_hr_bytes"] or 0)))
            r["elf"] = str(b.elf.relative_to(out))
            rows.append(r)
            log(f"{board} {variant}: inference {r['inference_insns']} insns, preprocessing "
                f"{r['preprocessing_insns']}, HR refinement {r['hr_refine_insns']}, "
                f"bit-exact {r['bit_exact']}")
    res = {"firmware_run": str(run_dir), "model": str(loc["tflite"]), "golden": str(loc["golden"]),
           "with_preprocessing": with_dsp, "with_hr_refine": hr_c is not None, "hop_s": hop_s,
           "assumptions": {"clock_hz": ASSUMED_CLOCK_HZ, "cycles_per_instruction": ASSUMED_CPI,
                           "note": "QEMU counts instructions exactly (-icount shift=0); it models no "
                                   "pipeline, so latency = instructions x assumed CPI / clock"},
           "codegen": {k: facts[k] for k in ("arena_bytes", "arena_bytes_unshared", "weight_bytes",
                                             "macs", "layers")},
           "tflm": tflm_arena(loc["tflite"]), "runs": rows}
    res["tflm"]["anchor_insns_tflm_cmsis_nn"] = ANCHOR_TFLM_CMSIS_NN_INSNS
    m4 = next((r for r in rows if r.get("board") == "mps2-an386" and r.get("variant") == "dsp"
               and "error" not in r), None)
    if m4 and m4["inference_insns"]:
        res["speedup_vs_tflm_cmsis_nn"] = round(ANCHOR_TFLM_CMSIS_NN_INSNS / m4["inference_insns"], 2)
    if cfg.vela:
        try:
            res["ethos_u55"] = compile_u55(loc["tflite"], out / "vela")
        except VelaError as e:
            res["ethos_u55"] = {"error": str(e)}
    return res


def markdown(res: dict) -> str:
    a = res["assumptions"]
    lines = [f"# MCU: {res['model']}", "",
             f"Per window (hop {res['hop_s']:g} s); latency at {a['clock_hz'] / 1e6:g} MHz assuming "
             f"{a['cycles_per_instruction']} cycles per instruction. Flash: model weights and constants, "
             "kernels, preprocessing code and tables, HR refinement (no harness or libc). RAM: static + "
             "stack high-water. HR refinement: its worst case (hr mid-bins: every candidate within the "
             "radius), which the total includes; n/a where the sidecar has no hr_refine block.", "",
             "| board | kernels | preprocessing insns | inference insns | HR refinement insns | total | "
             "latency ms | duty % | flash B | RAM B (static + stack) | inference bit-exact | "
             "preprocessing bit-exact |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        if "error" in r:
            lines.append(f"| {r['board']} | {r['variant']} | failed: {r['error']} ||||||||||")
            continue
        hr = r.get("hr_refine_insns")
        lines.append(f"| {r['board']} | {r['variant']} | {r['preprocessing_insns']} | {r['inference_insns']} | "
                     f"{hr if hr is not None else 'n/a'} | {r['total_insns']} | {r['latency_ms']} | "
                     f"{r['duty_cycle_pct']} | {r['flash_bytes']} | "
                     f"{r['ram_bytes']} ({r['static_ram_bytes']} + {r['stack_bytes']}) | {r['bit_exact']} | "
                     f"{r['preprocessing_exact'] if res['with_preprocessing'] else 'n/a'} |")
    t, c = res["tflm"], res["codegen"]
    lines += ["", "| arena | bytes |", "|---|---|",
              f"| TFLite Micro (wheel, print_allocations: total / activations) | {t.get('arena_total_bytes')} / "
              f"{t.get('arena_head_bytes')} |",
              f"| generated, planned by lifetimes (same for plain C and DSP builds) | {c['arena_bytes']} |",
              f"| generated, no sharing | {c['arena_bytes_unshared']} |", ""]
    m4 = [r for r in res["runs"] if r.get("hr_refine_max_abs_diff_bpm") is not None]
    if m4:
        lines.append(f"HR refinement on the golden windows (their own network hr): "
                     f"{', '.join(str(v) for v in m4[0]['hr_refine_insns_all_windows'])} instructions; "
                     f"max |board - edge_runtime.hr_refine| "
                     f"{max(r['hr_refine_max_abs_diff_bpm'] for r in m4):.2g} bpm (tolerance {HR_TOL_BPM:g}).")
    if "speedup_vs_tflm_cmsis_nn" in res:
        lines.append(f"Inference vs TFLite Micro + CMSIS-NN (7.14 M instructions, ../shared/DESIGN.md): "
                     f"{res['speedup_vs_tflm_cmsis_nn']}x fewer.")
    u = res.get("ethos_u55")
    if u and "error" not in u:
        lines += ["", f"Ethos-U55-128 (Vela, {u['system_config']}, {u['memory_mode']}): {u['cycles_total']} cycles "
                  f"({u['cycles_npu']} NPU), {u['time_us']:.1f} us at {u['clock_hz'] / 1e6:g} MHz, SRAM "
                  f"{u['sram_kib']:.1f} KiB, flash {u['flash_kib']:.1f} KiB, NPU ops {u['npu_ops']}, CPU ops "
                  f"{u['cpu_ops']} {u['cpu_fallback'] or ''}"]
    elif u:
        lines += ["", f"Ethos-U55: {u['error']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="anyppg mcu", description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", required=True, help="firmware run folder (anyppg firmware)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--windows", type=int, default=McuConfig.windows)
    ap.add_argument("--all-boards", action="store_true", help="also the Cortex-M7 and M55 boards")
    ap.add_argument("--no-vela", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    cfg = McuConfig(windows=a.windows, vela=not a.no_vela)
    log = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))
    src, out = Path(a.src), Path(a.out)
    if not src.is_dir():
        print(f"anyppg mcu: {src}: no such firmware run folder", file=sys.stderr)
        return 2
    why = qemu.missing_tools()
    if why:
        print(f"anyppg mcu: cannot simulate: {why}", file=sys.stderr)
        return 2
    boards = cfg.boards + (cfg.extra_boards if a.all_boards else ())
    out.mkdir(parents=True, exist_ok=True)
    try:
        res = measure(src, out, cfg, boards, log)
    except (McuError, CodegenError, qemu.QemuError, ValueError, OSError) as e:
        print(f"anyppg mcu: {e}", file=sys.stderr)
        return 1
    atomic_write_json(out / "mcu.json", res)
    atomic_write_text(out / "mcu.md", markdown(res))
    ok = all(r.get("bit_exact") and (r.get("hr_refine_max_abs_diff_bpm") or 0.0) <= HR_TOL_BPM
             for r in res["runs"] if r.get("board") == "mps2-an386")
    write_manifest(out, "mcu", {**asdict(cfg), "boards": list(boards)}, {"model": res["model"]},
                   {"bit_exact_m4": ok, **({"speedup": res["speedup_vs_tflm_cmsis_nn"]}
                                            if "speedup_vs_tflm_cmsis_nn" in res else {})})
    log(markdown(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
