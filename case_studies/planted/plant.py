"""Ground truth for ModelDiff: plant a feature in a fraction of one class's images.

Construction (documented in docs/studies.md):
  * the feature is a small fixed patch (``pattern`` "solid" = all ones, "checker" = alternating
    0/1) blended at a fixed place (``region = [row0, row1, col0, col1]``, default the top-left
    corner, which is background in digits) with weight ``w``: the pixels there become
    ``(1 - w) * x + w * pattern``, where ``w = min(1, amplitude / mean(pattern))`` so that every
    pattern adds the same intensity (a checker lights half its pixels, so it gets twice the
    weight). A faint patch (amplitude ~0.1-0.3) is learnt *gradually*: how much a model relies
    on it grows with the number of planted images in its training subset, which is what
    per-example attributions can measure (a saturated, bright patch is learnt from any handful
    of planted images, so no single one matters);
  * ``fraction`` of the images of ``target_class`` (training *and* test split, chosen with
    ``seed``) carry the patch; they stay images of their own class with their own, correct label.
    Nothing forces any model to use the patch (the digits are recognisable without it), but the
    patch co-occurs only with ``target_class``, so a model that can see it may learn "patch ->
    target class" as a spurious shortcut, the more so the more planted images its training subset
    holds. A model that cannot see it treats the planted images as ordinary members of their
    class: nothing about them is special to it, so neither its own attributions nor the B−A
    direction single them out (the controls the planted study reports);
  * with ``test_copies`` the test split also gets a pasted copy of every test image of the other
    classes (true labels kept), appended after the original rows: the feature then occurs at test
    time on images of every class, as a spurious feature would. These are the test examples whose
    predictions depend on the planted training images for A (the patch pulls them towards
    ``target_class``) and not for B. ``clean_test_rows`` are the original rows (counterfactual
    tests paste the feature onto those);
  * algorithm A sees the whole image; algorithm B's model has ``blind_region = region``: its input
    layer multiplies those pixels by zero, at training and at test time, so nothing B computes
    can depend on them — B provably cannot use the feature.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datamodels.data.dataset import Dataset


@dataclass
class PlantedData:
    data: Dataset
    planted_train: np.ndarray  # indices into the training split
    planted_test: np.ndarray  # indices into the test split
    region: tuple[int, int, int, int]
    target_class: int

    pattern: str = "solid"
    amplitude: float = 1.0
    pasted_test: np.ndarray | None = None  # test rows that are pasted copies (``test_copies``)
    n_clean_test: int = 0  # the first ``n_clean_test`` test rows are the original split's

    @property
    def clean_test_rows(self) -> np.ndarray:
        return np.arange(self.n_clean_test)

    def transform(self) -> "PastePlanted":
        """The counterfactual transformation: the planted feature pasted onto any image."""
        return PastePlanted(self.region, self.pattern, self.amplitude)


@dataclass
class PastePlanted:
    """``x[n, C, H, W] -> x`` with the planted patch written at its place."""

    region: tuple[int, int, int, int]
    pattern: str = "solid"
    amplitude: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return write_patch(x, self.region, self.pattern, self.amplitude)

    def __repr__(self) -> str:
        return f"paste planted {self.pattern} patch (amplitude {self.amplitude:g}) at {list(self.region)}"


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


def write_patch(x: torch.Tensor, region, pattern: str = "solid", amplitude: float = 1.0) -> torch.Tensor:
    """``x[n, C, H, W]`` with the patch blended in: ``(1 - w) * x + w * pattern``,
    ``w = min(1, amplitude / mean(pattern))``."""
    r0, r1, c0, c1 = region
    values = patch_values(region, pattern, x.shape[1]).to(x)
    w = min(1.0, amplitude / float(values.mean()))
    out = x.clone()
    out[:, :, r0:r1, c0:c1] = (1 - w) * out[:, :, r0:r1, c0:c1] + w * values
    return out


def plant(data: Dataset, target_class: int = 0, fraction: float = 0.75, region=(0, 2, 0, 2),
          pattern: str = "solid", amplitude: float = 1.0, test_copies: bool = False, seed: int = 0,
          select: str = "random", test_fraction: float | None = None) -> PlantedData:
    """A copy of ``data`` with the feature planted (see the module docstring).

    ``select``: which ``fraction`` of the target class's images carry the patch: ``random`` (drawn
    with ``seed``) or ``hardest`` (the lowest true-class margins of a reference logistic regression:
    cross-validated on the training split, fitted on it for the test split; see :func:`hardness`).
    ``test_fraction``: the share of the target class's *test* images that carry it (default
    ``fraction``); a few planted training images and every target-class test image patched is the
    construction where single planted images matter (see the planted section of docs/studies.md).
    ``data.x_train [n_train, C, H, W]`` keeps its shape; the test split grows to
    ``n_test + #(test images not of target_class)`` rows when ``test_copies``.
    """
    _check_plant_args(data, target_class, fraction, region, amplitude)
    if test_fraction is not None and not 0 < test_fraction <= 1:
        from modeldiff.errors import UserError

        raise UserError(f"plant.test_fraction must be in (0, 1], got {test_fraction}")
    if select not in ("random", "hardest"):
        from modeldiff.errors import UserError

        raise UserError(f"plant.select must be random or hardest, got {select!r}")
    rng = np.random.default_rng(seed)
    margins = hardness(data, seed) if select == "hardest" else None
    chosen = {}
    xs = {}
    for split in ("train", "test"):
        y = getattr(data, f"y_{split}").numpy()
        members = np.flatnonzero(y == target_class)
        share = fraction if split == "train" or test_fraction is None else test_fraction
        size = round(share * len(members))
        if margins is None:
            picked = np.sort(rng.choice(members, size=size, replace=False))
        else:
            picked = np.sort(members[np.argsort(margins[split][members], kind="stable")[:size]])
        x = getattr(data, f"x_{split}").clone()
        x[picked] = write_patch(x[picked], region, pattern, amplitude)
        chosen[split], xs[split] = picked, x
    y_test, pasted = data.y_test, None
    if test_copies:
        others = torch.as_tensor(np.flatnonzero(data.y_test.numpy() != target_class))
        pasted = np.arange(len(y_test), len(y_test) + len(others))
        xs["test"] = torch.cat([xs["test"], write_patch(data.x_test[others], region, pattern, amplitude)])
        y_test = torch.cat([y_test, data.y_test[others]])
    planted = Dataset.from_tensors(xs["train"], data.y_train, xs["test"], y_test, data.class_names,
                                   name=f"{data.name}-planted")
    return PlantedData(planted, chosen["train"], chosen["test"], tuple(region), target_class, pattern,
                       amplitude, pasted, len(data.y_test))


def hardness(data: Dataset, seed: int = 0) -> dict[str, np.ndarray]:
    """True-class margins (log-probability of the true class minus the largest other) of a
    multinomial logistic regression on the raw pixels: ``{"train": [n_train]}`` from 5-fold
    cross-validation (each image scored by a model that did not see it), ``{"test": [n_test]}`` from
    the model fitted on the whole training split. Low margin = hard, confusable image."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    x_tr, y_tr = data.x_train.flatten(1).numpy(), data.y_train.numpy()
    x_te, y_te = data.x_test.flatten(1).numpy(), data.y_test.numpy()
    model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)

    def margin(logp, y):
        true = logp[np.arange(len(y)), y]
        other = logp.copy()
        other[np.arange(len(y)), y] = -np.inf
        return true - other.max(1)

    cv = cross_val_predict(model, x_tr, y_tr, cv=5, method="predict_log_proba")
    fitted = model.fit(x_tr, y_tr)
    return {"train": margin(cv, y_tr), "test": margin(fitted.predict_log_proba(x_te), y_te)}


def _check_plant_args(data: Dataset, target_class: int, fraction: float, region, amplitude: float) -> None:
    from modeldiff.errors import UserError

    h, w = data.x_train.shape[-2:]
    r0, r1, c0, c1 = region
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise UserError(f"plant.region {list(region)} must lie inside the {h}x{w} image as [row0, row1, col0, col1]")
    if not 0 < amplitude <= 1:
        raise UserError(f"plant.amplitude must be in (0, 1], got {amplitude}")
    if not 0 < fraction <= 1:
        raise UserError(f"plant.fraction must be in (0, 1], got {fraction}")
    if target_class not in range(len(data.class_names)):
        raise UserError(f"plant.target_class must be a class index 0..{len(data.class_names) - 1}, got {target_class}")
