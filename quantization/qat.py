"""`anyppg qat`: quantisation-aware fine-tuning of a distilled student (brevitas, 8w8a).

    anyppg qat --from runs/x/distill --data stores/x --out runs/x/qat [--config cpu-small]

1. Rebuild the float student from the distill run (registry name + config + weights); refuse
   anything that is not a registered student or whose ops the int8 path cannot carry, naming
   the layer.
2. Fold every BatchNorm into its conv (and the heads' de-normalisation into the head Linear)
   *before* QAT, so the weights QAT trains are exactly the weights that ship.
3. Place brevitas quantisers where the full-int8 TFLite file has quantisation parameters
   (`quantization.qmodel`): int8 per-channel symmetric narrow-range weights, int32 biases at
   input_scale x weight_scale, 8-bit per-tensor activations (uint8 after a fused ReLU = TFLite
   int8 with zero point -128; asymmetric elsewhere).
4. Initialise activation ranges from statistics on training windows (brevitas calibration),
   then fine-tune weights and ranges with the distillation losses: the float student is the
   teacher (embedding: 1 - cos of the raw embeddings + MSE of per-dimension standardised ones,
   via `training.distill.distill_losses`; heads: MSE between standardised head outputs), plus the
   label losses of `training.distill.head_losses` on the heads the distill run trained.
5. Write checkpoints/latest.pt ('model': the brevitas state dict; 'float_model': the float
   student; 'model_name', 'model_config', 'spec', 'label_norm' carried over), metrics.jsonl,
   and manifest.json with fake-quant vs float metrics on the validation/test split.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anyppg.config import ConfigError, load_config, to_dict
from anyppg.runs import atomic_dir, atomic_path, write_manifest

from . import qmodel as qm
from .student_io import (LoadedStudent, StudentLoadError, build_student, label_norm_simple,
                         load_checkpoint, require_int8_path)

HEAD_FIELDS = ("hr", "rr", "af_logit", "quality_logit", "sbp", "dbp")


@dataclass
class QATConfig:
    batch_size: int = 64
    epochs: int = 0
    max_steps: int = 300            # > 0: stop after this many steps
    lr: float = 5e-4                # weights and biases
    # activation scales / zero points: brevitas learns the scale itself (not its log), so Adam's
    # ~lr-sized steps are relative jumps of lr/scale (scales are ~0.01-0.05): keep this tiny,
    # the calibrated ranges then move only gently (measured better on BIDMC than 1e-3)
    scale_lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 20
    calib_windows: int = 512        # windows for the initial activation statistics
    w_embed: float = 1.0            # distillation to the float student's embedding (MSE, standardised)
    w_embed_cos: float = 10.0       # ... and 1 - cosine of the raw embeddings (the parity metric)
    w_heads_kd: float = 1.0         # distillation to the float student's (standardised) heads
    # label losses (training.distill.head_losses) on the heads the distill run trained. Off by
    # default: QAT's job is to make the int8 model compute what the float student computes,
    # and label terms pull it away from that (on a short distill run they "improve" HR while
    # the int8-vs-float agreement gets worse).
    head_weight: float = 0.0
    seed: int = 0
    threads: int = 0
    log_every: int = 10
    eval_windows: int = 1024        # cap on validation/test windows scored at the end
    eval_split: str = "test"


def _one_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


# ----------------------------------------------------------------------------- model setup
@dataclass
class QATModel:
    student: LoadedStudent
    folded: torch.fx.GraphModule     # float, BN folded (the teacher and the ONNX graph)
    qg: qm.QuantGraph                # brevitas twin


def prepare(student: LoadedStudent) -> QATModel:
    require_int8_path(student.model, student.name)
    folded = qm.fold_for_int8(student.model)
    return QATModel(student, folded, qm.build_quant_model(folded))


def load_qat_run(run: str | Path) -> QATModel:
    """Rebuild the brevitas student of a QAT run (float student from 'float_model', then the
    quantised graph, then its state)."""
    ck, path = load_checkpoint(run)
    if "float_model" not in ck or ck.get("stage") != "qat":
        raise StudentLoadError(f"{path}: not a QAT checkpoint (run `anyppg qat` first)")
    student = build_student(ck, path, state_key="float_model")
    m = prepare(student)
    m.qg.load_state_dict(ck["model"], strict=True)
    m.qg.eval()
    return m


def head_norm(student: LoadedStudent) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per head output, HEAD_FIELDS order: what standardises the label-unit outputs."""
    from training.models.student import HEAD_NAMES
    ln = label_norm_simple(student.label_norm)
    model_norm = student.model.label_norm()
    mean, std = [], []
    for h in HEAD_NAMES:
        m, s = model_norm[h]
        if h in ln and "mean" in ln[h]:
            m, s = ln[h]["mean"], ln[h]["std"]
        mean.append(float(m))
        std.append(float(s) if s and s > 0 else 1.0)
    return torch.tensor(mean), torch.tensor(std)


