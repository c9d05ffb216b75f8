"""``plan(...)``: calibrate on this machine, then predict a study's or a recipe's stages.

The front function of :mod:`modeldiff.plan`; the CLI (``modeldiff plan``) only parses flags
and prints what this returns.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from datamodels.base.errors import UserError
from datamodels.base.progress import heartbeat
from modeldiff.plan import calibrate as C
from modeldiff.plan import calibrate_diagnostics as D
from modeldiff.plan.calibrate_report import calibrate_report
from modeldiff.plan.memory import process_age, rss_bytes
from modeldiff.plan.predict import StudyShape, predict, report_plot_rows

SCALE_OUT = (1, 2, 4, 8, 16, 32)  # Ray cluster sizes priced for --deadline


@dataclass
class PlanRequest:
    """What to plan. ``target`` is a study (name or YAML) or a recipe YAML."""

    target: str
    models: int | None = None
    workers: int = 1
    launcher: str = "local"
    device: str = "cpu"
    data_dir: str | None = None
    ensemble_size: int | None = None  # recipes only (a study has its own)
    subset_fraction: float = 0.5  # recipes only
    pilot: str | None = None  # a pilot store for the learning curve
    target_lds: float | None = None
    target_precision: float | None = None  # see modeldiff.plan.precision
    attribution_models: int | None = None  # TRAK models (set from --target-lds)
    recalibrate: bool = False  # measure again even when a cached calibration fits
    extra_assumptions: list = field(default_factory=list)


def _is_recipe(path: str) -> bool:
    import yaml

    from datamodels.base import strict_yaml

    p = Path(path)
    if not (p.is_file() and p.suffix in (".yaml", ".yml")):
        return False
    try:
        data = strict_yaml.load(p.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "algorithm_a" not in data


def _load(req: PlanRequest):
    """``(recipes {tag: Recipe}, data, shape, command)`` for a study or a recipe."""
    if _is_recipe(req.target):
        from datamodels.data import load_dataset
        from datamodels.training.recipe import load_recipe

        recipe = load_recipe(req.target)
        if req.data_dir:
            recipe = recipe.replace(**{"data.data_dir": req.data_dir})
        d = recipe.data
        opts = {k: v for k, v in (("per_class_train", d.per_class_train), ("per_class_test", d.per_class_test)) if v}
        data = load_dataset(d.name, d.data_dir, **opts)
        models = req.models or 64
        shape = StudyShape(data.n_train, data.n_test, data.num_classes, models, req.subset_fraction,
                           req.ensemble_size or 16, req.workers)
        command = (f"modeldiff train {req.target} --out STORE --models {models} --subset-fraction "
                   f"{req.subset_fraction:g} --ensemble-size {shape.ensemble_size} --workers {req.workers}"
                   + (f" --launcher {req.launcher}" if req.launcher != "local" else "")
                   + (f" --device {req.device}" if req.device != "cpu" else ""))
        return {"": recipe}, data, shape, command
    from modeldiff.studies.config import load_study
    from modeldiff.studies.pipeline import load_study_data

    cfg = load_study(req.target)
    if req.models is not None:
        cfg.with_models(req.models)
    if req.attribution_models is not None:
        cfg.attribution.models = req.attribution_models
        cfg.models = max(cfg.models, req.attribution_models)
    recipe_a, recipe_b = cfg.recipes(req.data_dir)
    data = load_study_data(cfg, req.data_dir)
    spec = cfg.attribution
    shape = StudyShape(data.n_train, data.n_test, data.num_classes, cfg.models, cfg.subset_fraction,
                       cfg.ensemble_size, req.workers, spec.method, spec.models, spec.proj_dim, spec.batch_size,
                       spec.lambdas, cfg.components,
                       null_fits=8 * cfg.calibration.splits if cfg.calibration.enabled else 0,
                       **search_shape(cfg, data), **counterfactual_shape(cfg, data),
                       diagnostics_models=min(cfg.diagnostics.models, cfg.models),
                       diagnostics_batch=cfg.diagnostics.batch_size,
                       diagnostics_spec=cfg.diagnostics if cfg.diagnostics.models > 0 else None)
    command = (f"modeldiff study {req.target} --out DIR" + (f" --models {req.models}" if req.models else "")
               + (f" --device {req.device}" if req.device != "cpu" else ""))
    return {"a": recipe_a, "b": recipe_b}, data, shape, command


def search_shape(cfg, data) -> dict:
    """The confirmatory search's size, counted from its own library
    (:func:`modeldiff.counterfactual.library.generic_candidates`) as ``run_search`` builds it: the
    generic candidates, the study's transforms and the component overlays of both directions."""
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.transforms import parse_transform
    from modeldiff.counterfactual.user_transform import is_user_spec

    sp = cfg.search
    if not sp.enabled:
        return {"search_candidates": 0}
    image = getattr(data, "is_image", True)
    library = generic_candidates(data.x_test.shape[1:], families=sp.families or None, seed=sp.seed) if image else []
    library += [parse_transform(t) for t in sp.transforms if image and not is_user_spec(t)]
    n = len(library) + sum(1 for t in sp.transforms if is_user_spec(t))
    if sp.overlays and image:
        from modeldiff.counterfactual.search import LIBRARY_MATCHES

        fixed = sum(isinstance(getattr(t, "params", {}).get("loc"), tuple) for t in library)
        # two directions, both signs: an overlay and the best-matching library transforms each
        n += 2 * min(sp.overlays, cfg.components) * 2 * (1 + min(LIBRARY_MATCHES, fixed))
    return {"search_candidates": n, "search_models": sp.models if sp.models else cfg.models,
            "search_inputs": min(sp.n_inputs, data.n_test // 2), "search_confirm": sp.n_confirm,
            "search_resamples": sp.n_resamples}


def counterfactual_shape(cfg, data) -> dict:
    """The counterfactual tests of ``run_counterfactuals`` per direction: component overlays and the
    study's transforms, patch transforms swept over ``counterfactual.sizes``."""
    from modeldiff.counterfactual.transforms.spec import parse_transform
    from modeldiff.counterfactual.user_transform import is_user_spec

    cf = cfg.counterfactual
    image = getattr(data, "is_image", True)
    tests = 2 * min(cf.auto_candidates, cfg.components) if image else 0
    sweeps = 0
    for item in cf.transforms:
        if is_user_spec(item):
            tests += 1
        elif image:
            tests += 1
            t = parse_transform(item, seed=cf.seed)
            sweeps += bool(cf.sizes and hasattr(t, "with_params") and "size" in getattr(t, "params", {}))
    not_target = data.n_test * (1 - 1 / max(1, data.num_classes))  # inputs of other classes than the target
    return {"counterfactual_tests": tests, "counterfactual_sweeps": sweeps, "counterfactual_sizes": len(cf.sizes),
            "counterfactual_inputs": int(min(cf.n_test, not_target)), "counterfactual_resamples": cf.bootstrap}


@dataclass
class Calibrated:
    """A calibration and what it was made for (reusable: predict for other model counts)."""

    request: PlanRequest
    calibration: C.Calibration
    recipes: dict
    shape: StudyShape
    command: str
    startup: float  # seconds from process start to loaded data (interpreter, imports, data)


def _check(req: PlanRequest) -> None:
    if req.workers < 1:
        raise UserError(f"--workers must be >= 1, got {req.workers}")
    if req.launcher not in ("local", "ray"):
        raise UserError(f"--launcher must be local or ray, got {req.launcher!r}")
    if req.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda cannot be predicted without a GPU to calibrate on: run `modeldiff plan` "
                            "on the GPU machine, or plan for --device cpu")


