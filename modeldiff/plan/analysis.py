"""The comparison's cost: ModelDiff (both directions and the null calibration's fits), the confirmatory search
and the counterfactual tests, counted as the pipeline runs them and timed from one instance of each.

ModelDiff is timed on a synthetic pair of ``[min(n_test, CAL_DIFF_ROWS), n_train]`` matrices and scaled per
entry. A candidate transformation's evaluation (search) and a store predictor call (counterfactual tests)
are timed with all the calibration store's models and scaled in proportion to models and inputs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from modeldiff.plan.measure import PeakSampler, rss_bytes, stage, timed

CAL_DIFF_ROWS = 256  # test rows of the synthetic ModelDiff problem
CAL_BOOT_RESAMPLES = 2000  # bootstrap draws of the timed comparison (scaled to the study's)


@dataclass
class DiffCost:
    per_entry: float  # ModelDiff seconds per entry of one [n_test, n_train] matrix
    bytes_per_entry: float  # peak memory growth per entry
    seconds: float


@dataclass
class EvaluationCost:
    """One recipe's models: seconds per model to load, to evaluate one search candidate at ``search_inputs``
    inputs (transform, forward pass, per-class effects) and to call the store predictor at ``cf_inputs``;
    one bootstrap comparison of ``CAL_BOOT_RESAMPLES`` draws."""

    load: float
    search: float
    store_call: float
    bootstrap: float
    search_inputs: int
    cf_inputs: int
    seconds: float = 0.0


def calibrate_diff(n_test: int, n_train: int, components: int) -> DiffCost:
    from modeldiff.diff import ModelDiff

    start = time.perf_counter()
    rows = min(n_test, CAL_DIFF_ROWS)
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(rows, n_train)).astype(np.float32) for _ in range(2))
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t:
        ModelDiff(min(components, rows - 1), random_state=0).fit(a, b)
    entries = rows * n_train
    return DiffCost(t["seconds"] / entries, max(0, sampler.peak - base) / entries, time.perf_counter() - start)


def calibrate_evaluation(store_path, data, search_inputs: int, cf_inputs: int, device: str) -> EvaluationCost:
    """Time one candidate (the middle of the generic library for images, an element-wise change otherwise)
    with all the calibration store's models; the median of two evaluations after a warm-up one."""
    from datamodels.store import Store
    from modeldiff.counterfactual.effect_stats import compare_effects
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.search import LoadedModels, per_model_effects

    start = time.perf_counter()
    store = Store.open(store_path, data)
    rows = [int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i))]
    x_s, y_s = data.x_test[:max(1, search_inputs)], data.y_test[:max(1, search_inputs)].numpy()
    x_c = data.x_test[:max(1, cf_inputs)]
    if getattr(data, "is_image", True):
        library = generic_candidates(x_s.shape[1:])
        transform = library[len(library) // 2]
    else:
        def transform(x):
            return x * 1.01
    with timed() as t_load:
        pred = LoadedModels(store, rows, device)
    _, _, control = per_model_effects(pred, x_s, y_s, transform)  # warm-up; the control, as in the search
    times = []
    for _ in range(2):
        with timed() as t:
            per_model_effects(pred, x_s, y_s, transform, control)
        times.append(t["seconds"])
    with timed() as t_call:
        store.predict_proba(transform(x_c), indices=rows, device=device)
    rng = np.random.default_rng(0)
    with timed() as t_boot:
        compare_effects(rng.normal(size=len(rows)), rng.normal(size=len(rows)), n_resamples=CAL_BOOT_RESAMPLES, seed=0)
    n = len(rows)
    return EvaluationCost(t_load["seconds"] / n, float(np.median(times)) / n, t_call["seconds"] / n,
                          t_boot["seconds"], int(x_s.shape[0]), int(x_c.shape[0]), time.perf_counter() - start)


def search_shape(cfg, data) -> dict:
    """The confirmatory search's size as ``run_search`` builds it: the generic candidates of its own library,
    the study's transforms and the component overlays of both directions."""
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.user_transform import is_user_spec

    sp = cfg.search
    if not sp.enabled:
        return {"search_candidates": 0}
    image = getattr(data, "is_image", True)
    n = len(generic_candidates(data.x_test.shape[1:], families=sp.families or None, seed=sp.seed)) if image else 0
    n += sum(1 for t in cfg.counterfactual.transforms if image or is_user_spec(t))
    if sp.overlays and image:
        n += 2 * min(sp.overlays, cfg.components) * 2  # two directions, both signs
    return {"search_candidates": n, "search_models": sp.models if sp.models else cfg.models,
            "search_inputs": min(sp.n_inputs, data.n_test // 2), "search_confirm": sp.n_confirm,
            "search_resamples": sp.n_resamples}


def counterfactual_shape(cfg, data) -> dict:
    """The counterfactual tests ``run_counterfactuals`` runs per direction: component overlays and the study's
    transforms, patch transforms swept over ``counterfactual.sizes``."""
    from modeldiff.counterfactual.transforms.spec import parse_transform
    from modeldiff.counterfactual.user_transform import is_user_spec

    cf = cfg.counterfactual
    image = getattr(data, "is_image", True)
    tests = 2 * min(cf.auto_candidates, cfg.components) if image else 0
    sweeps = 0
    for item in cf.transforms:
        if is_user_spec(item) or image:
            tests += 1
        if image and not is_user_spec(item):
            t = parse_transform(item, seed=cf.seed)
            sweeps += bool(cf.sizes and hasattr(t, "with_params") and "size" in getattr(t, "params", {}))
    not_target = data.n_test * (1 - 1 / max(1, data.num_classes))  # inputs of other classes than the target
    return {"counterfactual_tests": tests, "counterfactual_sweeps": sweeps, "counterfactual_sizes": len(cf.sizes),
            "counterfactual_inputs": int(min(cf.n_test, not_target)), "counterfactual_resamples": cf.bootstrap}


def predict_diff(cost: DiffCost, shape, base_rss: int) -> dict:
    """Both directions (A−B, B−A); the study holds the two score matrices (8 bytes per entry)."""
    entries = shape.n_test * shape.n_train
    return stage(2 * entries * cost.per_entry, base_rss + entries * (cost.bytes_per_entry + 8))


def predict_null(cost: DiffCost, shape, base_rss: int) -> dict:
    """``null_fits`` ModelDiff fits of full-width half-model matrices (four half matrices held)."""
    entries = shape.n_test * shape.n_train
    return stage(shape.null_fits * entries * cost.per_entry, base_rss + entries * (cost.bytes_per_entry + 16))


def predict_search(costs: dict, shape, base_rss: int, weights_bytes: int) -> dict:
    """Per algorithm: every candidate (and a control) on the discovery half, ``search_confirm`` per direction
    (and a control) on the confirmation half; then the confirmed candidates' bootstrap comparisons."""
    first = shape.models // 2  # modeldiff.counterfactual.search.model_halves: the first half discovers
    disc, conf = min(first, shape.search_models), min(shape.models - first, shape.search_models)
    seconds = 0.0
    for c in costs.values():
        per_input = shape.search_inputs / max(1, c.search_inputs)
        seconds += c.load * (disc + conf) + c.search * per_input * (
            (shape.search_candidates + 1) * disc + (2 * shape.search_confirm + 1) * conf)
    boot = max(c.bootstrap for c in costs.values()) * shape.search_resamples / CAL_BOOT_RESAMPLES
    seconds += 2 * shape.search_confirm * 2 * boot
    return stage(seconds, base_rss + 2 * (disc + conf) * weights_bytes)


def predict_counterfactual(costs: dict, shape, base_rss: int, weights_bytes: int) -> dict:
    """Per direction: each test = control and treated store-predictor calls of both algorithms and two
    bootstrap comparisons; each patch sweep = one control and one treated call per size, two comparisons
    per size."""
    calls = sum(c.store_call * shape.models * shape.counterfactual_inputs / max(1, c.cf_inputs)
                for c in costs.values())
    boot = 2 * max(c.bootstrap for c in costs.values()) * shape.counterfactual_resamples / CAL_BOOT_RESAMPLES
    per_direction = (shape.counterfactual_tests * (2 * calls + boot)
                     + shape.counterfactual_sweeps * (calls + shape.counterfactual_sizes * (calls + boot)))
    return stage(2 * per_direction, base_rss + min(shape.models, 16) * weights_bytes)
