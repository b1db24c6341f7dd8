"""Load published (or our own) encoder checkpoints into a registry model.

Checkpoints in the wild come in many wrappings:

    {'first_conv.conv.weight': ...}                       a raw state_dict
    {'state_dict': {...}, 'epoch': 5}                      a training-loop checkpoint
    {'module.first_conv.conv.weight': ...}                 saved from DataParallel / DDP
    {'ppg_encoder.first_conv...': ..., 'ecg_encoder...'}   a whole CLIP model's state_dict
    {'model': {'ppg_encoder': {...}, 'proj': {...}}}       nested sub-modules
    {..., 'dense.weight', 'dense.bias'}                    ECGFounder with its classifier head

`load_encoder_checkpoint` finds the tensors that belong to the encoder (every dict in the file is
a candidate, and within it every key prefix ending where 'first_conv.conv.weight' starts),
strips the prefix, tolerates a known classifier head, and loads with strict semantics. On a
mismatch it raises one ValueError that names what is missing, unexpected and mis-shaped, instead
of torch's multi-line dump.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .registry import ModelEntry

# Where training loops usually tuck the state dict, most conventional first (used to rank
# candidates when more than one fits).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
                "encoder", "ppg_encoder", "ecg_encoder", "ema_state_dict", "ema")
# Classifier heads that published encoders carry and an encoder does not need.
DEFAULT_EXTRA_PREFIXES = ("dense.", "classifier.", "fc.", "head.", "linear.")
# Any key of a Net1D starts a state dict here; it marks where an encoder's keys begin.
_ANCHOR = "first_conv.conv.weight"
_MAX_DEPTH = 4
_SHOW = 5


@dataclass
class LoadResult:
    """What `load_encoder_checkpoint` did.

    source:     where in the file the encoder was found, e.g. "['state_dict'] prefix 'module.'"
    loaded:     number of tensors copied into the model
    ignored:    checkpoint keys deliberately skipped (classifier head, other sub-modules)
    missing:    model keys left untouched (only non-empty when strict=False)
    unexpected: checkpoint keys under the encoder prefix that fit nothing (strict=False only)
    mismatched: 'key: ckpt [shape] vs model [shape]' entries skipped (strict=False only)
    """

    source: str
    loaded: int
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    path: tuple[str, ...]      # keys walked from the file's top-level object
    prefix: str                # stripped from every key of the encoder
    tensors: dict[str, Tensor] # encoder keys, prefix already stripped
    outside: list[str]         # keys of the same dict outside the prefix (other sub-modules)

    def describe(self) -> str:
        where = "".join(f"[{p!r}]" for p in self.path) or "top level"
        return f"{where} prefix {self.prefix!r}" if self.prefix else where


def _tensor_dicts(obj: Any, path: tuple[str, ...] = (), depth: int = 0):
    """Yield (path, {key: tensor}) for every mapping in `obj` holding tensors, depth-first."""
    if not isinstance(obj, Mapping) or depth > _MAX_DEPTH:
        return
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if tensors:
        yield path, tensors
    for k, v in obj.items():
        if isinstance(v, Mapping):
            yield from _tensor_dicts(v, path + (str(k),), depth + 1)


def _candidates(obj: Any) -> list[_Candidate]:
    out = []
    for path, tensors in _tensor_dicts(obj):
        prefixes = sorted({k[: -len(_ANCHOR)] for k in tensors if k.endswith(_ANCHOR)})
        if not prefixes:
            # No stem key at all: still a candidate (as a whole), so a wrong-architecture
            # checkpoint yields a missing/unexpected report rather than "nothing found".
            prefixes = [""]
        for prefix in prefixes:
            inside = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            outside = [k for k in tensors if not k.startswith(prefix)]
            out.append(_Candidate(path, prefix, inside, outside))
    return out


@dataclass
class _Diff:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    extra_ok: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _diff(model_sd: dict[str, Tensor], ckpt: dict[str, Tensor], extra_prefixes) -> _Diff:
    missing, mismatched = [], []
    for k, v in model_sd.items():
        if k not in ckpt:
            # num_batches_tracked only counts BN updates; older/hand-made checkpoints omit it.
            if not k.endswith("num_batches_tracked"):
                missing.append(k)
        elif tuple(ckpt[k].shape) != tuple(v.shape):
            mismatched.append(f"{k}: checkpoint {list(ckpt[k].shape)} vs model {list(v.shape)}")
    unexpected, extra_ok = [], []
    for k in ckpt:
        if k not in model_sd:
            (extra_ok if k.startswith(tuple(extra_prefixes)) else unexpected).append(k)
    return _Diff(missing, unexpected, mismatched, extra_ok)


def _rank(c: _Candidate, kind: str | None) -> tuple:
    """Smaller is better: the right modality's prefix/path, a conventional wrapper, shallow."""
    text = ".".join(c.path) + "." + c.prefix
    other = {"ppg": "ecg", "ecg": "ppg"}.get(kind or "", None)
    kind_rank = 0 if kind and kind in text else (2 if other and other in text else 1)
    wrap_rank = min((WRAPPER_KEYS.index(p) for p in c.path if p in WRAPPER_KEYS), default=len(WRAPPER_KEYS))
    return (kind_rank, len(c.path), wrap_rank, len(c.prefix))


