"""Data augmentation on the device, with each model's randomness drawn from its own generator.

Random parameters for a whole epoch are drawn per model up front (:func:`draw_epoch`), so a
model's augmentations never depend on which other models share its ensemble.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from datamodels.training.recipe import AugmentConfig


@dataclass
class EpochDraw:
    """One model's random choices for one epoch over its ``m`` training examples."""

    order: torch.Tensor  # [m] positions into the model's subset, a permutation
    flip: torch.Tensor  # [m] bool
    shift: torch.Tensor  # [m, 2] int64 in [-translate, translate]
    cutout_at: torch.Tensor  # [m, 2] int64 centre of the cutout square


def draw_epoch(gen: torch.Generator, m: int, cfg: AugmentConfig, image_hw) -> EpochDraw:
    """Draw one epoch's order and augmentation parameters from ``gen`` (a CPU generator)."""
    order = torch.randperm(m, generator=gen)
    flip = torch.rand(m, generator=gen) < 0.5
    t = cfg.translate
    shift = torch.randint(-t, t + 1, (m, 2), generator=gen)
    h, w = image_hw
    cut = torch.stack([torch.randint(0, h, (m,), generator=gen), torch.randint(0, w, (m,), generator=gen)], 1)
    return EpochDraw(order, flip, shift, cut)


def apply_augment(x: torch.Tensor, cfg: AugmentConfig, flip, shift, cutout_at) -> torch.Tensor:
    """Augment ``x[N, C, H, W]`` with per-example ``flip[N]``, ``shift[N, 2]``, ``cutout_at[N, 2]``."""
    if cfg.flip:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if cfg.translate > 0:
        x = translate(x, shift, cfg.translate)
    if cfg.cutout > 0:
        x = cutout(x, cutout_at, cfg.cutout)
    return x


def translate(x: torch.Tensor, shift: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by ``shift[n] = (dy, dx)`` pixels: a crop of the reflect-padded image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = (torch.arange(h, device=x.device) + pad + shift[:, :1]).view(n, 1, h, 1)
    cols = (torch.arange(w, device=x.device) + pad + shift[:, 1:]).view(n, 1, 1, w)
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols.expand(n, c, h, w))


def cutout(x: torch.Tensor, centre: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a ``size x size`` square centred at ``centre[n] = (row, col)`` (clipped at the border)."""
    n, _, h, w = x.shape
    r = torch.arange(h, device=x.device).view(1, h, 1) - centre[:, :1].view(n, 1, 1) + size // 2
    c = torch.arange(w, device=x.device).view(1, 1, w) - centre[:, 1:].view(n, 1, 1) + size // 2
    inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
    return x.masked_fill(inside.unsqueeze(1), 0.0)