def calibrate(req: PlanRequest) -> Calibrated:
    """The calibration run for ``req`` (progress shown; seconds to a couple of minutes).

    Timing-identical recipes (:func:`modeldiff.plan.reuse.timing_key`) are calibrated once; a
    calibration of the same work on this machine is reused from the cache (:mod:`modeldiff.plan.reuse`)
    unless ``req.recalibrate``.
    """
    from modeldiff.plan import reuse

    _check(req)
    recipes, data, shape, command = _load(req)
    startup = process_age()
    study = len(recipes) == 2
    keys = {tag: reuse.timing_key(r) for tag, r in recipes.items()}
    what = {"recipes": keys, "data": [data.n_train, data.n_test, data.num_classes, list(data.x_test.shape[1:])],
            "ensemble": shape.ensemble_size, "chunks": _chunk_sizes(shape), "workers": req.workers,
            "launcher": req.launcher,
            "attribution": [shape.method, shape.proj_dim, shape.trak_batch, shape.lambdas, shape.models]
            if study and shape.method == "datamodels" else [shape.method, shape.proj_dim, shape.trak_batch],
            "diff": [shape.n_test, shape.components], "search": [shape.search_inputs, shape.counterfactual_inputs],
            "diagnostics": (dataclasses.asdict(shape.diagnostics_spec) | {"models": 0}
                            if shape.diagnostics_spec is not None else None)}
    key = reuse.fingerprint(what, req.device)
    cached = None if req.recalibrate else reuse.load(key)
    if cached is not None:
        cal, path, saved_at = cached
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved_at))
        cal.reused = [f"calibration reused from the cache ({path}, measured {stamp}, took {cal.seconds:.0f} s); "
                      "--recalibrate measures again"]
        cal.seconds = 0.0
        cal.base_rss = max(cal.base_rss, rss_bytes())
        return Calibrated(req, cal, recipes, shape, command, startup)
    started = time.perf_counter()
    cal = C.Calibration(base_rss=rss_bytes())
    # Workers of the ray launcher run on separate machines: no contention between them.
    contention_workers = req.workers if req.launcher == "local" else 1
    distinct = {}  # timing key -> the first tag calibrated with it
    for tag in recipes:
        distinct.setdefault(keys[tag], tag)
    steps = len(distinct) * (2 if study else 1) + (2 if study else 0) + bool(shape.diagnostics_models)
    with tempfile.TemporaryDirectory(prefix="modeldiff-plan-") as tmp, \
            tqdm(total=steps, desc="calibrating", unit="stage", dynamic_ncols=True) as bar, heartbeat(bar):
        if study and shape.method == "trak":  # first: on the heap of a fresh process (calibrate_trak_recipe)
            bar.set_postfix_str("attribution (trak)")
            cal.attribution = C.calibrate_trak_recipe(recipes["a"], data, shape.proj_dim, shape.trak_batch, req.device)
            bar.update(1)
        for tag, recipe in recipes.items():
            first = distinct[keys[tag]]
            if first != tag:  # timing-identical to an algorithm already calibrated
                cal.training[tag], cal.evaluation[tag] = cal.training[first], cal.evaluation[first]
                cal.reused.append(f"algorithm {tag.upper()}'s recipe costs the same as {first.upper()}'s (they differ "
                                  "only in values: learning rate, schedule, seed, epochs, initial weights): "
                                  "calibrated once")
                continue
            bar.set_postfix_str(f"training {recipe.name}")
            sibling = next((u for u in cal.training if reuse.finish_key(recipes[u]) == reuse.finish_key(recipe)
                            and contention_workers == 1 and C.steps_only_backend(recipe, data)), None)
            cal.training[tag] = C.calibrate_training(recipe, data, shape.ensemble_size, req.device,
                                                     os.path.join(tmp, f"store{tag}"), contention_workers,
                                                     finish_from=cal.training[sibling] if sibling else None,
                                                     sizes=_chunk_sizes(shape))
            if req.launcher == "ray":
                cal.training[tag].chunk = dataclasses.replace(cal.training[tag].alone, workers=req.workers)
            bar.update(1)
            if study and sibling:
                cal.evaluation[tag] = cal.evaluation[sibling]
                cal.reused.append(f"algorithm {tag.upper()}'s model, data and trainer are {sibling.upper()}'s: its "
                                  "calibration timed only its own training steps; evaluation, commit and candidate "
                                  f"evaluation costs are {sibling.upper()}'s")
                bar.update(1)
            elif study:
                bar.set_postfix_str(f"evaluating a candidate ({recipe.name})")
                cal.evaluation[tag] = C.calibrate_evaluation(os.path.join(tmp, f"store{tag}"), data,
                                                             shape.search_inputs, shape.counterfactual_inputs,
                                                             req.device)
                bar.update(1)
        if study:
            if shape.method != "trak":
                bar.set_postfix_str(f"attribution ({shape.method})")
                cal.attribution = C.calibrate_datamodels(shape.models, shape.n_train, shape.subset_fraction,
                                                         shape.lambdas, req.device)
                bar.update(1)
            bar.set_postfix_str("diff")
            cal.diff = C.calibrate_diff(shape.n_test, shape.n_train, shape.components)
            bar.update(1)
            bar.set_postfix_str("report figures")
            cal.report = calibrate_report(data, report_plot_rows(shape))
            if shape.diagnostics_models:
                bar.set_postfix_str("diagnostics (Hessian-vector products, per-example gradients)")
                cal.diagnostics = _calibrate_diagnostics(
                    recipes, data, shape, req.device, tmp,
                    on_hvp=lambda k: bar.set_postfix_str(f"diagnostics: {k} Hessian-vector products"))
                bar.update(1)
    cal.seconds = time.perf_counter() - started
    reuse.save(key, cal)
    return Calibrated(req, cal, recipes, shape, command, startup)


