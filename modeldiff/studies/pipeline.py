"""One study, raw data to proven feature: train -> attribute -> ModelDiff both ways ->
subpopulations -> counterfactual tests -> report. Every stage resumes from what is on disk.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from modeldiff.studies.config import StudyConfig
from datamodels.data.dataset import Dataset, load_dataset
from datamodels.store.store import Store
from modeldiff.errors import UserError


@dataclass
class Direction:
    """ModelDiff of one ordering (``a_minus_b`` or ``b_minus_a``) and its counterfactual results."""

    name: str
    fit: object
    subpops: list
    counterfactuals: list = field(default_factory=list)
    sweeps: list = field(default_factory=list)


def load_study_data(cfg: StudyConfig, data_dir: str | None = None) -> Dataset:
    recipe, _ = cfg.recipes(data_dir)
    d = recipe.data
    opts = {k: v for k, v in (("per_class_train", d.per_class_train), ("per_class_test", d.per_class_test)) if v}
    return load_dataset(d.name, d.data_dir, **opts)


def train_algorithms(cfg: StudyConfig, data: Dataset, out: Path, device: str, data_dir=None,
                     recipes=None) -> tuple[Store, Store]:
    """Fill (or resume) one store per algorithm; both use the same masks (same seed).
    ``recipes``: (A, B) to use instead of the study's own."""
    from datamodels.training.launchers import fill_store

    stores = []
    for tag, recipe in zip("ab", recipes or cfg.recipes(data_dir)):
        if recipe.init.kind == "checkpoint" and cfg.pretrain:
            recipe = recipe.replace(**{"init.checkpoint": str(pretrained_checkpoint(cfg, recipe, data, out, device))})
        store = Store.create_or_resume(out / f"store_{tag}", recipe, data, cfg.models, cfg.subset_fraction, cfg.seed)
        fill_store(store, device, cfg.ensemble_size, dataset=data)
        stores.append(Store.open(store.path, data))
    return stores[0], stores[1]


def pretrained_checkpoint(cfg: StudyConfig, recipe, data: Dataset, out: Path, device: str) -> Path:
    """The study's pretraining checkpoint (made once, on a disjoint task: see pretraining/pretrain.py)."""
    from case_studies.pretraining.pretrain import pretrain

    spec = {"task": "rotation", "epochs": 20, "seed": 0, **cfg.pretrain}
    if spec["task"] != "rotation":
        raise UserError(f"pretrain.task must be 'rotation', got {spec['task']!r}")
    path = (out / "pretrained.pt").resolve()
    if not path.is_file():
        pretrain(recipe, data, path, epochs=spec["epochs"], seed=spec["seed"], device=device)
    return path


def attribute_stores(cfg: StudyConfig, stores, out: Path, device: str, method: str | None = None):
    """Influence datasets (HDF5) for both stores; reuses files already written with the same settings."""
    from datamodels.attribution.api import attribute_to_file
    from datamodels.attribution.influence_io import read_influence

    spec = cfg.attribution
    method = method or spec.method
    params = {"proj_dim": spec.proj_dim, "batch_size": spec.batch_size} if method == "trak" else {"n_lambdas": spec.lambdas}
    n_models = spec.models if method == "trak" else None
    scores = []
    for tag, store in zip("ab", stores):
        path = out / f"scores_{tag}_{method}.h5"
        stamp = out / f"scores_{tag}_{method}.json"
        key = {"method": method, "params": params, "n_models": n_models, "valid": len(store.valid_indices())}
        if not (path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key):
            attribute_to_file(store, path, method, n_models=n_models, device=device, **params)
            stamp.write_text(json.dumps(key))
        scores.append(read_influence(path).scores)
    return scores[0], scores[1]


def compare(cfg: StudyConfig, scores_a, scores_b, data: Dataset) -> tuple[Direction, Direction]:
    """ModelDiff A−B and B−A with their subpopulations."""
    from modeldiff.diff.residual_pca import ModelDiff
    from modeldiff.diff.subpopulations import subpopulations

    out = []
    for name, (x, y) in (("a_minus_b", (scores_a, scores_b)), ("b_minus_a", (scores_b, scores_a))):
        fit = ModelDiff(cfg.components, random_state=cfg.seed).fit(x, y)
        subs = subpopulations(fit, n_train_top=16, n_test_top=16,
                              train_labels=data.y_train.numpy(), test_labels=data.y_test.numpy(),
                              class_names=data.class_names)
        out.append(Direction(name, fit, subs))
    return out[0], out[1]


def counterfactual_inputs(data: Dataset, target: int, n: int, seed: int, rows=None) -> torch.Tensor:
    """Up to ``n`` test images of classes other than ``target`` (fixed by ``seed``), drawn from
    the test rows ``rows`` (default: all)."""
    from modeldiff.counterfactual.effects import select_inputs

    idx = select_inputs(data.y_test.numpy(), target)
    if rows is not None:
        idx = np.intersect1d(idx, np.asarray(rows))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return data.x_test[torch.as_tensor(idx)]


def run_counterfactuals(cfg: StudyConfig, direction: Direction, stores, data: Dataset, device: str,
                        extra=(), rows=None) -> None:
    """Test data-derived overlays of the top components, the study's transforms, and ``extra``
    ``(transform, target_class)`` pairs on A's and B's models, on test images from ``rows``."""
    from modeldiff.counterfactual.candidates import overlay_from_component
    from modeldiff.counterfactual.effects import counterfactual_effects, patch_size_sweep, store_predictor
    from modeldiff.counterfactual.transforms.spec import parse_transform

    spec = cfg.counterfactual
    first, second = (stores if direction.name == "a_minus_b" else stores[::-1])
    pred_a, pred_b = store_predictor(first, device=device), store_predictor(second, device=device)
    kw = {"n_resamples": spec.bootstrap, "seed": spec.seed}
    tests = list(extra)
    for j in range(min(spec.auto_candidates, len(direction.fit.components_))):
        for sign in (1, -1):
            t, target, _ = overlay_from_component(direction.fit.components_[j], data.x_train, data.y_train,
                                                  top_k=spec.top_k, sign=sign, name=f"component {j}")
            tests.append((t, target))
    # the study's own transforms are tested towards the class of the top component's subpopulation
    top_target = tests[len(extra)][1] if len(tests) > len(extra) else 0
    for text in spec.transforms:
        tests.append((parse_transform(text, seed=spec.seed), top_target))
    for transform, target in tests:
        x = counterfactual_inputs(data, target, spec.n_test, spec.seed, rows)
        direction.counterfactuals.append(counterfactual_effects(pred_a, pred_b, x, transform, target, **kw))
        if spec.sizes and "size" in getattr(transform, "params", {}):
            direction.sweeps.append(patch_size_sweep(pred_a, pred_b, x, transform, target, spec.sizes, **kw))
