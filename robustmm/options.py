"""Options dataclasses from mappings: the one way YAML, --set and sweep sections become typed values.

`parse(cls, values, path)` builds the frozen dataclass `cls` from a mapping. Each value is coerced
to its field's annotation the way YAML and --set write it — an int where a float is declared, a
list where a tuple is, a single string where a list of strings is — and everything else is
refused: bools only for bool fields, finite numbers only, mappings key by key (`recon_weights`).
Then the dataclass's own `check(path)` checks ranges and choices, once. Every error is one line
that names the dotted key (`train.lr`), the value and what would do; an unknown key gets the
closest known one ("did you mean").

`Options` is the base of option dataclasses that derive from each other: a subclass that only
changes inherited defaults says so with `defaults={...}` instead of declaring those fields again.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from robustmm.errors import ConfigError

T = TypeVar("T")

_NAMES = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"), str: ("a string", "strings")}
_NAMES[float] = ("a finite number", "finite numbers")


class _Mismatch(Exception):
    """A value that does not fit its annotation; `coerce` turns it into one ConfigError line."""


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(values: Mapping[str, Any], known: Sequence[str], owner: str, noun: str = "key") -> None:
    """Refuse the first key of `values` that is not in `known`, naming the closest one and all of them."""
    for key in values:
        if key not in known:
            hint = did_you_mean(str(key), known)
            raise ConfigError(f"{owner} has no {noun} {key!r}{hint}; its {noun}s: {', '.join(known) or 'none'}")


def mapping(value: Any, owner: str) -> dict[str, Any]:
    """A section's mapping (None and empty: {}), or a ConfigError naming the section."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{owner} must be a mapping or null, got {value!r}")
    return dict(value)


def parse(
    cls: type[T],
    values: Any,
    path: str,
    *,
    owner: str | None = None,
    noun: str = "key",
    base: T | None = None,
    check: bool = True,
) -> T:
    """`base` (default: `cls()`) with the fields in `values` set, coerced, then `check(path)`ed.

    `path` prefixes the keys in value errors (`train` -> `train.lr must be ...`); `owner` and
    `noun` name the section in unknown-key errors (`model 'gmc' has no option 'tauu'`). With
    `check=False` the caller checks ranges itself (a model's options need the dataset's modalities).
    """
    owner = owner or path
    given = mapping(values, owner)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    check_keys(given, sorted(fields), owner, noun)
    hints = type_hints(cls)
    out = {key: coerce(value, hints[key], f"{path}.{key}") for key, value in given.items()}
    if base is None:
        for name, f in fields.items():
            if name not in out and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}.{name} is required")
        result = cls(**out)
    else:
        result = dataclasses.replace(base, **out)  # type: ignore[type-var]
    if check and hasattr(result, "check"):
        result.check(path)  # type: ignore[attr-defined]
    return result


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of `cls` (its modules write them as strings)."""
    return typing.get_type_hints(cls)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the annotation `hint` has it, or a ConfigError: '<where> must be <hint>, got <value>'."""
    try:
        return _convert(value, hint)
    except _Mismatch:
        raise ConfigError(f"{where} must be {describe(hint)}, got {value!r}") from None


def describe(hint: Any, plural: bool = False) -> str:
    """What an annotation accepts, in the words of an error message."""
    if hint in _NAMES:
        return _NAMES[hint][plural]
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if _is_union(origin):
        words = [describe(a, plural) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin is tuple:
        inner = f" of {describe(args[0], True)}" if args and args[0] is not Any else ""
        return ("lists" if plural else "a list") + inner
    if origin in (dict, Mapping):
        inner = f" of {describe(args[0], True)} to {describe(args[1], True)}" if args else ""
        return ("mappings" if plural else "a mapping") + inner
    return "values" if plural else "a value"


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _convert(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(origin):
        return _convert_union(value, args)
    if origin is tuple or hint is tuple:
        return _convert_tuple(value, args)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _convert_mapping(value, args)
    return _convert_scalar(value, hint)


def _convert_union(value: Any, args: tuple[Any, ...]) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(value, arg)
        except _Mismatch:
            pass
    raise _Mismatch


def _convert_tuple(value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if args and (len(args) != 2 or args[1] is not Ellipsis):
        raise TypeError(f"options support tuple[X, ...] fields only, not tuple{list(args)}")
    item = args[0] if args else Any
    if isinstance(value, str) and item is str:
        return (value,)
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    return tuple(_convert(v, item) for v in value)


def _convert_mapping(value: Any, args: tuple[Any, ...]) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise _Mismatch
    key, item = args if args else (Any, Any)
    return {_convert(k, key): _convert(v, item) for k, v in value.items()}


def _convert_scalar(value: Any, hint: Any) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _Mismatch


class Options:
    """Base of option dataclasses: `class B(A, defaults={"clean_prob": 0.5})` gives B A's fields
    with new defaults for the named ones, so a field is declared once however many families use it."""

    def __init_subclass__(cls, *, defaults: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not defaults:
            return
        inherited = _inherited_fields(cls)
        annotations = cls.__dict__.get("__annotations__")
        if annotations is None:
            annotations = {}
            cls.__annotations__ = annotations
        for name, value in defaults.items():
            if name not in inherited:
                raise TypeError(f"{cls.__name__}: defaults names {name!r}, which no base class declares")
            annotations[name] = inherited[name].type
            setattr(cls, name, value)


def _inherited_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    out: dict[str, dataclasses.Field[Any]] = {}
    for base in reversed(cls.__mro__[1:]):
        out.update(getattr(base, "__dataclass_fields__", {}))
    return out