def _chunk_sizes(shape: StudyShape) -> list[int]:
    """The distinct chunk sizes of the study's (or recipe's) stores, largest first: what is calibrated."""
    from modeldiff.plan.scaling import chunk_sizes

    return sorted(set(chunk_sizes(shape.models, shape.ensemble_size)), reverse=True)


def _calibrate_diagnostics(recipes: dict, data, shape: StudyShape, device: str, tmp: str, on_hvp=None) -> dict:
    """One diagnostics calibration per model/data/trainer (:func:`modeldiff.plan.reuse.finish_key`), on the
    first calibration store of that kind that kept weights; the other algorithm reuses it."""
    from modeldiff.plan import reuse

    n = max(1, round(shape.subset_fraction * shape.n_train))
    out, done = {}, {}
    for tag, recipe in recipes.items():
        key = reuse.finish_key(recipe)
        if key not in done:
            folder = next((os.path.join(tmp, f"store{u}") for u in recipes
                           if reuse.finish_key(recipes[u]) == key and _has_weights(os.path.join(tmp, f"store{u}"))),
                          None)
            if folder is None:  # no trained calibration model of this kind: use the first algorithm's
                folder = os.path.join(tmp, f"store{next(iter(recipes))}")
            done[key] = D.calibrate_diagnostics(folder, data, shape.diagnostics_spec, n, device, on_hvp=on_hvp)
        out[tag] = done[key]
    return out


