"""Unsharp masking."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform
from modeldiff.counterfactual.transforms.blur import GaussianBlur


@dataclass(frozen=True, repr=False)
class Sharpen(Transform):
    """``x ← x + amount·(x − blur_sigma(x))``: edges and fine detail amplified."""

    amount: float = 1.0
    sigma: float = 1.0
    name = "sharpen"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x + float(self.amount) * (x - GaussianBlur(float(self.sigma)).apply(x))
