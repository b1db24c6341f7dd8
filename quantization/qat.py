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
   via `training.losses.distill_losses`; heads: MSE between standardised head outputs), plus the
   label losses of `training.losses.head_losses` on the heads the distill run trained.
5. Write checkpoints/latest.pt ('model': the brevitas state dict; 'float_model': the float
   student; 'model_name', 'model_config', 'spec', 'label_norm' carried over), metrics.jsonl,
   and manifest.json with fake-quant vs float metrics on the validation/test split.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anyppg.config import to_dict
from anyppg.runs import CHECKPOINT, METRICS, atomic_dir, atomic_path, selection_record, write_manifest
from anyppg.stage import add_run_io, one_line, run_stage, stage_config, stage_parser
from training.data.store import WindowStore
from training.heads import head_norm, label_matrix
from training.loop import lr_at
from training.losses import distill_losses, head_losses
from training.models.student import HEAD_FIELDS, HEAD_NAMES, REGRESSION_HEADS

from . import qmodel as qm
from .qat_model import QATModel, load_distilled, prepare


@dataclass
class QATConfig:
    batch_size: int = 64
    epochs: int = 0
    max_steps: int = 300            # > 0: stop after this many steps
    lr: float = 5e-4                # weights and biases
    # activation scales / zero points: brevitas learns the scale itself (not its log), so Adam's
    # ~lr-sized steps are relative jumps of lr/scale (scales are ~0.01-0.05): keep this tiny,
    # the calibrated ranges then move only gently. Settings like this one are compared on the
    # `selection_split` (metrics['val']); parity is reported on the test split, whose patients
    # tuned nothing.
    scale_lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 20
    calib_windows: int = 512        # windows for the initial activation statistics
    w_embed: float = 1.0            # distillation to the float student's embedding (MSE, standardised)
    w_embed_cos: float = 10.0       # ... and 1 - cosine of the raw embeddings (the parity metric)
    w_heads_kd: float = 1.0         # distillation to the float student's (standardised) heads
    # label losses (training.losses.head_losses) on the heads the distill run trained. Off by
    # default: QAT's job is to make the int8 model compute what the float student computes,
    # and label terms pull it away from that (on a short distill run they "improve" HR while
    # the int8-vs-float agreement gets worse).
    head_weight: float = 0.0
    seed: int = 0
    threads: int = 0
    log_every: int = 10
    eval_windows: int = 1024        # cap on validation/test windows scored at the end
    # the split QAT settings are tuned on; its subjects are recorded in the manifest as
    # selection subjects (probes and reports exclude them); "" when nothing was tuned
    selection_split: str = "val"


