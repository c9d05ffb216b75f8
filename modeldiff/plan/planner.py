"""``plan(PlanRequest(...))``: calibrate each stage on this machine with its own module, then predict a study's
or a recipe's stages (JSON-ready; ``modeldiff plan`` prints it). Recipes whose :func:`timing_key` agree (the
null study's one recipe at two seeds, the pretraining study) are calibrated once."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from modeldiff.plan import analysis as A
from modeldiff.plan.attribution import calibrate_datamodels, calibrate_trak, predict_attribution
from modeldiff.plan.diagnostics import CAL_DIAG_EXAMPLES, calibrate_diagnostics, predict_diagnostics
from modeldiff.plan.figures import calibrate_report, plot_rows, predict_report
from modeldiff.plan.measure import process_age, rss_bytes, stage
from modeldiff.plan.training import CAL_STEPS, calibrate_training, chunk_sizes, predict_training, timing_key


@dataclass
class PlanRequest:
    """What to plan. ``target`` is a study (name or YAML) or a recipe YAML."""

    target: str
    models: int | None = None
    device: str = "cpu"
    data_dir: str | None = None
    ensemble_size: int | None = None  # recipes only (a study has its own); default: ``modeldiff train``'s
    subset_fraction: float | None = None  # recipes only; default: ``modeldiff train``'s
    pilot: str | None = None  # a pilot store for the learning curve
    target_lds: float | None = None
    target_precision: float | None = None
    attribution_models: int | None = None  # TRAK models (set from a target)
    elapsed: float = 0.0  # seconds this process spent on work a study would not do (the pilot's curves)


@dataclass
class StudyShape:
    """The work to predict: data sizes, models and chunks; for a study its config (``cfg``, a StudyConfig) and
    what its pipeline runs (``counts``: :func:`~modeldiff.plan.analysis.counts`); a recipe has neither."""

    n_train: int
    n_test: int
    n_classes: int
    models: int
    subset_fraction: float
    ensemble_size: int
    cfg: object = None
    counts: dict = field(default_factory=dict)


@dataclass
class Calibrated:
    """A calibration and what it was made for (predict for other model counts with :func:`predict_plan`)."""

    request: PlanRequest
    costs: dict  # training and evaluation {tag: cost}, attribution, diff, report, diagnostics {tag: cost}
    recipes: dict  # {"a": recipe, "b": recipe} for a study, {"": recipe} for a recipe
    shape: StudyShape
    command: str
    startup: float  # seconds from process start to loaded data (interpreter, imports, data)
    base_rss: int
    seconds: float  # what the calibration took


def is_recipe(path: str) -> bool:
    import yaml

    from datamodels.base import strict_yaml

    p = Path(path)
    try:
        data = strict_yaml.load(p.read_text()) if p.is_file() and p.suffix in (".yaml", ".yml") else None
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "algorithm_a" not in data


def _load(req: PlanRequest):
    """``(recipes, data, shape, command)`` for a study or a recipe."""
    if is_recipe(req.target):
        from datamodels.data import load_dataset
        from datamodels.training.recipe import load_recipe

        recipe = load_recipe(req.target)
        if req.data_dir:
            recipe = recipe.replace(**{"data.data_dir": req.data_dir})
        d = recipe.data
        opts = {k: v for k, v in (("per_class_train", d.per_class_train), ("per_class_test", d.per_class_test)) if v}
        data = load_dataset(d.name, d.data_dir, **opts)
        from datamodels.runs import names as T

        shape = StudyShape(data.n_train, data.n_test, data.num_classes, req.models or T.MODELS,
                           req.subset_fraction or T.SUBSET_FRACTION, req.ensemble_size or T.ENSEMBLE_SIZE)
        command = (f"modeldiff train {req.target} --out STORE --models {shape.models} --subset-fraction "
                   f"{shape.subset_fraction:g} --ensemble-size {shape.ensemble_size}"
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
    shape = StudyShape(data.n_train, data.n_test, data.num_classes, cfg.models, cfg.subset_fraction,
                       cfg.ensemble_size, cfg, A.counts(cfg, data))
    command = (f"modeldiff study {req.target} --out DIR" + (f" --models {req.models}" if req.models else "")
               + (f" --device {req.device}" if req.device != "cpu" else ""))
    return {"a": recipe_a, "b": recipe_b}, data, shape, command


def calibrate(req: PlanRequest) -> Calibrated:
    """The calibration run for ``req`` (progress shown; seconds to a couple of minutes)."""
    from datamodels.base.progress import heartbeat, step_bar

    recipes, data, shape, command = _load(req)
    startup, base_rss, started = process_age() - req.elapsed, rss_bytes(), time.perf_counter()
    cfg, n, dev = shape.cfg, shape.counts, req.device
    first = {}  # timing key -> the first tag calibrated with it
    for tag, recipe in recipes.items():
        first.setdefault(timing_key(recipe), tag)
    costs = {"training": {}, "evaluation": {}}
    diagnose = cfg is not None and cfg.diagnostics.models > 0
    with tempfile.TemporaryDirectory(prefix="modeldiff-plan-") as tmp, \
            step_bar("calibrating", len(first) + (3 if cfg else 0) + diagnose) as bar, heartbeat(bar):
        def phase(what):
            if bar.postfix:  # the previous phase is done
                bar.update(1)
            bar.set_postfix_str(what)

        if cfg and cfg.attribution.method == "trak":  # first: on the heap of a fresh process
            phase("attribution (trak)")
            costs["attribution"] = calibrate_trak(recipes["a"], data, cfg.attribution.proj_dim,
                                                  cfg.attribution.batch_size, dev)
        for tag, recipe in recipes.items():
            same = first[timing_key(recipe)]
            if same != tag:  # calibrated once: its recipe differs from an earlier one only in values
                costs["training"][tag], costs["evaluation"][tag] = costs["training"][same], costs["evaluation"][same]
                continue
            phase(f"training {recipe.name}" + (", evaluating a candidate" if cfg else ""))
            folder = os.path.join(tmp, f"store{tag}")
            costs["training"][tag] = calibrate_training(recipe, data, chunk_sizes(shape.models, shape.ensemble_size),
                                                        dev, folder)
            if cfg:
                costs["evaluation"][tag] = A.calibrate_evaluation(folder, data, n["search_inputs"],
                                                                  n["counterfactual_inputs"], dev)
        if cfg:
            if cfg.attribution.method != "trak":
                phase(f"attribution ({cfg.attribution.method})")
                costs["attribution"] = calibrate_datamodels(shape.models, shape.n_train, shape.subset_fraction,
                                                            cfg.attribution.lambdas, dev)
            phase("diff")
            costs["diff"] = A.calibrate_diff(shape.n_test, shape.n_train, cfg.components)
            phase("report figures")
            costs["report"] = calibrate_report(data, plot_rows(shape))
        if diagnose:
            phase("diagnostics")
            subset = max(1, round(shape.subset_fraction * shape.n_train))
            costs["diagnostics"] = {tag: calibrate_diagnostics(os.path.join(tmp, f"store{first[timing_key(r)]}"),
                                                               data, cfg.diagnostics, subset, dev)
                                    for tag, r in recipes.items()}
        bar.update(1)
    return Calibrated(req, costs, recipes, shape, command, startup, base_rss, time.perf_counter() - started)


def predict_plan(c: Calibrated, models: int | None = None) -> dict:
    """The plan (JSON-ready) from a calibration, for ``models`` per algorithm (default: the request's)."""
    shape = c.shape if models is None else dataclasses.replace(c.shape, models=models)
    costs, base, cfg, n = c.costs, c.base_rss, shape.cfg, shape.counts
    stages = {"startup": stage(c.startup, base, 0, c.startup, c.startup)}
    for tag, recipe in c.recipes.items():
        stages[f"train_{tag}" if tag else "train"] = predict_training(costs["training"][tag], recipe, shape)
    weights = max(t.weights_bytes for t in costs["training"].values())
    if cfg is not None and cfg.match.active and (cfg.match.method == "train_slower" or cfg.match.retrains_faster):
        stages["train_matched"] = _predict_matched(c, shape)
    if cfg is not None:
        for tag in c.recipes:
            stages[f"attribute_{tag}"] = predict_attribution(costs["attribution"], shape, base)
        stages["diff"] = A.predict_diff(costs["diff"], shape, base)
        if cfg.calibration.enabled:
            stages["null"] = A.predict_null(costs["diff"], shape, base)
        if n["search_candidates"]:
            stages["search"] = A.predict_search(costs["evaluation"], shape, base, weights)
        if n["counterfactual_tests"] or n["counterfactual_sweeps"]:
            stages["counterfactual"] = A.predict_counterfactual(costs["evaluation"], shape, base, weights)
        stages["report"] = predict_report(costs["report"], shape, base)
        if cfg.diagnostics.models > 0:
            stages["diagnostics"] = predict_diagnostics(costs["diagnostics"], shape, base)
    out = {"stages": stages, **{f"total_{k}": sum(s[k] for s in stages.values())
                                for k in ("seconds", "seconds_low", "seconds_high")},
           "peak_memory_bytes": max(s["peak_memory_bytes"] for s in stages.values()),
           "disk_bytes": sum(s["disk_bytes"] for s in stages.values())}
    req = c.request
    return out | {"target": req.target, "models": shape.models, "device": req.device,
                  "ensemble_size": shape.ensemble_size, "calibration_seconds": c.seconds,
                  "calibration_share": c.seconds / max(out["total_seconds"], 1e-9), "command": c.command,
                  **n, "assumptions": assumptions(c)}


FIT_CHECK_SHARE = 1 / 3  # epoch-end fit check: one forward pass over the subset, ~1/3 of an epoch's training


INSIDE_CHECK_EPOCHS = 3  # epochs with checks inside them under checks_per_epoch > 1: the first two and the last


def _predict_matched(c: Calibrated, shape) -> dict:
    """The retraining of a matched study: whichever algorithm costs more trained, every model to the end,
    for ``match.max_epochs`` (``train_slower``, default 4 x its epochs) or its own epochs (``stop_faster``
    with ``checks_per_epoch`` > 1), plus the fit checks: one per epoch end and ``checks_per_epoch - 1``
    more inside each of :data:`INSIDE_CHECK_EPOCHS` epochs (every epoch under ``stop_at: nearest``)."""
    spec, worst = shape.cfg.match, None
    for tag, recipe in c.recipes.items():
        epochs = (spec.max_epochs or 4 * recipe.epochs) if spec.method == "train_slower" else recipe.epochs
        until = recipe.replace(**{"until.train_loss": 1.0, "until.max_epochs": epochs})
        got = predict_training(c.costs["training"][tag], until, shape)
        got["epochs"] = epochs
        if worst is None or got["seconds"] > worst["seconds"]:
            worst = got
    epochs = worst.pop("epochs")
    checked = epochs if spec.stop_at == "nearest" else min(INSIDE_CHECK_EPOCHS, epochs)  # nearest: every epoch
    inside = (spec.checks_per_epoch - 1) * checked / epochs
    scale = 1 + FIT_CHECK_SHARE * (1 + inside)
    return {**worst, **{k: worst[k] * scale for k in ("seconds", "seconds_low", "seconds_high")}}


def plan(req: PlanRequest) -> dict:
    """Calibrate on this machine, then predict every stage; the result is JSON-ready."""
    return predict_plan(calibrate(req))


def assumptions(c: Calibrated) -> list[str]:
    shape, cfg, n = c.shape, c.shape.cfg, c.shape.counts
    sizes = ", ".join(map(str, sorted(set(chunk_sizes(shape.models, shape.ensemble_size)), reverse=True)))
    out = [f"training: a calibration chunk of each of the store's chunk sizes ({sizes} models, {CAL_STEPS + 1} steps; "
           "one-model-at-a-time trainers: 2 models, scaled), real recipe and trainer; interval: step time quartiles",
           "the machine is as busy during the study as during the calibration; one process, no parallel workers"]
    if cfg is not None:
        out += [f"{k}: {v}" for k, v in {
            "B": c.costs["training"]["a"] is c.costs["training"]["b"] and "its recipe differs from A's only in "
                 "values (learning rate, schedule, seed, epochs, initial weights): calibrated once",
            "TRAK": cfg.attribution.method == "trak" and "timed on an untrained model of A's recipe, before training",
            "search": n["search_candidates"] and f"{n['search_candidates']} candidates (from the search's library), "
                      f"{cfg.search.n_confirm} per direction confirmed, at one candidate's cost per model and input",
            "counterfactual": n["counterfactual_tests"] and f"{n['counterfactual_tests']} tests per direction, "
                              f"{n['counterfactual_sweeps']} swept over {len(cfg.counterfactual.sizes)} sizes",
            "diagnostics": cfg.diagnostics.models and f"{cfg.diagnostics.models} models per algorithm, from one on "
                           f"{CAL_DIAG_EXAMPLES} examples (a trained model may need other Lanczos counts)",
            "match": cfg.match.active and (
                "train_matched: an upper bound, the costlier algorithm retrained for match.max_epochs with every "
                "model running to the end, plus 1/3 for the epoch-end fit checks" + _inside(cfg)
                if cfg.match.method == "train_slower" else
                "train_matched: the costlier algorithm trained again for its own epochs with every model running to "
                "the end, plus 1/3 for the epoch-end fit checks" + _inside(cfg) if cfg.match.retrains_faster
                else "stop_faster: checkpoints every epoch (disk: weights x epochs) and one evaluation per model, "
                     "not timed"),
            "other stages (ModelDiff, null, reports)": "one calibration point each, interval ±15 %"}.items() if v]
    return out


def _inside(cfg) -> str:
    k = cfg.match.checks_per_epoch
    if k == 1:
        return ""
    if cfg.match.stop_at == "nearest":
        return f" and {k - 1} more checks inside every epoch (checks_per_epoch {k}, stop_at nearest)"
    return (f" and {k - 1} more checks inside each of {INSIDE_CHECK_EPOCHS} epochs (checks_per_epoch {k}; more when "
            f"the models stop at different epochs)")
