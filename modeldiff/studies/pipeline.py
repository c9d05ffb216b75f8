"""One study, raw data to proven feature: train -> attribute -> ModelDiff both ways ->
subpopulations -> counterfactual tests -> report. Every stage resumes from what is on disk.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from datamodels.base.atomic import atomic_write_text
from datamodels.base.log import get_logger
from datamodels.data.dataset import Dataset
from datamodels.store.store import Store
from modeldiff.studies.config import StudyConfig

log = get_logger(__name__)

SUBPOP_TOP = 16  # training / test examples per component's subpopulation (shown in the reports)


@dataclass
class Direction:
    """ModelDiff of one ordering (``a_minus_b`` or ``b_minus_a``) and its counterfactual results."""

    name: str
    fit: object
    subpops: list
    counterfactuals: list = field(default_factory=list)
    sweeps: list = field(default_factory=list)


def load_study_data(cfg: StudyConfig, data_dir: str | None = None) -> Dataset:
    from datamodels.data.dataset import load_from_config

    recipe, _ = cfg.recipes(data_dir)
    return load_from_config(recipe.data, search_path=cfg.folder or None)  # targets may sit beside the study


def _stamp(path: Path):
    """The settings recorded beside a cached result, or None (missing or unreadable: recompute)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train_algorithms(cfg: StudyConfig, data: Dataset, out: Path, device: str, data_dir=None,
                     recipes=None, given=(None, None), allow_changed_code: bool = False) -> tuple[Store, Store]:
    """Fill (or resume) one store per algorithm, each with its own run seed (``cfg.seeds()``:
    the algorithm's ``seed``, else the study's; equal seeds give both the same masks).
    ``recipes``: (A, B) to use instead of the study's own; ``given``: (A, B) ModelSets used as
    they are instead of training (None: train that algorithm)."""
    from datamodels.modelset import as_modelset
    from datamodels.runs.launchers import fill_store
    from datamodels.training.backends import check_recipe

    recipes = list(recipes or cfg.recipes(data_dir))
    for recipe, ms in zip(recipes, given):  # both algorithms' targets and settings, before either store exists
        if ms is None:
            check_recipe(recipe, data)
    stores = []
    for tag, recipe, seed, ms in zip("ab", recipes, cfg.seeds(), given):
        if ms is not None:
            stores.append(as_modelset(ms))
            continue
        store = Store.create_or_resume(out / f"store_{tag}", recipe, data, cfg.models, cfg.subset_fraction, seed,
                                       allow_changed_code=allow_changed_code)
        fill_store(store, device, cfg.ensemble_size, dataset=data)
        stores.append(Store.open(store.path, data))
    return stores[0], stores[1]


def attribute_stores(cfg: StudyConfig, stores, out: Path, device: str, method: str | None = None):
    """Influence datasets (HDF5) for both stores; reuses files already written with the same settings."""
    from datamodels.attribution.api import attribute_to_file
    from datamodels.attribution.influence_io import read_influence

    m, name, params, n_models = study_method(cfg, method)
    scores = []
    for tag, store in zip("ab", stores):
        path = out / f"scores_{tag}_{file_tag(name)}.h5"
        stamp = out / f"scores_{tag}_{file_tag(name)}.json"
        key = {"method": name, "params": _recorded(params), "n_models": n_models, "valid": len(store.valid_indices())}
        if not (path.is_file() and stamp.is_file() and _stamp(stamp) == key):
            attribute_to_file(store, path, method or cfg.attribution.method, n_models=n_models, device=device,
                              progress=progress_label(cfg, tag), **params)
            atomic_write_text(stamp, json.dumps(key))
        scores.append(read_influence(path).scores)
    return scores[0], scores[1]


def study_method(cfg: StudyConfig, method=None):
    """``(method object, recorded name, params, n_models)`` of the study's attribution section
    (``method`` overrides the section's method)."""
    from datamodels.attribution.methods import method_name, resolve_method

    spec = method or cfg.attribution.method
    m = resolve_method(spec)
    params, n_models = m.study_params(cfg.attribution)
    return m, method_name(spec, m), params, n_models


