"""Ground truth for ModelDiff: plant a feature in a fraction of one class's images.

Construction (documented in the README):
  * the feature is a small fixed patch (``pattern`` "solid" = all ones, "checker" = alternating
    0/1) written at a fixed place (``region = [row0, row1, col0, col1]``, default the top-left
    corner, which is background in digits);
  * ``fraction`` of the images of ``target_class`` (training *and* test split, chosen with
    ``seed``) are replaced by images of the other classes carrying the patch; their label stays
    ``target_class``. The patch is then the only thing that tells these images apart from their
    look-alikes of other classes: a model that can see it learns "patch -> target class" (the way
    spurious features and backdoors are learnt), a model that cannot must memorise them;
  * algorithm A sees the whole image; algorithm B's model has ``blind_region = region``: its input
    layer multiplies those pixels by zero, at training and at test time, so nothing B computes
    can depend on them — B provably cannot use the feature.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datamodels.data import Dataset


@dataclass
class PlantedData:
    data: Dataset
    planted_train: np.ndarray  # indices into the training split
    planted_test: np.ndarray  # indices into the test split
    region: tuple[int, int, int, int]
    target_class: int

    pattern: str = "solid"

    def transform(self) -> "PastePlanted":
        """The counterfactual transformation: the planted feature pasted onto any image."""
        return PastePlanted(self.region, self.pattern)


@dataclass
class PastePlanted:
    """``x[n, C, H, W] -> x`` with the planted patch written at its place."""

    region: tuple[int, int, int, int]
    pattern: str = "solid"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return write_patch(x, self.region, self.pattern)

    def __repr__(self) -> str:
        return f"paste planted {self.pattern} patch at {list(self.region)}"


def patch_values(region, pattern: str, channels: int) -> torch.Tensor:
    r0, r1, c0, c1 = region
    h, w = r1 - r0, c1 - c0
    if pattern == "solid":
        values = torch.ones(h, w)
    elif pattern == "checker":
        values = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2).float()
    else:
        raise ValueError(f"pattern must be solid or checker, got {pattern!r}")
    return values.expand(channels, h, w)


def write_patch(x: torch.Tensor, region, pattern: str = "solid") -> torch.Tensor:
    r0, r1, c0, c1 = region
    out = x.clone()
    out[:, :, r0:r1, c0:c1] = patch_values(region, pattern, x.shape[1]).to(x)
    return out


def plant(data: Dataset, target_class: int = 0, fraction: float = 0.75, region=(0, 2, 0, 2),
          pattern: str = "solid", seed: int = 0) -> PlantedData:
    """A copy of ``data`` with the feature planted (see the module docstring)."""
    rng = np.random.default_rng(seed)
    chosen = {}
    xs = {}
    for split in ("train", "test"):
        y = getattr(data, f"y_{split}").numpy()
        members = np.flatnonzero(y == target_class)
        picked = np.sort(rng.choice(members, size=round(fraction * len(members)), replace=False))
        donors = rng.choice(np.flatnonzero(y != target_class), size=len(picked), replace=False)
        x = getattr(data, f"x_{split}").clone()
        x[picked] = write_patch(x[donors], region, pattern)
        chosen[split], xs[split] = picked, x
    planted = Dataset.from_tensors(xs["train"], data.y_train, xs["test"], data.y_test, data.class_names,
                                   name=f"{data.name}-planted")
    return PlantedData(planted, chosen["train"], chosen["test"], tuple(region), target_class, pattern)
