"""Blend every pixel towards a colour."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform


@dataclass(frozen=True, repr=False)
class ColorTint(Transform):
    """``x ← (1 − strength)·x + strength·color`` (e.g. the paper's yellow tint for Waterbirds).

    Args:
        color: RGB (or one grey value) in [0, 1].
        strength: blend weight in [0, 1].
    """

    color: tuple[float, ...] = (1.0, 1.0, 0.0)
    strength: float = 0.3
    name = "tint"

    def __post_init__(self):
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(f"tint strength must be in [0, 1], got {self.strength}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(self.color, dtype=x.dtype, device=x.device).flatten()
        if c.numel() == 1:
            c = c.expand(x.shape[1])
        if c.numel() != x.shape[1]:
            raise ValueError(f"tint colour has {c.numel()} values, images have {x.shape[1]} channels")
        return torch.lerp(x, c[None, :, None, None].expand_as(x), float(self.strength))