def file_tag(name: str) -> str:
    """A method name as part of a file name (an import target's punctuation replaced)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _recorded(params: dict) -> dict:
    """Settings as they are stamped beside cached scores (objects by their recorded name)."""
    from datamodels.registry import record

    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else record(v)
            for k, v in params.items()}


def progress_label(cfg: StudyConfig, tag: str) -> str:
    """How progress headings name algorithm ``tag`` ("a"/"b"): ``A (high noise)``."""
    label = (cfg.algorithm_a if tag == "a" else cfg.algorithm_b).label
    return f"{tag.upper()} ({label})" if label and label != tag.upper() else tag.upper()


def compare(cfg: StudyConfig, scores_a, scores_b, data: Dataset, halves=None) -> tuple[Direction, Direction]:
    """ModelDiff A−B and B−A with their subpopulations, by the study's ``calibration.estimator``:
    ``classic`` fits the full scores; ``crossfit`` fits the half-model splits ``halves()`` yields
    ``(A1, A2, B1, B2)`` (:func:`crossfit_fits`)."""
    from modeldiff.diff.residual_pca import ModelDiff
    from modeldiff.diff.subpopulations import subpopulations

    if cfg.calibration.estimator == "crossfit":
        fits = crossfit_fits(halves(), cfg.components, cfg.seed)
    else:
        fits = {name: ModelDiff(cfg.components, random_state=cfg.seed).fit(x, y)
                for name, (x, y) in (("a_minus_b", (scores_a, scores_b)), ("b_minus_a", (scores_b, scores_a)))}
    out = []
    for name, fit in fits.items():
        subs = subpopulations(fit, n_train_top=SUBPOP_TOP, n_test_top=SUBPOP_TOP,
                              train_labels=data.y_train.numpy(), test_labels=data.y_test.numpy(),
                              class_names=data.class_names)
        out.append(Direction(name, fit, subs))
    return out[0], out[1]


def crossfit_fits(halves, n_components: int, seed: int = 0) -> dict:
    """``{"a_minus_b": CrossFitModelDiff, "b_minus_a": ...}`` fitted on the splits ``(A1, A2, B1, B2)``
    of ``halves`` (each ``[n_test, n_train]``; all splits are held in memory, the fits keep their
    residuals anyway)."""
    from modeldiff.diff.crossfit import CrossFitModelDiff

    splits = list(halves)
    return {"a_minus_b": CrossFitModelDiff(n_components, random_state=seed).fit(splits),
            "b_minus_a": CrossFitModelDiff(n_components, random_state=seed).fit(
                [(b1, b2, a1, a2) for a1, a2, b1, b2 in splits])}


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
    from modeldiff.counterfactual.user_transform import is_user_spec, user_transform

    spec = cfg.counterfactual
    first, second = (stores if direction.name == "a_minus_b" else stores[::-1])
    pred_a, pred_b = store_predictor(first, device=device), store_predictor(second, device=device)
    kw = {"n_resamples": spec.bootstrap, "seed": spec.seed}
    tests = list(extra)
    image = getattr(data, "is_image", True)
    builtin = [t for t in spec.transforms if not is_user_spec(t)]
    if not image and (spec.auto_candidates or builtin) and direction.name == "a_minus_b":
        log.warning(f"note: {data.name} is not image data: skipping image-only counterfactual transforms (component "
                    f"overlays{', ' + ', '.join(builtin) if builtin else ''}); name your own in counterfactual.transforms")
    for j in range(min(spec.auto_candidates, len(direction.fit.components_)) if image else 0):
        for sign in (1, -1):
            t, target, _ = overlay_from_component(direction.fit.components_[j], data.x_train, data.y_train,
                                                  top_k=spec.top_k, sign=sign, name=f"component {j}")
            tests.append((t, target))
    # the study's own transforms are tested towards the class of the top component's subpopulation
    if len(tests) > len(extra):
        top_target = tests[len(extra)][1]
    elif len(direction.fit.components_):
        top = np.argsort(-np.asarray(direction.fit.components_[0]))[:spec.top_k]
        top_target = int(np.bincount(data.y_train.numpy()[top]).argmax())
    else:
        top_target = 0
    for item in spec.transforms:
        if not is_user_spec(item):
            if image:
                tests.append((parse_transform(item, seed=spec.seed), top_target))
            continue
        transform, target = user_transform(item)
        tests.append((transform, top_target if target is None else target))
    for k, (transform, target) in enumerate(tests, 1):
        log.info(f"    transform {k} of {len(tests)}: {transform!r} -> class {target}")
        x = counterfactual_inputs(data, target, spec.n_test, spec.seed, rows)
        direction.counterfactuals.append(counterfactual_effects(pred_a, pred_b, x, transform, target, **kw))
        if spec.sizes and hasattr(transform, "with_params") and "size" in getattr(transform, "params", {}):
            log.info(f"      patch sizes {', '.join(map(str, spec.sizes))}")
            direction.sweeps.append(patch_size_sweep(pred_a, pred_b, x, transform, target, spec.sizes, **kw))


def attribute_with_null(cfg: StudyConfig, stores, out: Path, device: str, method: str | None = None):
    """Scores of both stores and a factory of half-model attributions for the null calibration.

    TRAK: each store's attribution models are attributed in ``cfg.calibration.groups`` groups once
    (cached in ``OUT/trak_groups_{a,b}.npz``); the full scores are the exact union of the
    groups (same numbers as one TRAK run, written to ``scores_{a,b}_trak.h5`` as usual) and a
    half is a union of half of the groups, so the null costs no extra gradients.
    Datamodels: the full regression as usual; halves regress on half of the models each.
    Returns ``(scores_a, scores_b, halves, quarters)`` where ``halves()`` yields ``(A1, A2, B1, B2)``
    and ``quarters()`` yields ``(A parts, B parts)`` of four quarters each (the cross-fitted null,
    :mod:`modeldiff.diff.null_crossfit`).
    """
    from datamodels.attribution.api import select_models
    from datamodels.attribution.methods import DatamodelsMethod, TrakMethod
    from modeldiff.diff import null, null_crossfit

    m, name, params, n_models = study_method(cfg, method)
    ns = cfg.calibration
    if not isinstance(m, TrakMethod):  # datamodels and methods by import target: attribute each half anew
        scores_a, scores_b = attribute_stores(cfg, stores, out, device, method)
        rows = [select_models(s, m, n_models) for s in stores]
        if isinstance(m, DatamodelsMethod):
            attribute = null_crossfit.regression_attribute(device, **params)
            halves = lambda: null.regression_halves(*stores, *rows, n_splits=ns.splits, seed=cfg.seed,  # noqa: E731
                                                    device=device, progress=True, **params)
        else:
            attribute = null_crossfit.method_attribute(m, device, params)
            halves = lambda: null.method_halves(m, *stores, *rows, n_splits=ns.splits, seed=cfg.seed,  # noqa: E731
                                                device=device, params=params)
        return scores_a, scores_b, halves, lambda: null_crossfit.fitted_quarters(attribute, *stores, *rows,
                                                                                ns.splits, cfg.seed)
    from datamodels.attribution.influence_io import write_influence

    groups, scores = [], []
    for tag, store in zip("ab", stores):
        rows = select_models(store, m, n_models)
        path, stamp = out / f"trak_groups_{tag}.npz", out / f"trak_groups_{tag}.json"
        key = {"params": _recorded(params), "rows": [int(r) for r in rows], "groups": ns.groups}
        if path.is_file() and stamp.is_file() and _stamp(stamp) == key:
            g = null.TrakGroups.load(path)
        else:
            g = null.trak_groups(store, rows, ns.groups, device=device, progress_label=progress_label(cfg, tag), **params)
            g.save(path)
            atomic_write_text(stamp, json.dumps(key))
        full = g.scores()
        data = store.load_dataset()
        meta = store.metadata["dataset"]
        write_influence(out / f"scores_{tag}_trak.h5", full, method="trak", method_params=_recorded(params),
                        train_labels=data.y_train.numpy(), test_labels=data.y_test.numpy(),
                        dataset_name=meta["name"], dataset_identity=meta["identity"],
                        recipe_yaml=store.recipe.to_yaml() if store.recipe is not None else "", n_models=len(rows),
                        store_path=str(Path(store.path).resolve()) if store.path is not None else "")
        groups.append(g)
        scores.append(full)
    return (scores[0], scores[1], lambda: null.trak_halves(groups[0], groups[1], n_splits=ns.splits, seed=cfg.seed),
            lambda: null_crossfit.trak_quarters(groups[0], groups[1], n_splits=ns.splits, seed=cfg.seed))


def calibrate_null(cfg: StudyConfig, halves, directions, quarters=None):
    """The null calibration of both directions' components, of the estimator that made them:
    classic :func:`modeldiff.diff.null.calibrate` on ``halves()``, crossfit
    :func:`modeldiff.diff.null_crossfit.calibrate_crossfit` on ``quarters()``."""
    from datamodels.base.progress import heading
    from modeldiff.diff.null import calibrate
    from modeldiff.diff.null_crossfit import calibrate_crossfit

    crossfit = cfg.calibration.estimator == "crossfit"

    def counted():  # a heading per split: each costs 8 ModelDiff fits
        n = cfg.calibration.splits
        for k, split in enumerate(quarters() if crossfit else halves(), 1):
            heading(f"  null calibration: split {k} of {n} (8 {'cross-fitted ' if crossfit else ''}ModelDiff fits)")
            yield split

    fits = {d.name: d.fit for d in directions}
    if crossfit:
        return calibrate_crossfit(counted(), cfg.components, fits, level=cfg.calibration.level, random_state=cfg.seed)
    return calibrate(counted(), cfg.components, fits, level=cfg.calibration.level, random_state=cfg.seed)


def excluded_reprs(cfg: StudyConfig, exclude=(), image: bool = True) -> set:
    """Reprs of the candidates kept out of the search: ``search.exclude`` (specs parsed as the search
    parses them, or reprs as printed in summary.json) and ``exclude`` (transforms or reprs)."""
    from modeldiff.counterfactual.library import as_candidates

    out = {t if isinstance(t, str) else repr(t) for t in exclude}
    for item in cfg.search.exclude:
        out.add(str(item))
        if image and isinstance(item, str) and ":" in item and "." not in item.split(":", 1)[0]:
            try:
                out.update(repr(t) for t, _ in as_candidates([item], cfg.search.seed))
            except (ValueError, TypeError):
                pass  # not a spec: kept as a repr
    return out


def search_candidates(cfg: StudyConfig, data: Dataset, fits: dict, exclude=()) -> list[tuple]:
    """The study's search candidates ``[(transform, class or None)]``: the generic library, ``search.transforms``
    and the overlays of the top components ``fits`` (``{name: object with components_ [k, n_train]}``),
    less ``search.exclude`` and ``exclude``; on non-image data only the user's callables."""
    from modeldiff.counterfactual.library import as_candidates, generic_candidates
    from modeldiff.counterfactual.search import overlay_candidates
    from modeldiff.counterfactual.user_transform import is_user_spec, user_transform

    sp = cfg.search
    image = getattr(data, "is_image", True)  # image-only families and overlays are skipped on other data
    cands = [(t, None) for t in generic_candidates(data.x_test.shape[1:], families=sp.families or None,
                                                   seed=sp.seed)] if image else []
    for item in sp.transforms:  # the search's own extra candidates (counterfactual.transforms are not searched)
        if not is_user_spec(item):
            cands += as_candidates([item], sp.seed) if image else []
        else:
            cands.append(user_transform(item, cfg.folder or None))
    if not cands and not image:
        return []
    if sp.overlays and image:
        cands += overlay_candidates(fits, data.x_train, data.y_train, sp.overlays, cfg.counterfactual.top_k,
                                    library=[t for t, _ in cands])
    excluded = excluded_reprs(cfg, exclude, image)  # once: it parses every spec of search.exclude
    return [c for c in cands if repr(c[0]) not in excluded]


