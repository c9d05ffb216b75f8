"""Turn a ModelDiff component into a candidate input transformation, from the data alone.

A component's top training examples (largest weights of one sign) share a feature that sets them
apart from the rest of their class. :func:`overlay_from_component` finds where in the image that
feature lives (pixels whose mean over the top examples differs most from the mean over the same
class's lowest-weighted examples) and builds a transformation that pastes the top examples' mean
pixels there. Applied to test images of *other* classes, it asks: does adding this feature push
models towards the subpopulation's class?
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SubpopulationOverlay:
    """``x -> where(mask, pattern, x)`` on ``x[n, C, H, W]`` in [0, 1]."""

    pattern: torch.Tensor  # [C, H, W] mean image of the subpopulation
    mask: torch.Tensor  # [1, H, W] bool, the pixels that carry the feature
    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask.to(x.device), self.pattern.to(x.device, x.dtype), x)

    def __repr__(self) -> str:
        return self.name


def top_contrast(weights, x_train, y_train, *, top_k: int = 40, sign: int = 1):
    """What sets a component's top training images apart: ``(target, purity, pattern [C, H, W], diff [C, H, W])``.

    ``target``: the most frequent class among the ``top_k`` largest ``sign * weights``; ``pattern``:
    the mean of those of that class; ``diff``: ``pattern`` minus the mean of the same class's images
    at or below the class's median weight.
    """
    w = sign * np.asarray(weights, dtype=np.float64)
    top = np.argsort(-w)[:top_k]
    labels = np.asarray(y_train)
    classes, counts = np.unique(labels[top], return_counts=True)
    target = int(classes[np.argmax(counts)])
    purity = float(counts.max() / len(top))
    top_of_class = top[labels[top] == target]
    same = np.flatnonzero(labels == target)
    rest = same[w[same] <= np.median(w[same])]
    if len(rest) == 0:
        rest = np.setdiff1d(same, top_of_class)
    x = torch.as_tensor(x_train).float()
    pattern = x[torch.as_tensor(top_of_class)].mean(0)
    return target, purity, pattern, pattern - x[torch.as_tensor(rest)].mean(0)


def library_match(weights, x_train, y_train, library, *, top_k: int = 40, sign: int = 1, n_best: int = 5) -> list[tuple]:
    """The library patches that best draw what a component's top training images share, towards their class.

    Each fixed-place patch or stroke of ``library`` is scored by how well pasting it reproduces the
    component's contrast (:func:`top_contrast`): the mean over the pixels it changes of
    ``diff · (paste − 0.5)`` (bright where the top images are brighter, dark where darker), summed and
    divided by the paste's norm (a matched filter: neither the smallest nor the largest paste wins by size).
    Returns the ``n_best`` as ``(transform, target_class)`` pairs, best first.
    """
    target, _, _, diff = top_contrast(weights, x_train, y_train, top_k=top_k, sign=sign)
    c, h, w = diff.shape
    probe = torch.full((1, c, h, w), 0.5)
    scored = []
    for i, t in enumerate(library):
        if not isinstance(getattr(t, "params", {}).get("loc"), tuple):
            continue
        delta = t(probe)[0] - 0.5          # [C, H, W]: +0.5 white, -0.5 black, 0 untouched
        if bool((delta != 0).any()):
            scored.append((float((diff * delta).sum() / delta.norm()), i))
    scored.sort(key=lambda r: (-r[0], r[1]))
    return [(library[i], target) for _, i in scored[:n_best]]


def overlay_from_component(weights, x_train: torch.Tensor, y_train: torch.Tensor, *, top_k: int = 40,
                           sign: int = 1, pixel_fraction: float = 0.06, name: str = "component"):
    """Candidate transformation and target class for one signed component.

    Args:
        weights: ``[n_train]`` component weights.
        x_train: ``[n_train, C, H, W]`` images in [0, 1]; ``y_train``: ``[n_train]`` labels.
        sign: +1 uses the largest weights, -1 the most negative ones.
        pixel_fraction: share of the image's pixels pasted.
    Returns:
        ``(SubpopulationOverlay, target_class, purity)`` where purity is the share of the top
        examples that belong to ``target_class``.
    """
    target, purity, pattern, diff = top_contrast(weights, x_train, y_train, top_k=top_k, sign=sign)
    contrast = diff.abs().sum(0)  # [H, W]
    n_pixels = max(1, round(pixel_fraction * contrast.numel()))
    threshold = contrast.flatten().topk(n_pixels).values[-1]
    mask = (contrast >= threshold).unsqueeze(0)
    sign_name = "+" if sign > 0 else "-"
    overlay = SubpopulationOverlay(pattern, mask, f"{name}{sign_name} overlay ({n_pixels}px of class {target})")
    return overlay, target, purity
