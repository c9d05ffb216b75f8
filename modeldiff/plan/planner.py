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

from modeldiff.errors import UserError
from modeldiff.plan import calibrate as C
from modeldiff.plan.memory import process_age, rss_bytes
from modeldiff.plan.predict import StudyShape, predict

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
    attribution_models: int | None = None  # TRAK models (set from --target-lds)
    extra_assumptions: list = field(default_factory=list)


def _is_recipe(path: str) -> bool:
    import yaml

    p = Path(path)
    if not (p.is_file() and p.suffix in (".yaml", ".yml")):
        return False
    try:
        data = yaml.safe_load(p.read_text())
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
    spec, cf = cfg.attribution, cfg.counterfactual
    transforms = len(cf.transforms) + 2 * cf.auto_candidates + len(cf.sizes) * sum("patch" in t for t in cf.transforms)
    shape = StudyShape(data.n_train, data.n_test, data.num_classes, cfg.models, cfg.subset_fraction,
                       cfg.ensemble_size, req.workers, spec.method, spec.models, spec.proj_dim, spec.batch_size,
                       spec.lambdas, cfg.components, transforms, min(cf.n_test, data.n_test))
    command = (f"modeldiff study {req.target} --out DIR" + (f" --models {req.models}" if req.models else "")
               + (f" --device {req.device}" if req.device != "cpu" else ""))
    return {"a": recipe_a, "b": recipe_b}, data, shape, command


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
    """The calibration run for ``req`` (progress shown; seconds to a couple of minutes)."""
    _check(req)
    recipes, data, shape, command = _load(req)
    startup = process_age()
    started = time.perf_counter()
    cal = C.Calibration(base_rss=rss_bytes())
    # Workers of the ray launcher run on separate machines: no contention between them.
    contention_workers = req.workers if req.launcher == "local" else 1
    steps = len(recipes) + (2 if len(recipes) == 2 else 0)  # training per recipe, attribution, diff
    with tempfile.TemporaryDirectory(prefix="modeldiff-plan-") as tmp, \
            tqdm(total=steps, desc="calibrating", unit="stage", dynamic_ncols=True) as bar:
        for tag, recipe in recipes.items():
            bar.set_postfix_str(f"training {recipe.name}")
            cal.training[tag] = C.calibrate_training(recipe, data, shape.ensemble_size, req.device,
                                                     os.path.join(tmp, f"store{tag}"), contention_workers)
            if req.launcher == "ray":
                cal.training[tag].chunk = dataclasses.replace(cal.training[tag].alone, workers=req.workers)
            bar.update(1)
        if len(recipes) == 2:
            bar.set_postfix_str(f"attribution ({shape.method})")
            if shape.method == "trak":
                cal.attribution = C.calibrate_trak(os.path.join(tmp, "storea"), data, shape.proj_dim,
                                                   shape.trak_batch, req.device)
            else:
                cal.attribution = C.calibrate_datamodels(shape.models, shape.n_train, shape.subset_fraction,
                                                         shape.lambdas, req.device)
            bar.update(1)
            bar.set_postfix_str("diff")
            cal.diff = C.calibrate_diff(shape.n_test, shape.n_train, shape.components)
            bar.update(1)
    cal.seconds = time.perf_counter() - started
    return Calibrated(req, cal, recipes, shape, command, startup)


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
                "assumptions": assumptions(req, shape) + list(req.extra_assumptions)})
    return out


def plan(req: PlanRequest) -> dict:
    """Calibrate on this machine, then predict every stage; the result is JSON-ready."""
    return predict_plan(calibrate(req))


def _on_machines(cal: C.Calibration, machines: int) -> C.Calibration:
    """The calibration with training spread over ``machines`` machines like this one (no contention)."""
    training = {tag: dataclasses.replace(t, chunk=dataclasses.replace(t.alone, workers=machines), startup=0.0)
                for tag, t in cal.training.items()}
    return dataclasses.replace(cal, training=training)


def assumptions(req: PlanRequest, shape: StudyShape) -> list[str]:
    out = [
        "training: per-step, set-up and evaluation times measured on two calibration chunks "
        f"({shape.ensemble_size} and {max(1, shape.ensemble_size // 4)} models, {C.CAL_STEPS} steps) with the real "
        "recipe on this machine, linear in the ensemble size; interval = quartiles of the measured step times",
        "the machine is as busy during the study as during the calibration",
    ]
    if req.workers > 1 and req.launcher == "local":
        out.append(f"{req.workers} local workers: contention measured by running {req.workers} calibration chunks "
                   "at once; worker start-up measured")
    if req.launcher == "ray":
        out.append(f"ray: {req.workers} machines like this one, one worker each, no contention between them; "
                   "cluster start-up not included")
    if shape.counterfactual_transforms:
        out.append("counterfactual: transforms x models x (transformed + control) forward passes at the measured "
                   "evaluation speed; bootstrap statistics and report writing not included (seconds)")
    out.append("other stages: one calibration point each, interval ±15 %")
    return out
