"""Settings as frozen dataclasses, and the one generator of command-line flags from them.

A field is declared with :func:`option`: its default, its help text (units included) and its valid
values (``choices``, ``minimum``, ``above``, ``maximum``, finiteness). :func:`check` validates a
settings object against those declarations (types included: ``"false"`` is not a bool, ``null``
not a number, NaN never a valid number) and :func:`add_config_args` turns the same fields into
argparse flags, so a default, a help text and a range live in one place::

    @dataclass(frozen=True)
    class TraceSettings:
        num_matvecs: int = option(99, "Hessian-vector products", minimum=1)

        def __post_init__(self) -> None:
            check(self)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import Field, field
from pathlib import Path

from toolkit.errors import ConfigError

__all__ = [
    "add_config_args",
    "apply_defaults",
    "check",
    "config_from_args",
    "flag",
    "load_config_file",
    "option",
    "same_as",
]

MAX_CONFIG_BYTES = 1 << 20


def option(
    default,
    help: str,
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    finite: bool = True,
    empty: bool = False,
):
    """A dataclass field whose metadata becomes a validated command-line flag.

    Args:
        default: The default value.
        help: What the field means, with its unit.
        choices: The valid values.
        minimum: Smallest valid value (inclusive).
        above: Values must be larger than this (exclusive).
        maximum: Largest valid value (inclusive).
        finite: Refuse ``inf`` (NaN is always refused).
        empty: A tuple field may be empty (its flag then takes zero or more values).
    """
    bounds = {"minimum": minimum, "above": above, "maximum": maximum}
    metadata = {"help": help, "finite": finite}
    if empty:
        metadata["empty"] = True
    metadata.update({key: value for key, value in bounds.items() if value is not None})
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


def same_as(cls: type, name: str):
    """A field with the default, help and valid values of ``cls``'s field ``name`` (declared
    once, used by a settings class that records it too)."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field(default=source.default, metadata=dict(source.metadata))


def flag(name: str) -> str:
    """``num_matvecs`` -> ``--num-matvecs``."""
    return "--" + name.replace("_", "-")


def _base_type(annotation) -> type:
    """``float | None`` -> float; ``tuple[int, ...]`` -> tuple; ``int`` -> int."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


def _element_type(annotation) -> type:
    """``tuple[float, ...]`` (or its optional) -> float."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_args(annotation)[0]


def _is_optional(annotation) -> bool:
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    return union and type(None) in typing.get_args(annotation)


def _type_problem(value, kind: type) -> str | None:
    """What is wrong with ``value`` as a ``kind`` (None: nothing)."""
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    return None if ok else f"must be {expected.get(kind, kind.__name__)}"


def _range_problem(value, metadata) -> str | None:
    """What is wrong with a number against its declared range (None: nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value:
        return "must be a number, not NaN"
    if metadata.get("finite", True) and math.isinf(value):
        return "must be finite"
    low, high = metadata.get("minimum", metadata.get("above")), metadata.get("maximum")
    inside = (
        ("minimum" not in metadata or value >= metadata["minimum"])
        and ("above" not in metadata or value > metadata["above"])
        and (high is None or value <= high)
    )
    if inside:
        return None
    if low is not None and high is not None:
        bracket = "[" if "minimum" in metadata else "("
        return f"must be in {bracket}{low:g}, {high:g}]"
    if high is not None:
        return f"must be <= {high:g}"
    return f"must be >= {low:g}" if "minimum" in metadata else f"must be > {low:g}"


def _field_problem(f: Field, value, annotation) -> str | None:
    if value is None:
        return None if _is_optional(annotation) else "must not be null"
    kind = _base_type(annotation)
    values = [value]
    if kind is tuple:
        if not isinstance(value, tuple) or not (value or f.metadata.get("empty")):
            return "must be a list" if f.metadata.get("empty") else "must be a non-empty list"
        kind, values = _element_type(annotation), list(value)
    for item in values:
        problem = _type_problem(item, kind) or _range_problem(item, f.metadata)
        if problem is None and "choices" in f.metadata and item not in f.metadata["choices"]:
            problem = f"must be one of {', '.join(map(str, f.metadata['choices']))}"
        if problem:
            return problem
    return None


def check(settings) -> None:
    """Validate every field of a settings dataclass against its type and :func:`option` metadata.

    Raises:
        ConfigError: Naming the field, the bad value and what is valid, in one line.
    """
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        problem = _field_problem(f, value, hints[f.name])
        if problem:
            raise ConfigError(f"{f.name} {problem}, got {value!r}", field=f.name)


def add_config_args(
    parser: argparse.ArgumentParser, cls, exclude=(), title: str | None = None
) -> None:
    """Add one ``--flag-name`` per field of ``cls`` with its default, help and choices.

    Booleans become ``--flag/--no-flag``; tuple fields take one or more values (zero or more if
    they may be empty); fields in ``exclude`` are skipped.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        name = flag(f.name)
        if f.name in exclude or not f.init:
            continue
        kind = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "").replace("%", "%%") + " (default: %(default)s)"
        if kind is bool:
            action = argparse.BooleanOptionalAction
            group.add_argument(name, action=action, default=f.default, help=help_text)
        elif kind is tuple:
            element = _element_type(hints[f.name])
            default = list(f.default) if f.default is not None else None
            nargs = "*" if f.metadata.get("empty") else "+"
            group.add_argument(name, type=element, nargs=nargs, default=default, help=help_text)
        else:
            choices = f.metadata.get("choices")
            group.add_argument(name, type=kind, default=f.default, choices=choices, help=help_text)


def config_from_args(args: argparse.Namespace, cls, **overrides):
    """The settings object of parsed flags (lists become tuples); ``overrides`` win.

    Raises:
        ConfigError: From the settings' own validation, naming the flag of a bad field.
    """
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**{**values, **overrides})
    except ConfigError as error:
        if error.field is None or error.field in overrides:
            raise
        message = flag(error.field) + str(error)[len(error.field) :]
        raise ConfigError(message, field=error.field) from None


def load_config_file(path: str | Path) -> dict:
    """Read a JSON config file (one flat object of field values).

    Raises:
        ConfigError: If it is missing, too large, not UTF-8 JSON, nested too deep or not an
            object.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is over 1 MiB; expected a small JSON object")
        values = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = "nested too deep" if isinstance(error, RecursionError) else error
        reason = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else reason
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of field values")
    return values


def apply_defaults(parser: argparse.ArgumentParser, values: dict, cls, ignored=()) -> None:
    """Make ``values`` (a preset or a ``--config`` file) the parser's defaults; flags still win.

    Raises:
        ConfigError: On a key that is not a field of ``cls`` (keys in ``ignored`` are dropped).
    """
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k not in ignored or k in known}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)}; known: {sorted(known)}")
    parser.set_defaults(**values)
