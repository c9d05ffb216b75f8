"""Python API: a learning algorithm as an object, and one call that compares two of them.

    from modeldiff import Algorithm, compare

    sgd = Algorithm(model="my_pkg.nets:make_net", optimizer="sgd", lr=0.05, batch_size=32, epochs=10)
    adam = Algorithm(model=make_net, optimizer="adam", lr=1e-3, batch_size=32, epochs=10)
    summary = compare(sgd, adam, "my_pkg.data:load", out="runs/sgd-vs-adam", models=32)

An :class:`Algorithm` is a recipe (:mod:`datamodels.training.recipe`) written with Python objects:
callables are recorded by their import target (``registry.target_of``), so the stores it fills can be
reopened by every CLI command. :func:`compare` runs the study pipeline (train both algorithms on the
same random subsets -> attributions -> ModelDiff both ways -> counterfactual tests -> reports) and
returns its summary.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodels.base.errors import UserError

BUILTIN_OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw"}  # torch.optim classes with short names


def _target(obj: Any, what: str) -> str:
    """A string as given, or a callable's import target (lambdas and closures refused in one line)."""
    if obj is None or isinstance(obj, str):
        return obj
    from datamodels.registry import target_of

    if not callable(obj):
        raise UserError(f"{what} must be a name, an import target 'pkg.mod:name' or a top-level callable; "
                        f"got {type(obj).__name__}")
    try:
        return target_of(obj)
    except UserError:
        raise UserError(f"{what} {getattr(obj, '__qualname__', obj)!r} cannot be recorded: define it at the top "
                        f"level of an importable module (not a lambda, a nested function or in __main__ of a "
                        f"notebook), or give its import target 'pkg.mod:name'") from None


