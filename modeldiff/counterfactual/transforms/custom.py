"""Any user callable as a transform."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from modeldiff.counterfactual.transforms.base import Transform, generator_for


@dataclass(frozen=True, repr=False)
class FunctionTransform(Transform):
    """Wrap ``fn(x[n, C, H, W]) -> same shape``; ``label`` and ``info`` name it in reports.

    If ``fn`` accepts a ``generator`` keyword it receives a CPU ``torch.Generator`` seeded
    with ``seed``, so random user transforms stay reproducible.
    """

    fn: Callable[..., torch.Tensor] = field(repr=False, default=lambda x: x)
    label: str = "custom"
    info: tuple = ()
    seed: int = 0
    name = "custom"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        import inspect
        try:
            wants_gen = "generator" in inspect.signature(self.fn).parameters
        except (TypeError, ValueError):
            wants_gen = False
        kwargs = {"generator": generator_for(self.seed)} if wants_gen else {}
        out = self.fn(x.clone(), **kwargs)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"custom transform {self.label!r} returned {type(out).__name__}, not a tensor")
        return out.to(dtype=x.dtype, device=x.device)

    def __repr__(self) -> str:
        return f"{self.label}({', '.join(map(str, self.info))})"
