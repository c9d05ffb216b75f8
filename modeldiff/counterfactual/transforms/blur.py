"""Gaussian blur."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform


@dataclass(frozen=True, repr=False)
class GaussianBlur(Transform):
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel: odd, about 6·sigma wide)."""

    sigma: float = 1.0
    kernel_size: int = 0  # 0: 2·ceil(3·sigma) + 1
    name = "blur"

    def __post_init__(self):
        if float(self.sigma) <= 0:
            raise ValueError(f"blur sigma must be positive, got {self.sigma}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F  # lazy: torchvision is heavy
        k = int(self.kernel_size) or 2 * int(-(-3 * float(self.sigma) // 1)) + 1
        k = min(k, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)   # reflect padding needs k < 2·side
        return F.gaussian_blur(x, kernel_size=[k, k], sigma=[float(self.sigma)] * 2)
