"""Translate the image by a few pixels (the uncovered border filled with the image's edge value)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform


@dataclass(frozen=True, repr=False)
class Shift(Transform):
    """Move the content ``dy`` pixels down and ``dx`` right (negative: up/left); edges replicated."""

    dy: int = 0
    dx: int = 1
    name = "shift"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rows = (torch.arange(h, device=x.device) - int(self.dy)).clamp(0, h - 1)
        cols = (torch.arange(w, device=x.device) - int(self.dx)).clamp(0, w - 1)
        return x[:, :, rows][:, :, :, cols]
