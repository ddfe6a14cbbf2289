"""Typed configs: YAML files into dataclasses, strict keys, and `--set a.b=c` overrides.

An unknown key, a duplicate key, a missing required key, a value of the wrong type or a number out of
its range is one `ConfigError` that names the key, what was given and what is valid.

Ranges are declared once, here, by field name (`RANGES`), for every paper's config: a seed is a 32-bit
unsigned integer, sizes, counts, epochs and steps are at least 1, rates and fractions lie in [0, 1], and
any other number is finite and not negative. A config with a combination that is invalid for its own
reasons says so in its dataclass's `validate()`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Valid numbers: lo <= x (lo < x when lo_open), x <= hi (x < hi when hi_open), never NaN or inf;
    `also` lists single values allowed outside (n_jobs=-1: all cores)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    also: tuple[float, ...] = ()

    def contains(self, x: float) -> bool:
        if x in self.also:
            return True
        if not math.isfinite(x):
            return False
        lo_ok = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok

    def describe(self, integer: bool) -> str:
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        if self.lo is not None and self.hi is not None:
            text = f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"
        elif self.lo is not None and integer and self.lo_open and float(self.lo).is_integer():
            text = f">= {num(self.lo + 1)}"
        elif self.lo is not None:
            text = f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        else:
            text = f"{'<' if self.hi_open else '<='} {num(self.hi)}"
        text = ("an integer " if integer else "a finite number ") + text
        return text + "".join(f" or {num(v)}" for v in self.also)


NONNEGATIVE = Range(lo=0)
POSITIVE = Range(lo=0, lo_open=True)  # ints: >= 1
# First full match of the field's name wins; a number whose name matches none is NONNEGATIVE.
RANGES: tuple[tuple[str, Range], ...] = (
    (r"(.*_)?seeds?", Range(lo=0, hi=2**32 - 1)),
    (r"n_jobs", Range(lo=1, also=(-1,))),  # scikit-learn: -1 is every core
    (r"max_(updates|steps)", Range(lo=1, also=(-1,))),  # Lightning: -1 is no limit
    (r"(.*_)?(dropout|smoothing)", Range(lo=0, hi=1, hi_open=True)),
    (r"(.*_)?density", Range(lo=0, hi=1, lo_open=True)),  # the share of weights a merge keeps
    (r"(.*_)?(fraction|share|rate|noise)|alphas?|slerp_t", Range(lo=0, hi=1)),
    (r"ci", Range(lo=0, hi=1, lo_open=True, hi_open=True)),
    # zero means "none", "off" or "automatic" for these
    (r"warmup(_steps)?|.*_every|(num_)?threads|shard|skip|clip|min_(?!samples).*|weight_decay|patience", NONNEGATIVE),
    (
        r"n_layer|n_head|(.*_)?(size|batch|batches|epochs|steps|blocks|units|widths|iter|iterations|layers|heads|hidden|dims?|embd|lengths?|len"
        r"|window|block|features|mlp|ffn|neighbors|patience|folds|repeats|devices|nodes|shards|workers|probes?"
        r"|samples|updates|tokens|lr|minutes|seconds|ratio|max|chunk|k|top|eps|epsilon|bootstrap|directions"
        r"|vertices|landmarks|thresholds|train|eval|documents|requests|pairs|instructions|entities|hashes"
        r"|orders?|runs|radius|norm|beta|r|bytes)",
        POSITIVE,
    ),
)


def range_for(name: str) -> Range:
    """The declared range of a number named `name` (a dataclass field; list and dict items share it)."""
    for pattern, valid in RANGES:
        if re.fullmatch(pattern, name):
            return valid
    return NONNEGATIVE


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a mapping with the same key twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> Any:
    """yaml.safe_load, except that a duplicate key in any mapping is a ConfigError naming it and its lines."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = safe_load_unique(path.read_text()) or {}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split 'a.b=c' into (['a', 'b'], value); the value is read as YAML ('3' -> 3, '[1,2]' -> list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `data` with each 'a.b=c' set; keys are checked later against the dataclass."""
    out = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses, strictly."""
    prefix = f"{where}: " if where else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        path = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], path, name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def available_scales(paper_dir: Path) -> list[str]:
    """The scales a paper has: the names of its configs/*.yaml."""
    return sorted(p.stem for p in (Path(paper_dir) / "configs").glob("*.yaml"))


def load_config(cls: type[T], path: str | Path, overrides: Sequence[str] = ()) -> T:
    """Load `path` into `cls`, with `--set` style overrides applied first."""
    data = apply_overrides(load_yaml(path), overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain dicts and lists, ready for YAML or JSON. A field declared with
    `metadata={"omit_default": True}` is left out while it holds its default: a switch added to a shared spec
    after others hashed it (their configs' content hashes, and so their caches, stay the same while it is off)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _in_range(value: float, path: str, name: str, integer: bool) -> Any:
    valid = range_for(name)
    if not valid.contains(value):
        raise ConfigError(f"{path}: {value!r} is out of range; valid: {valid.describe(integer)}")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, path: str, name: str = "") -> Any:
    """`value` as type `tp`; numbers are checked against the range declared for the field `name`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error (a range, say) is the one to show
            try:
                return _coerce(options[0], value, path, name)
            except ConfigError as exc:
                hint = " (null is also valid)" if type(None) in args else ""
                raise ConfigError(f"{exc}{hint}") from None
        for arg in options:
            try:
                return _coerce(arg, value, path, name)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {value!r} fits none of {' | '.join(_type_name(a) for a in args)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not valid; valid values: {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{path}[{i}]", name) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(vt, v, f"{path}.{k}", name) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _in_range(value, path, name, integer=True)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _in_range(float(value), path, name, integer=False)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    raise ConfigError(f"{path}: unsupported config type {_type_name(tp)}")
