"""Typed configuration from plain mappings (YAML): a dataclass built from a dict, every key and value
checked against the dataclass's fields and type hints, with one :class:`UserError` naming the bad key.
Recipes, studies and ``modeldiff.compare`` settings are built this way."""
from __future__ import annotations

import dataclasses
import math
import types
import typing

from datamodels.base.errors import UserError


def check_type(key: str, value, hint, what: str = "recipe"):
    """``value`` checked (and, for floats, converted) against the type ``hint``, or a UserError naming ``key``."""
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return value
    for option in (o for o in options if o is not type(None)):
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:  # YAML reads 5e-4 as a string
                number = float(value)
            except ValueError:
                continue
            if not math.isfinite(number):
                raise UserError(f"{what} key '{key}' must be a finite number, got {value!r}")
            return number
        if isinstance(value, base) and not (base in (int, float) and isinstance(value, bool)):
            return value
    names = " or ".join((typing.get_origin(o) or o).__name__ for o in options)
    raise UserError(f"{what} key '{key}' must be {names}, got {type(value).__name__} {value!r}")


def build_dataclass(cls, data: dict, prefix: str, what: str = "recipe"):
    """Validate ``data`` into the dataclass ``cls`` (recursively), naming any bad key."""
    if not isinstance(data, dict):
        raise UserError(f"{what} key '{prefix.rstrip('.') or what}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            raise UserError(f"unknown {what} key '{prefix}{key}': allowed keys are {', '.join(sorted(known))}")
    for f in fields:
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{what} key '{prefix}{f.name}' is missing")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_dataclass(hint, value, f"{prefix}{key}.", what)
        else:
            kwargs[key] = check_type(prefix + key, value, hint, what)
    return cls(**kwargs)
