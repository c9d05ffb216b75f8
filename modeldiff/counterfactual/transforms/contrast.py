"""Scale contrast around each image's mean."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform


@dataclass(frozen=True, repr=False)
class Contrast(Transform):
    """``x ← mean + factor·(x − mean)`` per image and channel (factor < 1 flattens, > 1 stretches)."""

    factor: float = 0.5
    name = "contrast"

    def __post_init__(self):
        if float(self.factor) < 0:
            raise ValueError(f"contrast factor must be >= 0, got {self.factor}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(-2, -1), keepdim=True)
        return mean + float(self.factor) * (x - mean)
