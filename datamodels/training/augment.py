"""Data augmentation on the device, with each model's randomness drawn from its own generator.

Random parameters for a whole epoch are drawn per model up front (:func:`draw_epoch`), so a
model's augmentations never depend on which other models share its ensemble. The paste draws come
last and only when ``paste.share > 0``, so recipes without it keep their random streams.
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
    paste: torch.Tensor | None = None  # [m] bool: the input gets cfg.paste's pattern (None: paste off)


def draw_epoch(gen: torch.Generator, m: int, cfg: AugmentConfig, image_hw) -> EpochDraw:
    """Draw one epoch's order and augmentation parameters from ``gen`` (a CPU generator)."""
    order = torch.randperm(m, generator=gen)
    flip = torch.rand(m, generator=gen) < 0.5
    t = cfg.translate
    shift = torch.randint(-t, t + 1, (m, 2), generator=gen)
    h, w = image_hw
    cut = torch.stack([torch.randint(0, h, (m,), generator=gen), torch.randint(0, w, (m,), generator=gen)], 1)
    paste = torch.rand(m, generator=gen) < cfg.paste.share if cfg.paste.share > 0 else None
    return EpochDraw(order, flip, shift, cut, paste)


def apply_augment(x: torch.Tensor, cfg: AugmentConfig, flip, shift, cutout_at, paste=None) -> torch.Tensor:
    """Augment ``x[N, C, H, W]`` with per-example ``flip[N]``, ``shift[N, 2]``, ``cutout_at[N, 2]`` and
    ``paste[N]`` (bool, or None when paste is off). The pattern is pasted first, where the data's own
    features sit, then the geometric augmentations move it like any other pixel."""
    if paste is not None and cfg.paste.share > 0:
        from datamodels.data.patterns import check_region, write_pattern

        region = check_region(cfg.paste.region, x.shape[-2:], what="augment.paste.region")
        x = write_pattern(x, region, cfg.paste.pattern, cfg.paste.amplitude, where=paste, erase=cfg.paste.erase)
    if cfg.flip:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if cfg.translate > 0:
        x = translate(x, shift, cfg.translate)
    if cfg.cutout > 0:
        x = cutout(x, cutout_at, cfg.cutout)
    return x


def stack_paste(draws, sl=slice(None)):
    """The models' paste draws ``[M, len(sl)]`` (bool), or None when paste is off."""
    if draws[0].paste is None:
        return None
    return torch.stack([d.paste[sl] for d in draws])


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
