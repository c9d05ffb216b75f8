"""Python API: a learning algorithm as an object, and one call that compares two of them.

    from modeldiff import Algorithm, compare

    def make_net(num_classes, input_shape):  # defined anywhere: a module, a notebook cell, a script
        ...
    sgd = Algorithm(model=make_net, optimizer="sgd", lr=0.05, batch_size=32, epochs=10)
    adam = Algorithm(model=make_net, optimizer=torch.optim.AdamW, lr=1e-3, schedule="constant")
    result = compare(sgd, adam, "digits", out="runs/sgd-vs-adam", models=32, search=False)
    result.algorithms["a"].accuracy, result.components["a_minus_b"], result.reports

An :class:`Algorithm` is a recipe (:mod:`datamodels.training.recipe`) written with Python objects.
A callable from an importable module is recorded by its import target, so the stores it fills reopen
in every CLI command; one defined in a notebook or in ``__main__`` (or a lambda) is kept in this
process (``datamodels.registry.record``): its stores record that they reopen from Python only.
:func:`compare` runs the study pipeline (train both algorithms on the same random subsets ->
attributions -> ModelDiff both ways -> null calibration -> search -> counterfactual tests ->
reports) and returns a :class:`~modeldiff.result.ComparisonResult`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodels.base.errors import UserError

BUILTIN_OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw"}  # torch.optim classes with short names


def _target(obj: Any, what: str) -> str:
    """A string as given, or a callable's import target (or its Python-only key: see the module docstring)."""
    if obj is None or isinstance(obj, str):
        return obj
    from datamodels.registry import record

    if not callable(obj):
        raise UserError(f"{what} must be a name, an import target 'pkg.mod:name' or a callable; "
                        f"got {type(obj).__name__}")
    return record(obj)