def _fmt(items: list[str], what: str) -> str:
    if not items:
        return ""
    more = f", ... (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {what} ({', '.join(items[:_SHOW])}{more})"


def _read(path_or_state_dict: Any) -> tuple[Any, str]:
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = os.fspath(path_or_state_dict)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except Exception as e:  # pickle of arbitrary objects, corrupt file, ...
            raise ValueError(
                f"could not read {path} with torch.load(weights_only=True): {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}. If it pickles Python objects, re-save "
                "just its state_dict (tensors in dicts) from a trusted environment.") from None
    if isinstance(path_or_state_dict, Mapping):
        return path_or_state_dict, "<state_dict>"
    raise TypeError("load_encoder_checkpoint: expected a path or a (possibly wrapped) state_dict, "
                    f"got {type(path_or_state_dict).__name__}")


def load_encoder_checkpoint(entry_or_model: ModelEntry | nn.Module, path_or_state_dict: Any,
                            strict: bool = True,
                            allow_extra_prefixes: tuple[str, ...] = DEFAULT_EXTRA_PREFIXES,
                            prefix: str | None = None) -> LoadResult:
    """Load an encoder's weights from a checkpoint file or an in-memory (wrapped) state_dict.

    entry_or_model:      a ModelEntry (its input_kind helps choose between a PPG and an ECG
                         encoder stored in one file) or the nn.Module itself.
    path_or_state_dict:  a path (read with torch.load(weights_only=True) onto the CPU) or a dict.
    strict:              every model key must be found with the right shape and no stray keys
                         may remain under the encoder prefix (except `allow_extra_prefixes`);
                         otherwise ValueError. With strict=False, loads what fits and reports
                         the rest in the returned LoadResult.
    allow_extra_prefixes: keys (after prefix stripping) that may be present and are ignored,
                         e.g. ECGFounder's classifier 'dense.weight' / 'dense.bias'.
    prefix:              force the key prefix of the encoder ('' for none, 'module.',
                         'ppg_encoder.', ...). None: detect it.
    """
    model = entry_or_model.model if isinstance(entry_or_model, ModelEntry) else entry_or_model
    kind = entry_or_model.input_kind if isinstance(entry_or_model, ModelEntry) else None
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_encoder_checkpoint: expected a ModelEntry or nn.Module, "
                        f"got {type(entry_or_model).__name__}")
    obj, origin = _read(path_or_state_dict)
    model_sd = model.state_dict()

    cands = _candidates(obj)
    if prefix is not None:
        cands = []
        for path, tensors in _tensor_dicts(obj):
            inside = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if inside:
                cands.append(_Candidate(path, prefix, inside,
                                        [k for k in tensors if not k.startswith(prefix)]))
    if not cands:
        raise ValueError(f"{origin}: no tensors found"
                         + (f" under prefix {prefix!r}" if prefix is not None else "")
                         + f" (top-level type {type(obj).__name__}"
                         + (f", keys {list(obj)[:_SHOW]}" if isinstance(obj, Mapping) else "") + ")")

    diffs = [(c, _diff(model_sd, c.tensors, allow_extra_prefixes)) for c in cands]
    fits = [(c, d) for c, d in diffs if d.ok]
    if fits:
        fits.sort(key=lambda cd: _rank(cd[0], kind))
        best, diff = fits[0]
        if len(fits) > 1 and _rank(fits[1][0], kind) == _rank(best, kind) \
                and not _same_tensors(best.tensors, fits[1][0].tensors, model_sd):
            raise ValueError(
                f"{origin}: several encoders fit this model ({best.describe()}, "
                f"{fits[1][0].describe()}); pass prefix= to choose one")
    else:
        # Report against the candidate that overlaps the model most.
        best, diff = max(diffs, key=lambda cd: (len(set(cd[0].tensors) & set(model_sd)),
                                                 -len(cd[1].mismatched)))
        if strict:
            problems = "; ".join(p for p in (
                _fmt(diff.missing, "missing keys"),
                _fmt(diff.unexpected, "unexpected keys"),
                _fmt(diff.mismatched, "shape mismatches")) if p)
            raise ValueError(f"{origin}: checkpoint ({best.describe()}) does not fit "
                             f"{type(model).__name__}: {problems}")

    mismatched_keys = {m.split(":", 1)[0] for m in diff.mismatched}
    to_load = {k: v for k, v in best.tensors.items()
               if k in model_sd and k not in mismatched_keys}
    for k, v in model_sd.items():
        if k.endswith("num_batches_tracked") and k not in to_load:
            to_load[k] = torch.zeros_like(v)   # see _diff: tolerated when absent
    # strict=False here: our own diff already enforced strictness, with a readable message.
    model.load_state_dict(to_load, strict=False)
    ignored = sorted(diff.extra_ok) + sorted(best.outside)
    return LoadResult(source=f"{origin} {best.describe()}", loaded=len(to_load), ignored=ignored,
                      missing=diff.missing, unexpected=diff.unexpected, mismatched=diff.mismatched)


def _same_tensors(a: dict[str, Tensor], b: dict[str, Tensor], keys) -> bool:
    return all(a[k] is b[k] or (a[k].shape == b[k].shape and torch.equal(a[k], b[k])) for k in keys
               if k in a and k in b)