def outputs_z(out, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    heads = torch.stack([out[i + 1] for i in range(len(HEAD_FIELDS))], 1)
    return (heads - mean) / std


# ----------------------------------------------------------------------------- data
def _windows(store, n: int | None, seed: int) -> np.ndarray:
    x = store.column("ppg")
    if n is not None and len(x) > n:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))
        x = x[idx]
    return np.ascontiguousarray(x, np.float32)


def head_labels(store, student: LoadedStudent) -> tuple[np.ndarray, dict]:
    """(N, 6) labels in label units (NaN unknown) for the store's windows, in head order, and
    the norm dict training.distill.head_losses wants."""
    from training.models.student import HEAD_NAMES
    ln = label_norm_simple(student.label_norm)
    mean, std = head_norm(student)
    norm, cols = {}, []
    for i, h in enumerate(HEAD_NAMES):
        lbl = ln.get(h, {}).get("label")
        trained = bool(ln.get(h, {}).get("trained", lbl is not None))
        if lbl is None and h in store.label_names:
            lbl = h
        col = store.column(lbl) if (lbl and lbl in store.label_names) else \
            np.full(len(store), np.nan, np.float32)
        cols.append(col.astype(np.float32))
        norm[h] = {"mean": float(mean[i]), "std": float(std[i]), "label": lbl,
                   "trained": trained and lbl is not None and lbl in store.label_names}
    return np.stack(cols, 1), norm


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def compare(float_model, qg, x: np.ndarray, labels: np.ndarray | None = None,
            batch: int = 256) -> dict:
    """Fake-quant vs float on windows x (N, L): embedding cosine, per-head MAE vs float and vs
    labels (label units)."""
    from training.models.student import HEAD_NAMES
    qg.eval()
    fo, qo = [], []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch]).unsqueeze(1)
        fo.append([t.numpy() for t in float_model(xb)])
        qo.append([t.numpy() for t in qg(xb)])
    f = [np.concatenate([o[k] for o in fo]) for k in range(len(fo[0]))]
    q = [np.concatenate([o[k] for o in qo]) for k in range(len(qo[0]))]
    cos = np.sum(f[0] * q[0], 1) / (np.linalg.norm(f[0], axis=1) * np.linalg.norm(q[0], axis=1) + 1e-12)
    res = {"n_windows": int(len(x)), "embedding_cosine_mean": float(cos.mean()),
           "embedding_cosine_min": float(cos.min())}
    for j, h in enumerate(HEAD_NAMES):
        res[f"{h}_mae_vs_float"] = float(np.abs(q[j + 1] - f[j + 1]).mean())
        if labels is not None:
            y = labels[:, j]
            m = np.isfinite(y)
            if m.any() and h not in ("af", "quality"):
                res[f"{h}_mae_float"] = float(np.abs(f[j + 1][m] - y[m]).mean())
                res[f"{h}_mae_int8"] = float(np.abs(q[j + 1][m] - y[m]).mean())
                res[f"{h}_mae_increase"] = res[f"{h}_mae_int8"] - res[f"{h}_mae_float"]
    return res


