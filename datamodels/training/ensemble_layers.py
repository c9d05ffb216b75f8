"""Layers of M independent models run as one: grouped convolutions, per-group batch norm, batched linear.

Every parameter and buffer has a leading dimension ``M * d`` whose block ``i`` belongs to model ``i``,
so model ``i``'s numbers never mix with another model's (each group is computed on its own).
Activations travel as ``[B, M * C, H, W]``: model ``i``'s channels are ``i*C .. (i+1)*C - 1``.
"""
from __future__ import annotations

import torch
from torch import nn


class GroupConv2d(nn.Conv2d):
    """``M`` convolutions ``c_in -> c_out`` as one grouped convolution."""

    def __init__(self, n_models: int, c_in: int, c_out: int, kernel_size: int = 3, padding: int = 1):
        super().__init__(n_models * c_in, n_models * c_out, kernel_size, padding=padding, groups=n_models, bias=False)


class GroupBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over ``M * C`` channels: each model normalises with its own batch's statistics."""

    def __init__(self, n_models: int, channels: int):
        super().__init__(n_models * channels)


class GroupLinear(nn.Module):
    """``M`` linear maps ``d_in -> d_out``; input ``[B, M * d_in]``, output ``[B, M * d_out]``."""

    def __init__(self, n_models: int, d_in: int, d_out: int):
        super().__init__()
        self.n_models, self.d_in, self.d_out = n_models, d_in, d_out
        self.weight = nn.Parameter(torch.empty(n_models * d_out, d_in))
        self.bias = nn.Parameter(torch.empty(n_models * d_out))
        bound = d_in ** -0.5  # nn.Linear's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = x.reshape(b, self.n_models, self.d_in)
        w = self.weight.view(self.n_models, self.d_out, self.d_in)
        out = torch.einsum("bmi,moi->bmo", x, w) + self.bias.view(self.n_models, self.d_out)
        return out.reshape(b, self.n_models * self.d_out)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on ``[B, M * C, H, W]`` (the statistics are not learnt)."""

    def __init__(self, n_models: int, mean, std):
        super().__init__()
        mean = torch.tensor(mean, dtype=torch.float32).repeat(n_models).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).repeat(n_models).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def conv_bn(n_models: int, c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(GroupConv2d(n_models, c_in, c_out), GroupBatchNorm2d(n_models, c_out), nn.ReLU(inplace=True))
