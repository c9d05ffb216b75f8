"""Low-pass and high-pass filters in the Fourier domain (a disc of radius ``cutoff`` cycles/image)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.counterfactual.transforms.base import Transform


def _disc(h: int, w: int, cutoff: float, device) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, device=device)[:, None] * h
    fx = torch.fft.fftfreq(w, device=device)[None, :] * w
    return (fy ** 2 + fx ** 2).sqrt() <= float(cutoff)


@dataclass(frozen=True, repr=False)
class LowPass(Transform):
    """Keep spatial frequencies up to ``cutoff`` cycles per image (removes fine detail)."""

    cutoff: float = 2.0
    name = "lowpass"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.fft.fft2(x.double())
        keep = _disc(*x.shape[-2:], self.cutoff, x.device)
        return torch.fft.ifft2(f * keep).real.to(x.dtype)


@dataclass(frozen=True, repr=False)
class HighPass(Transform):
    """Remove frequencies up to ``cutoff`` (the mean is kept, so the image stays in range)."""

    cutoff: float = 1.0
    name = "highpass"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.fft.fft2(x.double())
        drop = _disc(*x.shape[-2:], self.cutoff, x.device)
        drop[0, 0] = False
        return torch.fft.ifft2(f * ~drop).real.to(x.dtype)
