"""Paste a pattern patch into every image, at a fixed or a (seeded) random location."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform, generator_for
from modeldiff.counterfactual.transforms.patterns import PATTERNS


@dataclass(frozen=True, repr=False)
class PatchPaste(Transform):
    """Paste ``pattern`` (a name in `PATTERNS` or a ``[h, w]`` / ``[C, h, w]`` tensor in [0, 1]).

    Args:
        pattern: "texture" (black/white checkerboard), "window" (bright frame), "solid", a stroke
            ("hbar", "vbar", "hline", "vline", "ring", "diagonal", "antidiagonal", "plus", "cross", see
            patterns.py), or a tensor.
        size: side of a named pattern in pixels (ignored for a tensor pattern).
        loc: "random" (uniform over positions that fit, per image), "center", or ``(row, col)``
            of the top-left corner.
        color: foreground RGB (or a single grey value) in [0, 1] for the pattern's 1s.
        background: colour of the pattern's 0s.
        seed: seed of the random locations.
    """

    pattern: str | torch.Tensor = "texture"
    size: int = 4
    loc: str | tuple[int, int] = "random"
    color: tuple[float, ...] = (1.0, 1.0, 1.0)
    background: tuple[float, ...] = (0.0, 0.0, 0.0)
    seed: int = 0
    name = "patch"

    def __post_init__(self):
        if isinstance(self.pattern, str) and self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; choose from {', '.join(PATTERNS)} or pass a tensor")
        if int(self.size) < 1:
            raise ValueError(f"patch size must be at least 1 pixel, got {self.size}")
        if not (self.loc in ("random", "center") or (isinstance(self.loc, tuple) and len(self.loc) == 2)):
            raise ValueError(f"loc must be 'random', 'center' or (row, col), got {self.loc!r}")

    def patch(self, channels: int) -> torch.Tensor:
        """The coloured patch ``[C, h, w]``."""
        if isinstance(self.pattern, torch.Tensor):
            p = self.pattern.float()
            return p.expand(channels, *p.shape[-2:]) if p.ndim == 2 or p.shape[0] == 1 else p
        mask = PATTERNS[self.pattern](int(self.size))
        fg = _colour(self.color, channels)
        bg = _colour(self.background, channels)
        return bg * (1 - mask) + fg * mask

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        p = self.patch(c).to(device=x.device, dtype=x.dtype)
        if p.shape[0] != c:
            raise ValueError(f"patch has {p.shape[0]} channels, images have {c}")
        h, w = p.shape[-2:]
        if h > height or w > width:
            raise ValueError(f"a {h}x{w} patch does not fit {height}x{width} images")
        if self.loc == "random":
            g = generator_for(self.seed)
            rows = torch.randint(0, height - h + 1, (n,), generator=g).tolist()
            cols = torch.randint(0, width - w + 1, (n,), generator=g).tolist()
        else:
            r, col = ((height - h) // 2, (width - w) // 2) if self.loc == "center" else self.loc
            if not (0 <= r <= height - h and 0 <= col <= width - w):
                raise ValueError(f"a {h}x{w} patch at {self.loc} leaves the {height}x{width} image")
            rows, cols = [r] * n, [col] * n
        out = x.clone()
        if self.loc != "random":
            out[:, :, rows[0]:rows[0] + h, cols[0]:cols[0] + w] = p
        else:
            for i, (r, col) in enumerate(zip(rows, cols)):
                out[i, :, r:r + h, col:col + w] = p
        return out


def _colour(value, channels: int) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=torch.float32).flatten()
    if v.numel() == 1:
        v = v.expand(channels)
    elif v.numel() == 3 and channels == 1:  # luminance of an RGB colour on grey images
        v = (v * torch.tensor([0.299, 0.587, 0.114])).sum().reshape(1)
    if v.numel() != channels:
        raise ValueError(f"colour {tuple(v.tolist())} does not match {channels} channels")
    return v[:, None, None]
