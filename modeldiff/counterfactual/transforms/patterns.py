"""Binary patterns for patch transforms: ``[h, w]`` float tensors with values in {0, 1}.

1 marks the foreground colour, 0 the background (both chosen by `PatchPaste`, which paints the
whole box: a stroke in :data:`STROKES` — bar, line, ring, small glyph — is drawn on its background).
"""
from __future__ import annotations

import torch


def texture(size: int, cell: int = 1) -> torch.Tensor:
    """The paper's black/white texture: a ``size × size`` checkerboard of ``cell``-pixel squares."""
    idx = torch.arange(size) // max(1, cell)
    return ((idx[:, None] + idx[None, :]) % 2 == 0).float()


def window(size: int) -> torch.Tensor:
    """The CIFAR-10 "window" patch: a ``size × size`` bright frame with a central cross bar.

    Frame on all four borders plus a vertical middle bar (and a horizontal one from
    size 5): a bright rectangular window on a dark background.
    """
    p = torch.zeros(size, size)
    p[[0, -1], :] = 1.0
    p[:, [0, -1]] = 1.0
    p[:, size // 2] = 1.0
    if size >= 5:
        p[size // 2, :] = 1.0
    return p


def solid(size: int) -> torch.Tensor:
    """A filled ``size × size`` square."""
    return torch.ones(size, size)


def hbar(size: int) -> torch.Tensor:
    """A horizontal bar one pixel thick and ``size`` long ``[1, size]``."""
    return torch.ones(1, size)


def vbar(size: int) -> torch.Tensor:
    """A vertical bar ``[size, 1]``."""
    return torch.ones(size, 1)


def hline(size: int) -> torch.Tensor:
    """A horizontal line through the middle of a ``size × size`` box (a bar drawn on its square background)."""
    p = torch.zeros(size, size)
    p[size // 2, :] = 1.0
    return p


def vline(size: int) -> torch.Tensor:
    """A vertical line through the middle of a ``size × size`` box."""
    return hline(size).T.contiguous()


def ring(size: int) -> torch.Tensor:
    """A hollow square frame ``size × size`` (one pixel wide)."""
    p = torch.ones(size, size)
    if size > 2:
        p[1:-1, 1:-1] = 0.0
    return p


def diagonal(size: int) -> torch.Tensor:
    """A line from the top-left to the bottom-right corner."""
    return torch.eye(size)


def antidiagonal(size: int) -> torch.Tensor:
    """A line from the top-right to the bottom-left corner."""
    return torch.eye(size).flip(1)


def plus(size: int) -> torch.Tensor:
    """A "+" glyph: the middle row and column."""
    p = torch.zeros(size, size)
    p[size // 2, :] = 1.0
    p[:, size // 2] = 1.0
    return p


def cross(size: int) -> torch.Tensor:
    """An "x" glyph: both diagonals."""
    return ((torch.eye(size) + torch.eye(size).flip(1)) > 0).float()


PATTERNS = {"texture": texture, "window": window, "solid": solid, "hbar": hbar, "vbar": vbar, "hline": hline,
            "vline": vline, "ring": ring, "diagonal": diagonal, "antidiagonal": antidiagonal, "plus": plus,
            "cross": cross}
STROKES = frozenset({"hbar", "vbar", "hline", "vline", "ring", "diagonal", "antidiagonal", "plus", "cross"})  # thin shapes
