"""Pretraining on a disjoint task: which of four rotations (0, 90, 180, 270 degrees) was applied.

Built from the *training* images only (no test image is ever seen) and with rotation labels
instead of classes, so the pretrained features carry no label information of the downstream
task. Output: a one-model state dict whose head (4 outputs) the downstream recipe re-draws
(``init.reset_head``). Square images only.

The study names :func:`setup` in its YAML (``setup: {target: case_studies.pretraining.pretrain:setup,
kwargs: {epochs: 20}}``): it makes the checkpoint once (``OUT/pretrained.pt``) and points the
``init.checkpoint`` of each recipe that starts from a checkpoint at it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from datamodels.data.dataset import Dataset
from datamodels.training.ensemble_trainer import train_ensemble
from datamodels.training.recipe import Recipe


def rotation_task(data: Dataset) -> Dataset:
    """Each training image in its 4 rotations, labelled by the rotation; the test split is a
    rotated copy of a quarter of the training images (to report the pretext accuracy)."""
    xs, ys = [], []
    for k in range(4):
        xs.append(torch.rot90(data.x_train, k, dims=(2, 3)))
        ys.append(torch.full((data.n_train,), k, dtype=torch.long))
    x, y = torch.cat(xs), torch.cat(ys)
    held = torch.arange(0, len(y), 4)
    return Dataset.from_tensors(x, y, x[held], y[held], ["0", "90", "180", "270"], name=f"{data.name}-rotation")


def pretrain(recipe: Recipe, data: Dataset, out: str | os.PathLike, epochs: int = 20, seed: int = 0,
             device: str = "cpu") -> Path:
    """Train one rotation-prediction model with ``recipe``'s architecture and SGD settings and
    save its state dict at ``out`` (written atomically). Returns the path."""
    out = Path(out)
    task = rotation_task(data)
    plain = recipe.replace(**{"init.kind": "random", "init.checkpoint": None, "epochs": epochs,
                              "augment.flip": False, "augment.cutout": 0})
    masks = torch.ones(1, task.n_train, dtype=torch.bool)
    result = train_ensemble(plain, task, masks, [seed], device, train_margins=False)
    from datamodels.training.models import extract_single

    print(f"pretext task (rotation) accuracy: {100 * float(result.accuracy[0]):.1f} %")
    out.parent.mkdir(parents=True, exist_ok=True)
    from datamodels.base.atomic import atomic_path

    with atomic_path(out) as tmp:
        torch.save(extract_single(result.net, 0), tmp)
    return out


def setup(cfg, data: Dataset, recipes, out, device: str = "cpu", task: str = "rotation", epochs: int = 20,
          seed: int = 0):
    """The study's set-up step (see the module docstring): the recipes with ``init.kind: checkpoint``
    start from the rotation-pretrained model, made once per output folder."""
    from datamodels.base.errors import UserError
    from modeldiff.studies.hooks import StudyInputs

    if task != "rotation":
        raise UserError(f"setup.kwargs.task must be 'rotation', got {task!r}")
    path = (Path(out) / "pretrained.pt").resolve()
    changed = []
    for recipe in recipes:
        if recipe.init.kind == "checkpoint":
            if not path.is_file():
                pretrain(recipe, data, path, epochs=epochs, seed=seed, device=device)
            recipe = recipe.replace(**{"init.checkpoint": str(path)})
        changed.append(recipe)
    return StudyInputs(recipes=tuple(changed))
