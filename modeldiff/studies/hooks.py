"""Study hooks: a set-up step or a runner of its own, named in the study YAML as an import target.

The library knows no particular study; a study that needs more than the standard pipeline says so::

    setup: {target: case_studies.pretraining.pretrain:setup, kwargs: {epochs: 20, seed: 0}}
    runner: {target: case_studies.planted.study:run_planted, kwargs: {plant: {target_class: 0}}}

* ``setup(cfg, data, recipes, out, device, **kwargs) -> StudyInputs`` runs once the study's settings
  are checked and before training; what it returns replaces the data, the recipes, adds
  counterfactual tests, names test-row sets (``search.rows`` / ``counterfactual.rows`` may name
  them) and keeps transforms out of the search.
* ``runner(cfg, out, device, data_dir, method, **kwargs) -> summary`` runs the study instead of
  :func:`modeldiff.studies.run.run_study` (which it will usually call, once or more). A summary may
  hold ``notes``, lines printed after the standard summary.

Targets are resolved relative to the study's folder as well (``cfg.folder``), like a recipe's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datamodels.base.errors import UserError


@dataclass
class StudyInputs:
    """What a ``setup`` hook hands to the pipeline (``None`` / empty: keep the study's own)."""

    data: object = None  # a Dataset replacing the study's
    recipes: tuple | None = None  # (A, B) recipes replacing the study's
    extra_counterfactuals: list = field(default_factory=list)  # (transform, target_class) pairs, A−B direction
    row_sets: dict = field(default_factory=dict)  # name -> test row indices [n] (int)
    search_exclude: list = field(default_factory=list)  # transforms (or their reprs) kept out of the search


def check_hook(spec, key: str) -> dict:
    """``spec`` as ``{"target": str, "kwargs": dict}`` (``{}`` when unset); a bad one is one line."""
    if not spec:
        return {}
    from datamodels.registry import is_target

    if isinstance(spec, str):
        spec = {"target": spec}
    if not isinstance(spec, dict) or set(spec) - {"target", "kwargs"}:
        raise UserError(f"study key {key} must be {{target: 'package.module:fn', kwargs: {{...}}}}, got {spec!r}")
    if not is_target(spec.get("target")):
        raise UserError(f"{key}.target must be an import target 'package.module:fn', got {spec.get('target')!r}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UserError(f"{key}.kwargs must be a mapping, got {kwargs!r}")
    return {"target": spec["target"], "kwargs": dict(kwargs)}


def resolve_hook(cfg, key: str):
    """The callable ``cfg.<key>`` names, with its kwargs bound; ``None`` when the study has none."""
    import functools

    from datamodels.registry import resolve_target

    spec = getattr(cfg, key)
    if not spec:
        return None
    fn = resolve_target(spec["target"], what=f"study {key}", search_path=cfg.folder or None)
    if not callable(fn):
        raise UserError(f"study {key} {spec['target']!r} is not callable")
    return functools.partial(fn, **spec["kwargs"])


def resolve_rows(spec, row_sets: dict, n_test: int, key: str) -> np.ndarray | None:
    """Test rows for ``spec`` (``"all"`` -> None = every row; ``[start, stop]``; or a name in ``row_sets``)."""
    if spec in (None, "all"):
        return None
    if isinstance(spec, list):
        if len(spec) != 2 or not all(isinstance(v, int) for v in spec) or not 0 <= spec[0] < spec[1] <= n_test:
            raise UserError(f"{key} must be all, a row-set name or [start, stop) inside 0..{n_test}, got {spec!r}")
        return np.arange(spec[0], spec[1])
    if spec not in row_sets:
        names = ", ".join(["all", *sorted(row_sets)])
        raise UserError(f"{key}: no test-row set {spec!r} in this study (choose from {names}, or [start, stop))")
    return np.asarray(row_sets[spec], dtype=np.int64)
