"""Small fixed patterns written at a fixed place of an image: the planted feature of a ground-truth
study and the paste augmentation that makes it uninformative (:class:`~datamodels.training.recipe.PasteConfig`).

A pattern is a ``[h, w]`` map of 0/1 over its region ``[row0, row1, col0, col1]`` (rows ``row0..row1-1``,
columns ``col0..col1-1``). :func:`write_pattern` blends it in: the region's pixels become
``(1 - w) * x + w * pattern`` with ``w = min(1, amplitude / mean(pattern))``, so every pattern adds
the same mean intensity over its region (a checker lights half its pixels and gets twice the weight);
at ``w = 1`` the region is overwritten and writing twice is the same as writing once.
"""
from __future__ import annotations

import torch

from datamodels.base.errors import UserError


def _solid(h: int, w: int) -> torch.Tensor:
    return torch.ones(h, w)


def _checker(h: int, w: int) -> torch.Tensor:
    return ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2).float()


def _bar(h: int, w: int) -> torch.Tensor:
    """The middle row of the region (a horizontal line)."""
    out = torch.zeros(h, w)
    out[h // 2] = 1.0
    return out


def _vbar(h: int, w: int) -> torch.Tensor:
    """The middle column of the region (a vertical line)."""
    return _bar(w, h).T.contiguous()


def _ring(h: int, w: int) -> torch.Tensor:
    """The region's border, hollow inside (solid below 3x3)."""
    out = torch.ones(h, w)
    if h > 2 and w > 2:
        out[1:-1, 1:-1] = 0.0
    return out


def _cross(h: int, w: int) -> torch.Tensor:
    """The middle row and the middle column."""
    return torch.maximum(_bar(h, w), _vbar(h, w))


def _diagonal(h: int, w: int) -> torch.Tensor:
    """The main diagonal (top-left to bottom-right), stretched over a non-square region."""
    out = torch.zeros(h, w)
    rows = torch.arange(max(h, w))
    out[rows * h // max(h, w), rows * w // max(h, w)] = 1.0
    return out


PATTERNS = {"solid": _solid, "checker": _checker, "bar": _bar, "vbar": _vbar, "ring": _ring, "cross": _cross,
            "diagonal": _diagonal}


def check_region(region, image_hw, what: str = "region") -> tuple[int, int, int, int]:
    """``region`` as four ints inside an image of ``image_hw = (H, W)``; else one :class:`UserError` line."""
    try:
        r0, r1, c0, c1 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be [row0, row1, col0, col1], got {region!r}") from None
    h, w = (int(v) for v in image_hw)
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise UserError(f"{what} {[r0, r1, c0, c1]} must lie inside the {h}x{w} image as [row0, row1, col0, col1]")
    return r0, r1, c0, c1


def check_pattern(pattern: str, amplitude: float, what: str = "pattern") -> None:
    if pattern not in PATTERNS:
        raise UserError(f"{what} must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    if not (isinstance(amplitude, (int, float)) and 0 < amplitude <= 1):
        raise UserError(f"{what.rsplit('.', 1)[0] + '.' if '.' in what else ''}amplitude must be in (0, 1], "
                        f"got {amplitude!r}")


def pattern_values(region, pattern: str, channels: int) -> torch.Tensor:
    """The 0/1 pattern ``[channels, h, w]`` over ``region``."""
    if pattern not in PATTERNS:
        raise UserError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    r0, r1, c0, c1 = region
    return PATTERNS[pattern](r1 - r0, c1 - c0).expand(channels, r1 - r0, c1 - c0)


def blend_weight(region, pattern: str, amplitude: float) -> float:
    """``w = min(1, amplitude / mean(pattern))`` (see the module docstring)."""
    return min(1.0, amplitude / float(pattern_values(region, pattern, 1).mean()))


def write_pattern(x: torch.Tensor, region, pattern: str = "solid", amplitude: float = 1.0,
                  where: torch.Tensor | None = None, erase: bool = False) -> torch.Tensor:
    """``x[n, C, H, W]`` with the pattern blended into ``region`` (a new tensor; ``x`` is unchanged).

    ``where``: optional ``[n]`` bool, the images to write on (the others are copied as they are).
    ``erase``: blend towards 0 with the pattern's weight instead of towards the pattern: the same
    occlusion of the region, ``(1 - w) * x``, without the pattern.
    """
    r0, r1, c0, c1 = region
    values = pattern_values(region, pattern, x.shape[1]).to(x) * (0.0 if erase else 1.0)
    w = blend_weight(region, pattern, amplitude)
    out = x.clone()
    block = out[:, :, r0:r1, c0:c1]
    written = (1 - w) * block + w * values
    if where is not None:
        written = torch.where(where.to(x.device).view(-1, 1, 1, 1), written, block)
    out[:, :, r0:r1, c0:c1] = written
    return out
