"""The base of every counterfactual input transformation.

Implementations (one file each): `PatchPaste` (patch.py: a pattern pasted at a fixed or
random location — the paper's black/white ``texture`` and CIFAR-10 ``window`` patches
among the patterns in patterns.py), `ColorTint` (tint.py), `Grayscale` (grayscale.py),
`GaussianBlur` (blur.py) and `FunctionTransform` (custom.py: any user callable).

Contract: images are float tensors ``[n, C, H, W]`` in [0, 1] pixel space (the models
normalise inside, see docs/CONTRACTS.md); a transform returns a new tensor of the same
shape, dtype and device, in [0, 1], and never writes to its input. Random transforms hold
an explicit ``seed``: the same transform on the same input gives the same output.
"""
from __future__ import annotations

import abc
import dataclasses

import torch


class Transform(abc.ABC):
    """A named, parametrised map on image batches. Subclasses are frozen dataclasses."""

    name: str = "transform"

    @abc.abstractmethod
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform a checked batch ``x[n, C, H, W]``; may return a view-free new tensor."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
            raise ValueError(
                f"{self.name}: expected a float tensor [n, C, H, W], got "
                f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))} {getattr(x, 'dtype', '')}")
        out = self.apply(x)
        if out.shape != x.shape:
            raise ValueError(f"{self.name} changed the batch shape {tuple(x.shape)} -> {tuple(out.shape)}")
        return out.clamp(0.0, 1.0)

    @property
    def params(self) -> dict:
        """The transform's parameters (dataclass fields), for reports and JSON."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}

    def with_params(self, **changes) -> "Transform":
        """A copy with some parameters changed (e.g. ``patch.with_params(size=6)`` in sweeps)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({inner})"


def _fmt(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, tuple):
        return "/".join(_fmt(v) for v in value)
    return str(value)


def generator_for(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (CPU draws: same numbers on every device)."""
    return torch.Generator().manual_seed(int(seed))
