"""Dataclass configs with named YAML overrides and type-checked `--set key=value`.

The dataclass holds the defaults and is the single source of truth; a named YAML file in
`configs/<stage>/<name>.yaml` overrides some fields; `--set a.b=3` overrides one more. Every
override is checked against the type of the default, so a typo fails loudly instead of being
ignored.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    pass


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(f"{key}: {value!r} matches none of {typ}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, key) for v in value]
        return tuple(out) if origin is tuple else out
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if typ is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return apply_overrides(typ(), value, prefix=key + ".")
    return value


def apply_overrides(cfg: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    """Return a copy of dataclass `cfg` with (possibly nested, dotted) overrides applied."""
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    nested: dict[str, dict] = {}
    for k, v in overrides.items():
        head, _, rest = k.partition(".")
        if head not in fields:
            raise ConfigError(f"unknown config key {prefix}{head!r}; known: {', '.join(sorted(fields))}")
        if rest:
            nested.setdefault(head, {})[rest] = v
        elif dataclasses.is_dataclass(hints[head]) and isinstance(v, dict):
            nested.setdefault(head, {}).update(v)
        else:
            changes[head] = _coerce(v, hints[head], prefix + head)
    for head, sub in nested.items():
        changes[head] = apply_overrides(getattr(cfg, head), sub, prefix=prefix + head + ".")
    return dataclasses.replace(cfg, **changes)


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """['a=1', 'b.c=x'] -> {'a': '1', 'b.c': 'x'} (values typed later against the dataclass)."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else v
    return out


def load_config(default: Any, stage: str, name: str | None, sets: list[str] | None = None) -> Any:
    """Defaults <- configs/<stage>/<name>.yaml (or a path) <- --set overrides."""
    cfg = default
    if name:
        p = Path(name)
        if not p.suffix:
            p = CONFIG_DIR / stage / f"{name}.yaml"
        if not p.is_file():
            known = sorted(x.stem for x in (CONFIG_DIR / stage).glob("*.yaml"))
            raise ConfigError(f"{p}: no such config; known {stage} configs: {', '.join(known) or 'none'}")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a config file must be a mapping")
        cfg = apply_overrides(cfg, data)
    return apply_overrides(cfg, parse_set(sets))


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_fields(cls: type, d: dict[str, Any]) -> Any:
    """A dataclass `cls` from a dict of its fields (a saved config); ValueError naming unknown
    fields, so a config from another version fails loudly rather than half-applied."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)
