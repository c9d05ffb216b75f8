"""Ground truth for ModelDiff: plant a feature in a fraction of one class's images.

Construction:
  * the feature is a small fixed pattern (``solid``, ``checker``, ``bar``, ``vbar``, ``ring``,
    ``cross``, ``diagonal``: :mod:`datamodels.data.patterns`) blended at a fixed place
    (``region = [row0, row1, col0, col1]``) with weight ``w = min(1, amplitude / mean(pattern))``,
    so every pattern adds the same mean intensity over its region;
  * ``fraction`` of the images of ``target_class`` (training *and* test split, chosen with
    ``seed``) carry it; they stay images of their own class with their own, correct label. Nothing
    forces a model to use the pattern (the digits are recognisable without it), but in the
    training set it co-occurs only with ``target_class``, so a model may learn "pattern ->
    target class" as a spurious shortcut;
  * with ``test_copies`` the test split also gets a pasted copy of every test image of the other
    classes (true labels kept), appended after the original rows; ``clean_test_rows`` are the
    original rows (counterfactual tests and, in the shipped study, the search use those).

Algorithm A trains on these inputs as they are. Algorithm B sees every pixel too (no part of its
input is hidden) and trains on the same inputs, but its recipe carries the augmentation
``augment.paste`` (:class:`datamodels.training.recipe.PasteConfig`): in every epoch each training
input, whatever its label, gets the same pattern at the same place with probability ``share``.

An occluding A (option, not the shipped study): A's recipe may carry the same augmentation without
the pattern (``augment.paste.erase: true``): the same share of its inputs has the place dimmed by the
same blend weight, ``(1 - w) * x``, and nothing written there, so both algorithms are equally used to
the place being covered. Pasting anything at a fixed place on half of the inputs teaches a model to
classify without that place, so a B that pastes while A does not is less sensitive to *any* change
there, in the planted run and its twin alike. On the seeded grid the occluding A learnt the
shortcut about half as strongly and the search found the plant less often (docs/discovery.md), so
the shipped study does not use it.

Why B does not learn the shortcut: for A the pattern is a perfect predictor — every training input
that carries it is a ``target_class`` image — so "pattern -> target class" lowers A's loss on every
planted image and costs nothing anywhere. For B the pattern appears on a ``share`` of the inputs of
*every* class; among B's pattern-carrying inputs the target class is only slightly over-represented
(the planted images add to the pasted ones): the posterior odds of the target class given the
pattern rise by the factor ``1 + q / (share * (pi - q))`` at most (``pi`` the class's share of the
training set, ``q = fraction * pi`` the planted share), against a factor of infinity for A. More to
the point for a gradient learner, every pasted image of another class pushes "pattern -> its own
class" against "pattern -> target class", so the weights that read the pattern get a gradient that
mostly cancels; what B keeps is a small residual reliance, which the planted study measures
(pasting the pattern on clean test images of other classes: B's log-odds effect, with its CI, must
stay at most a third of A's). Unlike a blind input region, B can react to anything at the plant's
place, so an A−B difference there is evidence of a learnt shortcut, not of what B cannot see; and
the study's no-plant twin (same recipes, nothing planted) shows what the paste augmentation alone
does to the A−B comparison.

The background share (``background``, an option; 0 in the shipped study): without it the twin is
unfair in one way the plant is not. In the twin, B has met the pattern on half of its inputs with
every label and learnt to ignore it, while A has never met it; if the pattern happens to draw part
of a digit at that place (a ring at the bottom right reads as the loop of a 6), A reacts to it as
any untrained reader would and B does not, so the twin "confirms" the planted (place, class)
although nothing was planted. That difference between the recipes is real (B's augmentation makes
it), but it is not the plant's. With a ``background`` share of all training images carrying the
pattern whatever their label, in the planted data *and* in the twin, both algorithms have met the
pattern in the twin and learnt that it says nothing about the label; the planted data differs from
the twin only in that ``fraction`` of the target class carries it too, i.e. in the pattern's
correlation with the label — which is what a shortcut is. The share must stay small beside the
plant, or it dilutes the shortcut for A as well: the pattern's likelihood ratio for the target
class is ``(fraction + (1 − fraction) b) / b`` (b the share), 5.8 for ``fraction`` 0.25 and
b = 0.05. On the seeded grid b = 0.05 halved A's reliance and
the search found the plant less often (docs/discovery.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datamodels.data.dataset import Dataset
from datamodels.data.patterns import PATTERNS, check_pattern, check_region, write_pattern


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
    background_train: np.ndarray | None = None  # training images of every class that carry the pattern (``background``)
    twin: Dataset | None = None  # the no-plant twin's data: the original splits with the same background images

    @property
    def clean_test_rows(self) -> np.ndarray:
        return np.arange(self.n_clean_test)

    def transform(self) -> "PastePlanted":
        """The counterfactual transformation: the planted feature pasted onto any image."""
        return PastePlanted(self.region, self.pattern, self.amplitude)


@dataclass
class PastePlanted:
    """``x[n, C, H, W] -> x`` with the planted pattern written at its place."""

    region: tuple[int, int, int, int]
    pattern: str = "solid"
    amplitude: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return write_patch(x, self.region, self.pattern, self.amplitude)

    def __repr__(self) -> str:
        return f"paste planted {self.pattern} pattern (amplitude {self.amplitude:g}) at {list(self.region)}"

    @property
    def params(self) -> dict:
        """Where and what (read by the planted study's matching: ``region`` marks a local transform)."""
        return {"region": list(self.region), "pattern": self.pattern, "amplitude": self.amplitude}


def write_patch(x: torch.Tensor, region, pattern: str = "solid", amplitude: float = 1.0) -> torch.Tensor:
    """``x[n, C, H, W]`` with the pattern blended in (:func:`datamodels.data.patterns.write_pattern`)."""
    return write_pattern(x, region, pattern, amplitude)


def plant(data: Dataset, target_class: int = 0, fraction: float = 0.75, region=(0, 2, 0, 2),
          pattern: str = "solid", amplitude: float = 1.0, test_copies: bool = False, seed: int = 0,
          select: str = "random", test_fraction: float | None = None, background: float = 0.0) -> PlantedData:
    """A copy of ``data`` with the feature planted (see the module docstring).

    ``select``: which ``fraction`` of the target class's images carry the patch: ``random`` (drawn
    with ``seed``) or ``hardest`` (the lowest true-class margins of a reference logistic regression:
    cross-validated on the training split, fitted on it for the test split; see :func:`hardness`).
    ``test_fraction``: the share of the target class's *test* images that carry it (default
    ``fraction``); a few planted training images and every target-class test image patched is the
    construction where single planted images matter (see the README's planted section).
    ``background``: the share of *all* training images, drawn whatever their label, that carry the
    pattern in both the planted data and its no-plant twin (``PlantedData.twin``): the pattern is then
    familiar to both algorithms in the twin, and the plant differs from the twin only by the pattern's
    correlation with ``target_class`` (see "The background share" in the module docstring).
    ``data.x_train [n_train, C, H, W]`` keeps its shape; the test split grows to
    ``n_test + #(test images not of target_class)`` rows when ``test_copies``.
    """
    _check_plant_args(data, target_class, fraction, region, amplitude, pattern)
    if not 0 <= background < 1:
        from datamodels.base.errors import UserError

        raise UserError(f"plant.background must be in [0, 1), got {background}")
    if test_fraction is not None and not 0 < test_fraction <= 1:
        from datamodels.base.errors import UserError

        raise UserError(f"plant.test_fraction must be in (0, 1], got {test_fraction}")
    if select not in ("random", "hardest"):
        from datamodels.base.errors import UserError

        raise UserError(f"plant.select must be random or hardest, got {select!r}")
    rng = np.random.default_rng(seed)
    n_train = len(data.y_train)
    back = np.sort(np.random.default_rng([seed, 1]).choice(n_train, size=round(background * n_train), replace=False))
    x_twin = data.x_train.clone()
    x_twin[back] = write_patch(x_twin[back], region, pattern, amplitude)
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
        x = (x_twin if split == "train" else data.x_test).clone()
        fresh = np.setdiff1d(picked, back) if split == "train" else picked  # an image carries the pattern once
        x[fresh] = write_patch(x[fresh], region, pattern, amplitude)
        chosen[split], xs[split] = picked, x
    y_test, pasted = data.y_test, None
    if test_copies:
        others = torch.as_tensor(np.flatnonzero(data.y_test.numpy() != target_class))
        pasted = np.arange(len(y_test), len(y_test) + len(others))
        xs["test"] = torch.cat([xs["test"], write_patch(data.x_test[others], region, pattern, amplitude)])
        y_test = torch.cat([y_test, data.y_test[others]])
    planted = Dataset.from_tensors(xs["train"], data.y_train, xs["test"], y_test, data.class_names,
                                   name=f"{data.name}-planted")
    twin = data if not len(back) else Dataset.from_tensors(x_twin, data.y_train, data.x_test, data.y_test,
                                                           data.class_names, name=f"{data.name}-background")
    return PlantedData(planted, chosen["train"], chosen["test"], tuple(region), target_class, pattern,
                       amplitude, pasted, len(data.y_test), back, twin)


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


def _check_plant_args(data: Dataset, target_class: int, fraction: float, region, amplitude: float,
                      pattern: str = "solid") -> None:
    from datamodels.base.errors import UserError

    check_region(region, data.x_train.shape[-2:], what="plant.region")
    check_pattern(pattern, amplitude, what="plant.pattern")
    if not 0 < fraction <= 1:
        raise UserError(f"plant.fraction must be in (0, 1], got {fraction}")
    if target_class not in range(len(data.class_names)):
        raise UserError(f"plant.target_class must be a class index 0..{len(data.class_names) - 1}, got {target_class}")


__all__ = ["PATTERNS", "PastePlanted", "PlantedData", "hardness", "plant", "write_patch"]
