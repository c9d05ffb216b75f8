"""Counterfactual transforms for any data: the user's own callables ``x[n, *input_shape] -> same shape``.

Built-in transforms (patches, tints, overlays...) work on images ``[n, C, H, W]`` only. For other
data (tabular vectors, token ids) a study names its own transforms::

    counterfactual:
      transforms:
        - "my_pkg.transforms:shift_radius"                 # a function x -> x'
        - {target: "my_pkg.transforms:scale", kwargs: {feature: 0, factor: 1.5}, target_class: 1}

The mapping form calls ``target(**kwargs)`` to make the transform (a factory) and may fix the
class whose probability is measured (``target_class``; default: the study's choice).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from datamodels.base.errors import UserError, call_user

SPEC_KEYS = ("target", "kwargs", "target_class", "label")


class UserTransform:
    """A user callable as a counterfactual transform (checks that it keeps the batch's shape)."""

    def __init__(self, fn: Callable, label: str, params: dict | None = None):
        self.fn, self.label, self.params = fn, label, dict(params or {})

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = call_user(self.fn, x.clone(), what=f"transform {self.label!r} on a batch {tuple(x.shape)}",
                        hint="it must map x[n, *input_shape] to a tensor of the same shape")
        if not isinstance(out, torch.Tensor):
            raise UserError(f"transform {self.label!r} returned {type(out).__name__}, not a tensor")
        if out.shape != x.shape:
            raise UserError(f"transform {self.label!r} changed the batch shape {tuple(x.shape)} -> {tuple(out.shape)}: "
                            f"return a tensor of the input's shape")
        return out.to(device=x.device, dtype=x.dtype)

    def __repr__(self) -> str:
        return self.label


def is_builtin_spec(spec) -> bool:
    """True for a built-in transform spec ``KIND[:key=value,...]`` (image transforms)."""
    from modeldiff.counterfactual.transforms.spec import KINDS

    return isinstance(spec, str) and spec.strip().partition(":")[0] in KINDS


def is_user_spec(spec) -> bool:
    """True for a user transform: a mapping, or an import target ``"pkg.mod:fn"`` that is not a built-in
    spec (``KIND:key=value``)."""
    from datamodels.registry import is_target

    if isinstance(spec, dict):
        return True
    return is_target(spec) and not is_builtin_spec(spec) and "=" not in spec


def store_code_folder(store_path) -> str | None:
    """The folder a store's data target was imported from (where the user's transforms usually live too)."""
    import json
    from pathlib import Path

    try:
        meta = json.loads((Path(store_path) / "metadata.json").read_text())
        return (meta["dataset"].get("target") or {}).get("path")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def user_transform(spec, search_path: str | None = None) -> tuple[UserTransform, int | None]:
    """``(transform, target_class or None)`` from ``"pkg.mod:fn"`` or ``{target, kwargs, target_class, label}``.

    ``search_path``: a folder to import from when the module is not importable as is (e.g.
    :func:`store_code_folder`)."""
    from datamodels.registry import resolve_target

    if isinstance(spec, str):
        spec = {"target": spec}
    if not isinstance(spec, dict) or "target" not in spec:
        raise UserError(f"counterfactual transform {spec!r}: give a built-in spec like 'patch:size=3', an import "
                        f"target 'pkg.mod:fn', or {{target: 'pkg.mod:make', kwargs: {{...}}}}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise UserError(f"counterfactual transform {spec['target']!r}: unknown key(s) {', '.join(unknown)}; "
                        f"allowed are {', '.join(SPEC_KEYS)}")
    target, kwargs = spec["target"], spec.get("kwargs")
    obj = resolve_target(target, what="counterfactual transform", search_path=search_path)
    if kwargs is not None:
        obj = call_user(obj, what=f"counterfactual transform {target!r}", hint="fix its kwargs", **kwargs)
    if not callable(obj):
        raise UserError(f"counterfactual transform {target!r} is a {type(obj).__name__}, not a callable x -> x'")
    label = spec.get("label") or (target if not kwargs else
                                  f"{target}({', '.join(f'{k}={v}' for k, v in kwargs.items())})")
    tc = spec.get("target_class")
    return UserTransform(obj, label, kwargs), (None if tc is None else int(tc))
