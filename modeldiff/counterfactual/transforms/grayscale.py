"""Remove colour (keeps the channel count)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform


@dataclass(frozen=True, repr=False)
class Grayscale(Transform):
    """ITU-R 601 luminance, replicated over the channels; ``strength`` < 1 keeps some colour."""

    strength: float = 1.0
    name = "grayscale"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x.clone()
        from torchvision.transforms.v2 import functional as F  # lazy: torchvision is heavy
        gray = F.rgb_to_grayscale(x, num_output_channels=x.shape[1])
        return torch.lerp(x, gray, float(self.strength))