def _has_weights(folder: str) -> bool:
    return any(Path(folder, "weights").glob("*.pt")) if Path(folder, "weights").is_dir() else False


def predict_plan(c: Calibrated, models: int | None = None) -> dict:
    """The plan (JSON-ready) from a calibration, for ``models`` per algorithm (default: the request's)."""
    shape = c.shape if models is None else dataclasses.replace(c.shape, models=models)
    cal, startup = c.calibration, c.startup
    out = predict(cal, c.recipes, shape)
    out["scale_out"] = [{"launcher": "ray", "workers": w,
                         "seconds": startup + predict(_on_machines(cal, w), c.recipes, shape)["total_seconds"]}
                        for w in SCALE_OUT]
    out["stages"] = {"startup": {"seconds": startup, "seconds_low": startup, "seconds_high": startup,
                                 "peak_memory_bytes": cal.base_rss, "disk_bytes": 0}, **out["stages"]}
    for key in ("total_seconds", "total_seconds_low", "total_seconds_high"):
        out[key] += startup
    req = c.request
    out.update({"target": req.target, "models": shape.models, "workers": req.workers, "launcher": req.launcher,
                "device": req.device, "ensemble_size": shape.ensemble_size, "calibration_seconds": cal.seconds,
                "calibration_share": cal.seconds / max(out["total_seconds"], 1e-9), "command": c.command,
                "assumptions": assumptions(req, shape, study=len(c.recipes) == 2) + list(cal.reused)
                + list(req.extra_assumptions)})
    if shape.search_candidates:
        out["search_candidates"] = shape.search_candidates
    if cal.seconds:  # where the calibration's own time went (seconds)
        first = {t: next(u for u in cal.training if cal.training[u] is v) for t, v in cal.training.items()}
        parts = {f"train_{t}" if t else "train": v.seconds for t, v in cal.training.items() if first[t] == t}
        parts.update({f"evaluate_{t}": v.seconds for t, v in cal.evaluation.items()
                      if next(u for u in cal.evaluation if cal.evaluation[u] is v) == t})
        parts.update({k: getattr(cal, k).seconds for k in ("attribution", "diff", "report")
                      if getattr(cal, k, None) is not None})
        diag = getattr(cal, "diagnostics", None) or {}
        if diag:
            parts["diagnostics"] = sum({id(v): v.seconds for v in diag.values()}.values())
        out["calibration_parts"] = parts
    return out