# ----------------------------------------------------------------------------- training
def lr_factor(step: int, cfg: QATConfig, total: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def train(cfg: QATConfig, src: Path, data: Path, out: Path, quiet: bool = False,
          overwrite: bool = False) -> dict:
    from training.distill import distill_losses, head_losses
    from training.models.student import HEAD_NAMES
    from training.data.store import WindowStore
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ck, ck_path = load_checkpoint(src)
    if ck.get("stage") == "qat":
        raise StudentLoadError(f"{ck_path}: already a QAT checkpoint; --from takes a distill run")
    student = build_student(ck, ck_path)
    store = WindowStore(data, split="train")
    if len(store) == 0:
        raise ValueError(f"{data}: no training windows")
    sp, ss = student.spec, store.spec
    if (sp.ppg_fs, sp.ppg_len, tuple(sp.ppg_band_hz)) != (ss.ppg_fs, ss.ppg_len, tuple(ss.ppg_band_hz)):
        raise ValueError(f"{data}: store windows ({ss.ppg_fs} Hz x {ss.ppg_len}, band {ss.ppg_band_hz}) "
                         f"differ from the student's ({sp.ppg_fs} Hz x {sp.ppg_len}, band {sp.ppg_band_hz})")
    torch.manual_seed(cfg.seed)
    m = prepare(student)
    folded, qg = m.folded, m.qg
    folded.eval()
    for p in folded.parameters():
        p.requires_grad_(False)

    x_all = store.column("ppg").astype(np.float32)
    y_all, norm = head_labels(store, student)
    mean, std = head_norm(student)
    calib = _windows(store, cfg.calib_windows, cfg.seed)
    qm.calibrate(qg, [torch.from_numpy(calib).unsqueeze(1)])      # one batch: global statistics
    with torch.no_grad():
        e_f = folded(torch.from_numpy(calib).unsqueeze(1))[0]
        e_std = e_f.std(0).clamp_min(1e-6)
    pre = compare(folded, qg, calib[:256])

    n = len(x_all)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps else steps_per_epoch * max(1, cfg.epochs)
    if cfg.epochs and cfg.max_steps:
        total = min(total, steps_per_epoch * cfg.epochs)
    scale_params = [p for nme, p in qg.named_parameters() if ".act_quant." in nme or "aq_" in nme.split(".")[0]]
    ids = {id(p) for p in scale_params}
    weight_params = [p for p in qg.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": weight_params, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                             {"params": scale_params, "lr": cfg.scale_lr, "weight_decay": 0.0}])
    base_lrs = [cfg.lr, cfg.scale_lr]
    w_heads = torch.tensor([1.0 if norm[h]["trained"] else 0.0 for h in HEAD_NAMES])
    g = torch.Generator().manual_seed(cfg.seed)
    log: list[dict] = []
    qg.train()
    t0 = time.perf_counter()
    step = 0
    perm = torch.randperm(n, generator=g)
    pos = 0
    while step < total:
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + cfg.batch_size].numpy()
        pos += cfg.batch_size
        xb = torch.from_numpy(x_all[idx]).unsqueeze(1)
        yb = torch.from_numpy(y_all[idx])
        for gr, b in zip(opt.param_groups, base_lrs):
            gr["lr"] = b * lr_factor(step, cfg, total)
        with torch.no_grad():
            fo = folded(xb)
            zf = outputs_z(fo, mean, std)
        qo = qg(xb)
        zq = outputs_z(qo, mean, std)
        l_cos, _ = distill_losses(qo[0], fo[0])                 # raw embeddings
        _, l_mse = distill_losses(qo[0] / e_std, fo[0] / e_std)   # per-dimension standardised
        l_kd = F.mse_loss(zq, zf)
        hl = head_losses(zq, yb, norm)
        l_lab = sum(w_heads[i] * hl[h] for i, h in enumerate(HEAD_NAMES))
        loss = cfg.w_embed_cos * l_cos + cfg.w_embed * l_mse + cfg.w_heads_kd * l_kd + cfg.head_weight * l_lab
        if not torch.isfinite(loss):
            raise FloatingPointError(f"QAT step {step + 1}: loss is {float(loss)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(qg.parameters()), 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == total:
            rec = {"step": step, "loss": loss.item(), "embed_cos_loss": l_cos.item(),
                   "embed_mse": l_mse.item(), "heads_kd": l_kd.item(), "labels": float(torch.as_tensor(l_lab).detach()),
                   "seconds": time.perf_counter() - t0}
            log.append(rec)
            if not quiet:
                print(json.dumps(rec), file=sys.stderr)
    qg.eval()
    train_s = time.perf_counter() - t0

    metrics: dict = {"steps": step, "train_seconds": train_s, "before_qat_calib": pre,
                     "train": log[-1] if log else {}}
    for split in ("val", "test"):
        try:
            st = WindowStore(data, split=split)
        except ValueError as e:
            metrics[split] = {"skipped": _one_line(e)}
            continue
        if len(st) == 0:
            metrics[split] = {"skipped": f"no {split} windows"}
            continue
        xs = st.column("ppg").astype(np.float32)[: cfg.eval_windows]
        ys, _ = head_labels(st, student)
        metrics[split] = compare(student.model, qg, xs, ys[: cfg.eval_windows])

    with atomic_dir(out, overwrite=overwrite) as tmp:
        ckpt = {"stage": "qat", "model": {k: v.detach().cpu() for k, v in qg.state_dict().items()},
                "float_model": {k: v.detach().cpu() for k, v in student.model.state_dict().items()},
                "model_name": student.name, "model_config": ck.get("model_config") or student.config,
                "spec": student.spec.to_dict(), "label_norm": student.label_norm, "step": step,
                "qat_config": to_dict(cfg), "source": str(Path(src).resolve())}
        (tmp / "checkpoints").mkdir()
        with atomic_path(tmp / "checkpoints" / "latest.pt") as p:
            torch.save(ckpt, p)
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        write_manifest(tmp, "qat", to_dict(cfg), {"distill_checkpoint": str(ck_path),
                                                  "store_index": str(Path(data) / "index.json")},
                       metrics, extra={"store": str(Path(data).resolve()), "model_name": student.name,
                                       "checkpoint": str(out / "checkpoints" / "latest.pt"),
                                       "spec": student.spec.to_dict(),
                                       "quantisation": {
                                           "weights": "int8 per-channel symmetric narrow [-127,127]",
                                           "biases": "int32, scale = input_scale * weight_scale",
                                           "activations": "8-bit per-tensor (uint8 after ReLU, "
                                                          "asymmetric elsewhere) = TFLite int8",
                                           "batchnorm": "folded before QAT"}})
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="anyppg qat", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="src", required=True, help="distill run folder (or its checkpoint)")
    p.add_argument("--data", required=True, help="window store (training split fine-tunes)")
    p.add_argument("--out", required=True, help="QAT run folder")
    p.add_argument("--config", default=None, help="configs/qat/<name>.yaml or a path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load_config(QATConfig(), "qat", args.config, args.set)
        metrics = train(cfg, Path(args.src), Path(args.data), Path(args.out), args.quiet, args.overwrite)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, FloatingPointError,
            qm.Int8PathError) as e:
        print(f"anyppg qat: error: {_one_line(e)}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(json.dumps(metrics, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