def outputs_z(out, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Standardised head outputs (B, H), HEAD_NAMES order, of a student's output tuple, read by
    name (0 for a head the student does not output)."""
    zero = torch.zeros_like(out.hr)
    heads = torch.stack([(getattr(out, HEAD_FIELDS[h]) - mean[i]) / std[i]
                         if hasattr(out, HEAD_FIELDS[h]) else zero
                         for i, h in enumerate(HEAD_NAMES)], 1)
    return heads


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def compare(float_model, qg, x: np.ndarray, labels: np.ndarray | None = None,
            batch: int = 256) -> dict:
    """Fake-quant vs float on windows x (N, L): embedding cosine, per-head MAE vs float and vs
    labels (label units)."""
    qg.eval()
    fo, qo = [], []
    fields = None
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch]).unsqueeze(1)
        fout = float_model(xb)
        fields = fields or list(fout._fields)
        fo.append({k: t.numpy() for k, t in fout._asdict().items()})
        qo.append({k: t.numpy() for k, t in qg(xb)._asdict().items()})
    f = {k: np.concatenate([o[k] for o in fo]) for k in fields}
    q = {k: np.concatenate([o[k] for o in qo]) for k in fields}
    fe, qe = f["embedding"], q["embedding"]
    cos = np.sum(fe * qe, 1) / (np.linalg.norm(fe, axis=1) * np.linalg.norm(qe, axis=1) + 1e-12)
    res = {"n_windows": int(len(x)), "embedding_cosine_mean": float(cos.mean()),
           "embedding_cosine_min": float(cos.min())}
    if "hr_confidence" in f:
        res["hr_confidence_mae_vs_float"] = float(np.abs(q["hr_confidence"] - f["hr_confidence"]).mean())
    for j, h in enumerate(HEAD_NAMES):
        k = HEAD_FIELDS[h]
        if k not in f:
            continue
        res[f"{h}_mae_vs_float"] = float(np.abs(q[k] - f[k]).mean())
        if labels is not None:
            y = labels[:, j]
            m = np.isfinite(y)
            if m.any() and h in REGRESSION_HEADS:
                res[f"{h}_mae_float"] = float(np.abs(f[k][m] - y[m]).mean())
                res[f"{h}_mae_int8"] = float(np.abs(q[k][m] - y[m]).mean())
                res[f"{h}_mae_increase"] = res[f"{h}_mae_int8"] - res[f"{h}_mae_float"]
    return res


def evaluate_splits(student, qg, data: Path, n: int) -> dict:
    """compare() on the first `n` windows of the val and test splits (skipped where absent)."""
    out = {}
    for split in ("val", "test"):
        try:
            st = WindowStore(data, split=split)
        except ValueError as e:
            out[split] = {"skipped": one_line(e)}
            continue
        if len(st) == 0:
            out[split] = {"skipped": f"no {split} windows"}
            continue
        xs = st.column("ppg").astype(np.float32)[:n]
        ys, _ = label_matrix(st, student.label_norm, student.model)
        out[split] = compare(student.model, qg, xs, ys[:n])
    return out


# ----------------------------------------------------------------------------- training
def _optimizer(cfg: QATConfig, qg):
    """AdamW with the activation scales / zero points in their own (tiny-LR) group."""
    scale_params = [p for nme, p in qg.named_parameters() if ".act_quant." in nme or "aq_" in nme.split(".")[0]]
    ids = {id(p) for p in scale_params}
    weight_params = [p for p in qg.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": weight_params, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                             {"params": scale_params, "lr": cfg.scale_lr, "weight_decay": 0.0}])
    return opt, [cfg.lr, cfg.scale_lr]


def _total(cfg: QATConfig, n: int) -> int:
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps else steps_per_epoch * max(1, cfg.epochs)
    if cfg.epochs and cfg.max_steps:
        total = min(total, steps_per_epoch * cfg.epochs)
    return total


def _setup(cfg: QATConfig, src: Path, data: Path):
    """The float student, the training store (same signal spec), the folded teacher graph and
    its calibrated brevitas twin."""
    student, ck = load_distilled(src)
    store = WindowStore(data, split="train")
    if len(store) == 0:
        raise ValueError(f"{data}: no training windows")
    student.spec.check_compatible(store.spec, f"store {data}")
    torch.manual_seed(cfg.seed)
    m = prepare(student)
    m.folded.eval()
    for p in m.folded.parameters():
        p.requires_grad_(False)
    _, calib = store.sample_ppg(cfg.calib_windows, cfg.seed)
    qm.calibrate(m.qg, [torch.from_numpy(calib).unsqueeze(1)])      # one batch: global statistics
    return student, ck, store, m, calib


def train(cfg: QATConfig, src: Path, data: Path, out: Path, quiet: bool = False,
          overwrite: bool = False) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    student, ck, store, m, calib = _setup(cfg, src, data)
    folded, qg = m.folded, m.qg
    x_all = store.column("ppg").astype(np.float32)
    y_all, norm = label_matrix(store, student.label_norm, student.model)
    mean, std = head_norm(student.label_norm, student.model)
    with torch.no_grad():
        e_std = folded(torch.from_numpy(calib).unsqueeze(1)).embedding.std(0).clamp_min(1e-6)
    pre = compare(folded, qg, calib[:256])

    n = len(x_all)
    total = _total(cfg, n)
    opt, base_lrs = _optimizer(cfg, qg)
    w_heads = torch.tensor([1.0 if norm[h]["trained"] else 0.0 for h in HEAD_NAMES])
    g = torch.Generator().manual_seed(cfg.seed)
    log: list[dict] = []
    qg.train()
    t0 = time.perf_counter()
    step, pos = 0, 0
    perm = torch.randperm(n, generator=g)
    while step < total:
        if pos + cfg.batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + cfg.batch_size].numpy()
        pos += cfg.batch_size
        xb = torch.from_numpy(x_all[idx]).unsqueeze(1)
        for gr, b in zip(opt.param_groups, base_lrs):
            gr["lr"] = b * lr_at(step, 1.0, cfg.warmup_steps, total)
        with torch.no_grad():
            fo = folded(xb)
        qo = qg(xb)
        zq = outputs_z(qo, mean, std)
        l_cos, _ = distill_losses(qo.embedding, fo.embedding)                 # raw embeddings
        _, l_mse = distill_losses(qo.embedding / e_std, fo.embedding / e_std)   # per-dimension standardised
        l_kd = F.mse_loss(zq, outputs_z(fo, mean, std))
        if hasattr(qo, "hr_confidence"):    # a probability: keep the int8 twin's calibration
            l_kd = l_kd + F.mse_loss(qo.hr_confidence, fo.hr_confidence)
        hl = head_losses(zq, torch.from_numpy(y_all[idx]), norm)
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
            log.append({"step": step, "loss": loss.item(), "embed_cos_loss": l_cos.item(),
                        "embed_mse": l_mse.item(), "heads_kd": l_kd.item(),
                        "labels": float(torch.as_tensor(l_lab).detach()), "seconds": time.perf_counter() - t0})
            if not quiet:
                print(json.dumps(log[-1]), file=sys.stderr)
    qg.eval()
    metrics: dict = {"steps": step, "train_seconds": time.perf_counter() - t0, "before_qat_calib": pre,
                     "train": log[-1] if log else {}, **evaluate_splits(student, qg, data, cfg.eval_windows)}
    _write_run(cfg, src, data, out, overwrite, m, ck, step, log, metrics)
    return metrics


def _split_subjects(data: Path, split: str) -> list[str]:
    if not split:
        return []
    try:
        return sorted(set(WindowStore(data, split=split).subject_ids()))
    except ValueError:
        return []


def _write_run(cfg, src, data, out, overwrite, m: QATModel, ck: dict, step: int, log, metrics) -> None:
    """checkpoints/latest.pt, metrics.jsonl and manifest.json, built in a temp folder."""
    student, qg = m.student, m.qg
    with atomic_dir(out, overwrite=overwrite) as tmp:
        ckpt = {"stage": "qat", "model": {k: v.detach().cpu() for k, v in qg.state_dict().items()},
                "float_model": {k: v.detach().cpu() for k, v in student.model.state_dict().items()},
                "model_name": student.name, "model_config": ck.get("model_config") or student.config,
                "spec": student.spec.to_dict(), "label_norm": student.label_norm, "step": step,
                "qat_config": to_dict(cfg), "source": str(Path(src).resolve())}
        (tmp / CHECKPOINT.parent).mkdir()
        with atomic_path(tmp / CHECKPOINT) as p:
            torch.save(ckpt, p)
        (tmp / METRICS).write_text("".join(json.dumps(r) + "\n" for r in log))
        write_manifest(tmp, "qat", to_dict(cfg), {"distill_checkpoint": str(student.path),
                                                  "store_index": str(Path(data) / "index.json")},
                       metrics, extra={"store": str(Path(data).resolve()), "model_name": student.name,
                                       **selection_record(data, cfg.selection_split,
                                                          _split_subjects(data, cfg.selection_split)),
                                       "reported_on": "test",
                                       "checkpoint": str(out / CHECKPOINT),
                                       "spec": student.spec.to_dict(),
                                       "quantisation": {
                                           "weights": "int8 per-channel symmetric narrow [-127,127]",
                                           "biases": "int32, scale = input_scale * weight_scale",
                                           "activations": "8-bit per-tensor (uint8 after ReLU, "
                                                          "asymmetric elsewhere) = TFLite int8",
                                           "batchnorm": "folded before QAT"}})


def main(argv=None) -> int:
    p = stage_parser("anyppg qat", __doc__, config_stage="qat")
    add_run_io(p, src="distill run folder (or its checkpoint)", data="window store (training split fine-tunes)",
               out="QAT run folder", overwrite=True)
    args = p.parse_args(argv)
    return run_stage("anyppg qat", lambda: train(stage_config(QATConfig(), "qat", args), Path(args.src),
                                                 Path(args.data), Path(args.out), args.quiet, args.overwrite),
                     errors=(qm.Int8PathError,), quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
