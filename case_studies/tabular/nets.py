"""The study's model target: a small MLP on feature vectors ``x[B, d] -> logits [B, K]``."""
from __future__ import annotations

from torch import nn


def make_mlp(input_shape, num_classes: int, hidden: int = 32, depth: int = 2) -> nn.Module:
    """``depth`` hidden layers of ``hidden`` units with LayerNorm and ReLU, then a linear head."""
    (d,) = input_shape
    layers, width = [], d
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