@dataclass
class Algorithm:
    """One learning algorithm (see the recipe schema in docs/own-algorithm.md).

    Args:
        model: built-in name (``digits_cnn``, ``resnet9``, ``linear``), an import target or a top-level
            callable returning an ``nn.Module`` that maps ``x[B, *input_shape]`` to logits ``[B, K]``
            (``num_classes`` / ``input_shape`` are passed when it accepts them).
        model_kwargs: keyword arguments of a user model callable (built-ins: ``{"width": 16}``).
        optimizer: ``sgd`` | ``adam`` | ``adamw`` | an optimizer class (or its import target).
        lr: peak learning rate; optimizer_kwargs: further optimizer settings (``momentum``, ``betas``...).
        schedule: the learning-rate schedule. Default ``triangle`` for every optimizer: linear warm-up
            over the first 20 % of steps (``optimizer_kwargs={"warmup_fraction": ...}``) to ``lr``, then
            linear decay to 0. Also ``constant`` | ``cosine`` | ``step`` | a PyTorch scheduler class
            (``torch.optim.lr_scheduler.OneCycleLR``; ``total_steps``/``T_max`` default to the number of
            steps) | a function ``fn(t, optim) -> multiplier`` of the progress ``t`` in [0, 1).
        schedule_kwargs: keyword arguments of a PyTorch scheduler class.
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
    schedule: Any = None
    schedule_kwargs: dict = field(default_factory=dict)
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
        if self.schedule is not None:
            optim["schedule"] = _target(self.schedule, "schedule")
        if self.schedule_kwargs:
            optim["schedule_kwargs"] = dict(self.schedule_kwargs)
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



def _section(value, what: str, off: dict) -> dict:
    """A study section from ``compare``'s argument: a mapping as in the study YAML, None/True for its
    defaults, or False for ``off`` (the settings that skip the stage)."""
    if value is None or value is True:
        return {}
    if value is False:
        return dict(off)
    if not isinstance(value, dict):
        raise UserError(f"{what} must be a mapping of the study's '{what}' keys, or False to skip the stage; "
                        f"got {type(value).__name__}")
    return dict(value)


def _side(obj, tag: str):
    """``(Algorithm or None, ModelSet or None)`` for one side of the comparison."""
    from datamodels.modelset import ModelSet

    if isinstance(obj, Algorithm):
        return obj, None
    if isinstance(obj, ModelSet):
        return None, obj
    raise UserError(f"algorithm_{tag} must be an Algorithm(...) or a ModelSet (e.g. ModelSet.from_folder(...) for "
                    f"models trained elsewhere); got {type(obj).__name__}")


def compare(algorithm_a, algorithm_b, data=None, *, out, name: str | None = None, models: int | None = None,
            subset_fraction: float = 0.5, seed: int = 0, seeds: tuple[int, int] | None = None,
            labels: tuple[str, str] | None = None, components: int = 5, ensemble_size: int = 16,
            attribution: dict | None = None, calibration: dict | bool | None = None,
            search: dict | bool | None = None, counterfactual: dict | bool | None = None,
            diagnostics: dict | bool | None = None, device: str = "cpu"):
    """Compare two algorithms (or two sets of models trained elsewhere) end to end.

    Args:
        algorithm_a, algorithm_b: :class:`Algorithm` objects (trained here, both on the same random
            subsets unless ``seeds`` differ), or :class:`~datamodels.modelset.ModelSet` s
            (``ModelSet.from_folder(...)``: models trained elsewhere, with their masks), or one of each.
        data: a :class:`~datamodels.data.dataset.Dataset`, ``"digits"``, a data target ``"pkg.mod:load"``
            (or the loader function), or a recipe data mapping; optional when a side is a ModelSet
            (its dataset is used).
        out: output folder (resumes when it exists): ``store_a``, ``store_b``, scores, reports, summary.json.
        name: the study's name (default ``"<a>_vs_<b>"``).
        models: models per algorithm, each on a random ``subset_fraction`` of the training set
            (default 32; with ModelSets, the fewest they hold).
        components: ModelDiff components per direction.
        attribution, calibration, search, counterfactual, diagnostics: the study YAML's sections, as
            mappings with the same keys (``docs/python_api.md``), or ``False`` to skip the stage
            (not attribution). Attribution defaults here: ``models: min(16, models)``, ``proj_dim``: a
            power of two <= n_train / 4, at most 1024.
    Returns:
        a :class:`~modeldiff.result.ComparisonResult` (``.to_dict()`` equals ``OUT/summary.json``).
    """
    from datamodels.attribution.trak import auto_proj_dim
    from datamodels.base.dataclass_build import build_dataclass
    from datamodels.data.dataset import load_from_config
    from modeldiff.result import ComparisonResult
    from modeldiff.studies.config import (
        AlgorithmSpec,
        AttributionSpec,
        CounterfactualSpec,
        DiagnosticsSpec,
        NullSpec,
        SearchSpec,
        StudyConfig,
    )
    from modeldiff.studies.run import run_study

    (alg_a, ms_a), (alg_b, ms_b) = _side(algorithm_a, "a"), _side(algorithm_b, "b")
    given = [ms for ms in (ms_a, ms_b) if ms is not None]
    if data is None:
        if not given:
            raise UserError("data is missing: give a Dataset, 'digits', a data target 'pkg.mod:load' or a mapping")
        section, dataset = {"name": given[0].load_dataset().name}, given[0].load_dataset()
    else:
        section, dataset = data_section(data)
    recipes, label_of = [], []
    for tag, alg, ms in (("a", alg_a, ms_a), ("b", alg_b, ms_b)):
        if alg is not None:
            recipes.append(alg.recipe_dict(section))
            alg.to_recipe(section)  # validates both before anything runs
            label_of.append(recipes[-1]["name"])
        else:
            label = getattr(ms, "name", None) or (ms.path.name if ms.path is not None else f"models_{tag}")
            recipes.append({"name": str(label)})
            label_of.append(str(label))
    if label_of[0] == label_of[1]:
        label_of[1] += "-b"
        recipes[1]["name"] = label_of[1]
    if dataset is None:
        dataset = load_from_config(next(alg for alg in (alg_a, alg_b) if alg).to_recipe(section).data)
    for ms in given:
        if ms.load_dataset().identity != dataset.identity:
            raise UserError(f"the models of {getattr(ms, 'path', None) or type(ms).__name__} were trained on other "
                            f"data than the data given: pass their dataset (or leave data out)")
    if models is None:
        models = min(ms.n_models for ms in given) if given else 32
    if models < 2:
        raise UserError(f"models must be at least 2, got {models}")
    if given and diagnostics:
        raise UserError("diagnostics need the training recipe of each algorithm: they cannot run on a ModelSet "
                        "(leave diagnostics out)")
    if attribution is False:
        raise UserError("attribution cannot be skipped: every later stage reads the attribution matrices")
    attr = {"models": min(16, models), **_section(attribution, "attribution", {})}
    if "proj_dim" not in attr:
        attr["proj_dim"] = min(1024, auto_proj_dim(dataset.n_train))
    seed_a, seed_b = seeds if seeds is not None else (None, None)
    label_a, label_b = labels if labels is not None else label_of
    built = {key: build_dataclass(spec, _section(value, key, off), f"{key}.", what="compare") for key, spec, value, off in (
        ("calibration", NullSpec, calibration, {"enabled": False}),
        ("search", SearchSpec, search, {"enabled": False}),
        ("counterfactual", CounterfactualSpec, counterfactual, {"auto_candidates": 0, "transforms": []}),
        ("diagnostics", DiagnosticsSpec, diagnostics, {"models": 0}))}
    cfg = StudyConfig(
        name=name or f"{label_of[0]}_vs_{label_of[1]}",
        algorithm_a=AlgorithmSpec(recipe=recipes[0], label=label_a, seed=seed_a),
        algorithm_b=AlgorithmSpec(recipe=recipes[1], label=label_b, seed=seed_b),
        models=models, subset_fraction=subset_fraction, seed=seed, components=components,
        ensemble_size=ensemble_size, attribution=build_dataclass(AttributionSpec, attr, "attribution.", what="compare"),
        folder=str(Path.cwd()), **built)
    run_study(cfg, out, device=device, data=dataset, given=(ms_a, ms_b))
    return ComparisonResult.from_folder(out)