@dataclass
class Algorithm:
    """One learning algorithm (see the recipe schema in the README, "Your own algorithm").

    Args:
        model: built-in name (``digits_cnn``, ``resnet9``, ``linear``), an import target or a top-level
            callable returning an ``nn.Module`` that maps ``x[B, *input_shape]`` to logits ``[B, K]``
            (``num_classes`` / ``input_shape`` are passed when it accepts them).
        model_kwargs: keyword arguments of a user model callable (built-ins: ``{"width": 16}``).
        optimizer: ``sgd`` | ``adam`` | ``adamw`` | an optimizer class (or its import target).
        lr: learning rate; optimizer_kwargs: further optimizer settings (``momentum``, ``betas``...).
        loss: ``cross_entropy`` or a callable ``fn(logits[B, K], y[B]) -> per-example loss [B]``.
        trainer: ``auto`` | ``ensemble`` | ``vmap`` | ``loop``.
        train_fn: your own training function ``train_fn(model, x, y, *, seed, device, recipe) -> nn.Module``
            (replaces ``trainer``); train_fn_kwargs: its extra keyword arguments.
        batch_size, epochs, precision, name: as in a recipe.
        extra: any other recipe keys, e.g. ``{"augment": {"flip": True}}``.
    """

    model: Any = None
    optimizer: Any = None
    loss: Any = None
    trainer: Any = None
    train_fn: Callable | str | None = None
    batch_size: int | None = None
    epochs: int | None = None
    lr: float | None = None
    name: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    optimizer_kwargs: dict = field(default_factory=dict)
    train_fn_kwargs: dict = field(default_factory=dict)
    precision: str | None = None
    extra: dict = field(default_factory=dict)

    def recipe_dict(self, data: dict | None = None) -> dict:
        """The recipe as a nested dict (the agreed YAML schema); ``data``: its data section."""
        d: dict = {k: v for k, v in self.extra.items()}
        d["name"] = self.name or d.get("name") or "algorithm"
        if data is not None:
            d["data"] = data
        if self.model is not None:
            from datamodels.training.models import ARCHITECTURES

            if isinstance(self.model, str) and self.model in ARCHITECTURES:
                d["model"] = {"arch": self.model, **self.model_kwargs}
            else:
                d["model"] = {"target": _target(self.model, "model"), "kwargs": dict(self.model_kwargs)}
        elif self.model_kwargs:
            d["model"] = dict(self.model_kwargs)
        optim = dict(d.get("optim") or {})
        if self.optimizer is not None:
            opt = self.optimizer
            torch_class = isinstance(opt, type) and opt.__module__.startswith("torch.optim")
            if torch_class and opt.__name__ in BUILTIN_OPTIMIZERS:
                opt = BUILTIN_OPTIMIZERS[opt.__name__]
            optim["name"] = _target(opt, "optimizer")
        if self.lr is not None:
            optim["lr"] = float(self.lr)
        if self.optimizer_kwargs:
            import dataclasses

            from datamodels.training.recipe import OptimConfig

            known = {f.name for f in dataclasses.fields(OptimConfig)}
            optim.update({k: v for k, v in self.optimizer_kwargs.items() if k in known})
            rest = {k: v for k, v in self.optimizer_kwargs.items() if k not in known}
            if rest:  # a user optimizer's own constructor arguments
                optim["kwargs"] = {**optim.get("kwargs", {}), **rest}
        if optim:
            d["optim"] = optim
        if self.loss is not None:
            d["loss"] = _target(self.loss, "loss")
        if self.train_fn is not None:
            if self.trainer is not None:
                raise UserError("give either trainer or train_fn, not both: train_fn replaces the trainer")
            d["trainer"] = {"target": _target(self.train_fn, "train_fn"), "kwargs": dict(self.train_fn_kwargs)}
        elif self.trainer is not None:
            d["trainer"] = self.trainer if isinstance(self.trainer, (str, dict)) else _target(self.trainer, "trainer")
        for key in ("batch_size", "epochs", "precision"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    def to_recipe(self, data: dict | None = None):
        """The validated :class:`~datamodels.training.recipe.Recipe` (bad keys raise UserError naming them)."""
        from datamodels.training.recipe import recipe_from_dict

        return recipe_from_dict(self.recipe_dict(data))


def data_section(data) -> tuple[dict, Any]:
    """``(recipe data section, Dataset or None)`` from a Dataset, a data target, or a data mapping."""
    from datamodels.data.dataset import Dataset

    if isinstance(data, Dataset):
        return {"name": data.name}, data
    if isinstance(data, str):
        from datamodels.data.dataset import BUILTIN_DATASETS

        return ({"name": data} if data in BUILTIN_DATASETS else {"target": data}), None
    if isinstance(data, dict):
        return dict(data), None
    if callable(data):
        return {"target": _target(data, "data")}, None
    raise UserError(f"data must be a Dataset, 'digits', a data target 'pkg.mod:load' or a recipe data mapping; "
                    f"got {type(data).__name__}")


def compare(algorithm_a: Algorithm, algorithm_b: Algorithm, data, *, out, models: int = 32,
            subset_fraction: float = 0.5, method: str = "trak", components: int = 5,
            attribution_models: int | None = None, proj_dim: int | None = None, seed: int = 0,
            seeds: tuple[int, int] | None = None, labels: tuple[str, str] | None = None,
            counterfactual: dict | None = None, ensemble_size: int = 16, device: str = "cpu") -> dict:
    """Compare two algorithms end to end; returns the study summary (also ``OUT/summary.json``).

    Args:
        data: a :class:`~datamodels.data.dataset.Dataset`, ``"digits"``, a data target
            ``"pkg.mod:load"`` (or the loader function), or a recipe data mapping
            ``{"target": ..., "kwargs": {...}}``. With a target the stores reopen by themselves
            in every CLI command; a Dataset object works in Python only.
        out: output folder (resumes when it exists): ``store_a``, ``store_b``, scores, reports.
        models: models per algorithm, each trained on a random ``subset_fraction`` of the training set
            (both algorithms see the same subsets unless ``seeds`` differ).
        method: ``trak`` or ``datamodels``; attribution_models: models averaged by TRAK (default
            ``min(16, models)``); proj_dim: TRAK's projection dimension (default: a power of two
            <= n_train / 4, at most 1024).
        components: ModelDiff components per direction.
        counterfactual: keys of the study's counterfactual section (``transforms``, ``n_test``, ...).
    Returns:
        the summary dict: ``algorithms`` (accuracy per algorithm), ``directions`` (explained
        variances, counterfactual effects, report paths).
    """
    from datamodels.attribution.trak import auto_proj_dim
    from datamodels.data.dataset import load_from_config
    from datamodels.training.recipe import _build
    from modeldiff.studies.config import (
        AlgorithmSpec,
        AttributionSpec,
        CounterfactualSpec,
        StudyConfig,
    )
    from modeldiff.studies.run import run_study

    for tag, alg in (("algorithm_a", algorithm_a), ("algorithm_b", algorithm_b)):
        if not isinstance(alg, Algorithm):
            raise UserError(f"{tag} must be an Algorithm(...), got {type(alg).__name__}")
    if models < 2:
        raise UserError(f"models must be at least 2, got {models}")
    section, dataset = data_section(data)
    recipes = [alg.recipe_dict(section) for alg in (algorithm_a, algorithm_b)]
    if recipes[0]["name"] == recipes[1]["name"]:
        recipes[1]["name"] = recipes[1]["name"] + "-b"
    recipe_a = algorithm_a.to_recipe(section)  # validates both before anything runs
    algorithm_b.to_recipe(section)
    if dataset is None:
        dataset = load_from_config(recipe_a.data)
    n_attr = min(16, models) if attribution_models is None else attribution_models
    k = proj_dim if proj_dim is not None else min(1024, auto_proj_dim(dataset.n_train))
    cf = _build(CounterfactualSpec, dict(counterfactual or {}), "counterfactual.", what="compare")
    seed_a, seed_b = seeds if seeds is not None else (None, None)
    label_a, label_b = labels if labels is not None else (recipes[0]["name"], recipes[1]["name"])
    cfg = StudyConfig(
        name=f"{recipes[0]['name']}_vs_{recipes[1]['name']}",
        algorithm_a=AlgorithmSpec(recipe=recipes[0], label=label_a, seed=seed_a),
        algorithm_b=AlgorithmSpec(recipe=recipes[1], label=label_b, seed=seed_b),
        models=models, subset_fraction=subset_fraction, seed=seed, components=components,
        ensemble_size=ensemble_size, attribution=AttributionSpec(method=method, models=n_attr, proj_dim=k),
        counterfactual=cf, folder=str(Path.cwd()))
    return run_study(cfg, out, device=device, data=dataset)