def run_search(cfg: StudyConfig, stores, data: Dataset, directions, device: str, rows=None, exclude=()):
    """The confirmatory transformation search (:func:`modeldiff.counterfactual.search.search`) on
    the study's stores: the generic library, ``search.transforms`` and the overlays of the top
    components of both directions, less ``search.exclude`` and ``exclude``; test inputs from
    ``rows`` (default all). ``counterfactual.transforms`` are tested, not searched."""
    from modeldiff.counterfactual.search import SearchSettings, search, store_halves

    sp = cfg.search
    cands = search_candidates(cfg, data, {d.name: d.fit for d in directions}, exclude)
    if not cands and not getattr(data, "is_image", True):  # non-image data without callables: no search
        return {}
    halves = store_halves(stores[0], stores[1], data, n_inputs=sp.n_inputs, seed=sp.seed, device=device, rows=rows,
                          max_models=sp.models, screen_models=sp.screen_models)
    settings = SearchSettings(n_confirm=sp.n_confirm, alpha=sp.alpha, n_inputs=sp.n_inputs, ranking=sp.ranking,
                              n_resamples=sp.n_resamples, seed=sp.seed, screen_keep=sp.screen_keep,
                              classes_per_transform=sp.classes_per_transform, distinct=sp.distinct)
    from datamodels.base.progress import heading

    return search(halves, cands, settings, class_names=list(data.class_names), progress=heading)
