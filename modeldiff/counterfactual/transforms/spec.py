"""Parse transform specs from the command line: ``KIND:key=value,key=value``.

Examples: ``patch:pattern=texture,size=4,loc=random``, ``patch:pattern=window,size=6,loc=4/13``,
``tint:color=1/1/0,strength=0.3``, ``grayscale``, ``blur:sigma=1.5``. Tuples use ``/``.
"""
from __future__ import annotations

import dataclasses

from modeldiff.counterfactual.transforms.blur import GaussianBlur
from modeldiff.counterfactual.transforms.contrast import Contrast
from modeldiff.counterfactual.transforms.frequency import HighPass, LowPass
from modeldiff.counterfactual.transforms.grayscale import Grayscale
from modeldiff.counterfactual.transforms.patch import PatchPaste
from modeldiff.counterfactual.transforms.sharpen import Sharpen
from modeldiff.counterfactual.transforms.shift import Shift
from modeldiff.counterfactual.transforms.tint import ColorTint

KINDS = {"patch": PatchPaste, "tint": ColorTint, "grayscale": Grayscale, "blur": GaussianBlur,
         "contrast": Contrast, "sharpen": Sharpen, "shift": Shift, "lowpass": LowPass, "highpass": HighPass}


def parse_transform(spec: str, seed: int | None = None):
    """Build a transform from ``spec``; ``seed`` overrides a ``seed=`` in the spec. Raises ValueError."""
    kind, _, rest = spec.strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown transform {kind!r} in {spec!r}; choose from {', '.join(KINDS)}")
    cls = KINDS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            raise ValueError(f"bad parameter {item!r} for {kind}; it takes {', '.join(fields)} as key=value")
        kwargs[key] = _convert(value.strip(), fields[key].default)
    if seed is not None and "seed" in fields:
        kwargs["seed"] = seed
    return cls(**kwargs)


def _convert(value: str, default):
    if "/" in value or isinstance(default, tuple):
        return tuple(_number(v) for v in value.split("/"))
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return type(default)(_number(value))
    return value


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError as err:
            raise ValueError(f"expected a number, got {text!r}") from err
