"""The comparison's cost: ModelDiff (both directions, the null calibration's fits) timed on a synthetic pair of
``[min(n_test, CAL_DIFF_ROWS), n_train]`` matrices and scaled per entry; the search and the counterfactual tests
counted as the pipeline runs them, one candidate's evaluation and one store predictor call timed with the
calibration store's models and scaled in proportion to models and inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modeldiff.plan.measure import PeakSampler, rss_bytes, stage, timed, timed_call

CAL_DIFF_ROWS = 256  # test rows of the synthetic ModelDiff problem
CAL_BOOT_RESAMPLES = 2000  # bootstrap draws of the timed comparison (scaled to the study's)


@dataclass
class DiffCost:
    per_entry: float  # ModelDiff seconds per entry of one [n_test, n_train] matrix
    bytes_per_entry: float  # peak memory growth per entry


@dataclass
class EvaluationCost:
    """Seconds per model of one recipe to load it, to evaluate a candidate on ``search_inputs`` inputs and to
    call the store predictor on ``cf_inputs``; one bootstrap comparison of ``CAL_BOOT_RESAMPLES`` draws."""

    load: float
    search: float
    store_call: float
    bootstrap: float
    search_inputs: int
    cf_inputs: int


def calibrate_diff(n_test: int, n_train: int, components: int) -> DiffCost:
    from modeldiff.diff import ModelDiff

    rows = min(n_test, CAL_DIFF_ROWS)
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(rows, n_train)).astype(np.float32) for _ in range(2))
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t:
        ModelDiff(min(components, rows - 1), random_state=0).fit(a, b)
    entries = rows * n_train
    return DiffCost(t["seconds"] / entries, max(0, sampler.peak - base) / entries)


def calibrate_evaluation(store_path, data, search_inputs: int, cf_inputs: int, device: str) -> EvaluationCost:
    """Time one candidate (mid-library for images, element-wise otherwise): median of two after a warm-up."""
    from datamodels.store import Store
    from modeldiff.counterfactual.effect_stats import compare_effects
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.search import LoadedModels, per_model_effects

    store = Store.open(store_path, data)
    rows = [int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i))]
    x_s, y_s, x_c = data.x_test[:max(1, search_inputs)], data.y_test[:max(1, search_inputs)].numpy(), \
        data.x_test[:max(1, cf_inputs)]
    library = generic_candidates(x_s.shape[1:]) if getattr(data, "is_image", True) else [lambda x: x * 1.01]
    transform = library[len(library) // 2]
    with timed() as t_load:
        pred = LoadedModels(store, rows, device)
    _, _, control = per_model_effects(pred, x_s, y_s, transform)  # warm-up; the control, as in the search
    times = [timed_call(per_model_effects, pred, x_s, y_s, transform, control) for _ in range(2)]
    call = timed_call(lambda: store.predict_proba(transform(x_c), indices=rows, device=device))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=len(rows)), rng.normal(size=len(rows))
    boot = timed_call(lambda: compare_effects(a, b, n_resamples=CAL_BOOT_RESAMPLES, seed=0))
    n = len(rows)
    return EvaluationCost(t_load["seconds"] / n, float(np.median(times)) / n, call / n, boot, int(x_s.shape[0]),
                          int(x_c.shape[0]))


def counts(cfg, data) -> dict:
    """What the pipeline runs: the search's candidates as ``run_search`` builds them (its library's, the study's
    transforms, overlays of both directions) and inputs per half; ``run_counterfactuals``' tests per direction
    (overlays, the study's transforms), patch sweeps over ``counterfactual.sizes`` and inputs."""
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.search import LIBRARY_MATCHES
    from modeldiff.counterfactual.transforms.spec import parse_transform
    from modeldiff.counterfactual.user_transform import is_user_spec

    sp, cf, image = cfg.search, cfg.counterfactual, getattr(data, "is_image", True)
    library = generic_candidates(data.x_test.shape[1:], families=sp.families or None, seed=sp.seed) if image else []
    library += [parse_transform(t) for t in sp.transforms if image and not is_user_spec(t)]
    candidates = len(library) + sum(1 for t in sp.transforms if is_user_spec(t))
    fixed = sum(isinstance(getattr(t, "params", {}).get("loc"), tuple) for t in library)  # two directions, both
    candidates += 2 * min(sp.overlays, cfg.components) * 2 * (1 + min(LIBRARY_MATCHES, fixed)) if image else 0  # signs
    tests, sweeps = 2 * min(cf.auto_candidates, cfg.components) if image else 0, 0
    for item in cf.transforms:
        tests += bool(image or is_user_spec(item))
        if image and not is_user_spec(item):
            t = parse_transform(item, seed=cf.seed)
            sweeps += bool(cf.sizes and hasattr(t, "with_params") and "size" in getattr(t, "params", {}))
    not_target = data.n_test * (1 - 1 / max(1, data.num_classes))  # inputs of other classes than the target
    return {"search_candidates": candidates if sp.enabled else 0, "search_inputs": min(sp.n_inputs, data.n_test // 2),
            "counterfactual_tests": tests, "counterfactual_sweeps": sweeps,
            "counterfactual_inputs": int(min(cf.n_test, not_target))}


def predict_diff(cost: DiffCost, shape, base_rss: int) -> dict:
    """Both directions (A−B, B−A); the study holds the two score matrices (8 bytes per entry)."""
    entries = shape.n_test * shape.n_train
    return stage(2 * entries * cost.per_entry, base_rss + entries * (cost.bytes_per_entry + 8))


def predict_null(cost: DiffCost, shape, base_rss: int) -> dict:
    """Per split 4 null and 4 observed ModelDiff fits (:mod:`modeldiff.diff.null`) of half-model matrices."""
    entries = shape.n_test * shape.n_train
    fits = 8 * shape.cfg.calibration.splits
    return stage(fits * entries * cost.per_entry, base_rss + entries * (cost.bytes_per_entry + 16))


def predict_search(costs: dict, shape, base_rss: int, weights_bytes: int) -> dict:
    """Per algorithm every candidate (and a control) on the discovery half — or, with screening
    (:mod:`modeldiff.counterfactual.screen`), every candidate on the screening models and at most
    ``2 * screen_keep`` on the discovery half — ``n_confirm`` per direction (and a control) on the
    confirmation half; the confirmed candidates' bootstrap comparisons."""
    sp, n = shape.cfg.search, shape.counts
    first = shape.models // 2  # modeldiff.counterfactual.search.model_halves: the first half discovers
    disc, conf = min(first, sp.models or shape.models), min(shape.models - first, sp.models or shape.models)
    cands = n["search_candidates"]
    screens = bool(sp.screen_models and sp.screen_keep and disc > sp.screen_models and cands > sp.screen_keep)
    evaluations = ((cands + 1) * sp.screen_models + (min(cands, 2 * sp.screen_keep) + 1) * disc if screens
                   else (cands + 1) * disc)
    seconds = 0.0
    for c in costs.values():
        seconds += c.load * (disc + conf + (sp.screen_models if screens else 0)) + \
            c.search * n["search_inputs"] / max(1, c.search_inputs) * (evaluations + (2 * sp.n_confirm + 1) * conf)
    boot = max(c.bootstrap for c in costs.values()) * sp.n_resamples / CAL_BOOT_RESAMPLES
    return stage(seconds + 2 * sp.n_confirm * 2 * boot, base_rss + 2 * (disc + conf) * weights_bytes)


def predict_counterfactual(costs: dict, shape, base_rss: int, weights_bytes: int) -> dict:
    """Per direction, each test: control and treated calls of both algorithms, two comparisons; each sweep: a
    control call, and per size a treated call and two comparisons."""
    n, cf = shape.counts, shape.cfg.counterfactual
    calls = sum(c.store_call * shape.models * n["counterfactual_inputs"] / max(1, c.cf_inputs) for c in costs.values())
    boot = 2 * max(c.bootstrap for c in costs.values()) * cf.bootstrap / CAL_BOOT_RESAMPLES
    per_direction = (n["counterfactual_tests"] * (2 * calls + boot)
                     + n["counterfactual_sweeps"] * (calls + len(cf.sizes) * (calls + boot)))
    return stage(2 * per_direction, base_rss + min(shape.models, 16) * weights_bytes)
