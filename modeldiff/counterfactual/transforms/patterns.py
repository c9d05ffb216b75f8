"""Binary patterns for patch transforms: ``[h, w]`` float tensors with values in {0, 1}.

1 marks the foreground colour, 0 the background (both chosen by `PatchPaste`).
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


PATTERNS = {"texture": texture, "window": window, "solid": solid}