def plan(req: PlanRequest) -> dict:
    """Calibrate on this machine, then predict every stage; the result is JSON-ready."""
    return predict_plan(calibrate(req))


def _on_machines(cal: C.Calibration, machines: int) -> C.Calibration:
    """The calibration with training spread over ``machines`` machines like this one (no contention)."""
    training = {tag: dataclasses.replace(t, chunk=dataclasses.replace(t.alone, workers=machines), startup=0.0)
                for tag, t in cal.training.items()}
    return dataclasses.replace(cal, training=training)


def assumptions(req: PlanRequest, shape: StudyShape, study: bool = False) -> list[str]:
    out = [
        "training: per-step, set-up and evaluation times and peak memory measured on calibration chunks of the "
        f"store's own chunk sizes ({' and '.join(map(str, _chunk_sizes(shape)))} models, {C.CAL_STEPS} steps) with "
        "the real recipe on this machine (trainers that train one model at a time: one chunk of 2 models, "
        "proportional); interval = quartiles of the measured step times",
        "the machine is as busy during the study as during the calibration",
    ]
    if req.workers > 1 and req.launcher == "local":
        out.append(f"{req.workers} local workers: contention measured by running {req.workers} calibration chunks "
                   "at once; worker start-up measured")
    if req.launcher == "ray":
        out.append(f"ray: {req.workers} machines like this one, one worker each, no contention between them; "
                   "cluster start-up not included")
    if shape.null_fits:
        out.append(f"null calibration: {shape.null_fits} ModelDiff fits at the measured diff speed")
    if shape.search_candidates:
        out.append(f"search: {shape.search_candidates} candidate transforms (counted from the search's library, "
                   f"each tried for every class) x both algorithms' discovery halves, then {shape.search_confirm} "
                   "per direction confirmed, at the measured cost of one candidate's evaluation (linear in models "
                   "and inputs)")
    if shape.counterfactual_tests or shape.counterfactual_sweeps:
        out.append(f"counterfactual tests: {shape.counterfactual_tests} per direction ({shape.counterfactual_sweeps} "
                   f"swept over {shape.counterfactual_sizes} sizes) at the measured cost of a store predictor call "
                   "and a bootstrap comparison")
    if study and shape.method == "trak":
        out.append("TRAK: per-example gradients of an untrained model of algorithm A's recipe timed before the "
                   "training calibration (as a fresh `modeldiff attribute` process's heap); cost and memory depend "
                   "on the architecture, not the weights")
    if study:
        out.append("reports: the figures of two reports (a scatter, one examples figure per component, effect and "
                   "sweep plots) at the measured cost of one of each kind, plus matplotlib's start once")
    if shape.diagnostics_models:
        out.append(f"diagnostics: {shape.diagnostics_models} models per algorithm, from diagnosing a calibration model "
                   f"on {D.CAL_DIAG_EXAMPLES} examples with the study's settings: passes linear in the examples, "
                   "the per-example-gradient Gram matrix quadratic; interval: the fewest to the most Lanczos steps, "
                   "±15 %; a calibration model (a few steps) may need other Lanczos counts than a trained one")
    out.append("other stages: one calibration point each, interval ±15 %")
    return out
