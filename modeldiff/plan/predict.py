"""A study's (or a recipe's) stages predicted from a calibration: seconds with an interval, peak memory, disk.

Each stage: ``{"seconds", "seconds_low", "seconds_high", "peak_memory_bytes", "disk_bytes"}``.
``seconds_low/high`` use the quartiles of the measured step times for training and ±
``MODEL_ERROR`` for the other stages (whose calibration measures one configuration, not a spread).
"""
from __future__ import annotations

from dataclasses import dataclass

from modeldiff.plan.calibrate import AttributionCalibration, Calibration, DiffCalibration, TrainingCalibration
from modeldiff.plan.scaling import chunk_sizes, steps_per_model, store_seconds

MODEL_ERROR = 0.15  # relative half-width stated for stages predicted from one calibration point
HDF5_OVERHEAD = 1.02  # chunk index and attributes of an influence dataset
BOOT_RESAMPLES = 2000  # bootstrap draws of the calibration's timed comparison (calibrate.CAL_BOOT_RESAMPLES)


@dataclass
class StudyShape:
    """Everything about the work that the prediction needs (from a study YAML or a recipe + flags)."""

    n_train: int
    n_test: int
    n_classes: int
    models: int
    subset_fraction: float
    ensemble_size: int
    workers: int
    method: str = "trak"  # attribution estimator
    attribution_models: int = 16  # TRAK: models featurised
    proj_dim: int = 1024
    trak_batch: int = 64
    lambdas: int = 12
    components: int = 5
    null_fits: int = 0  # ModelDiff fits of the null calibration (8 per split; 0: no calibration)
    # the confirmatory search (0 candidates: no search); candidates counted from its library
    search_candidates: int = 0
    search_models: int = 32  # models per half (discovery / confirmation), at most
    search_inputs: int = 200  # test inputs per half
    search_confirm: int = 5  # candidates confirmed per direction
    search_resamples: int = 2000
    # counterfactual tests, per direction
    counterfactual_tests: int = 0  # overlays of components + the study's transforms
    counterfactual_sweeps: int = 0  # of those, patches swept over sizes
    counterfactual_sizes: int = 0  # sizes per sweep
    counterfactual_inputs: int = 0  # test images each transform is applied to
    counterfactual_resamples: int = 2000
    train_margins: bool = True
    diagnostics_models: int = 0  # models diagnosed per algorithm (0: no diagnostics stage)
    diagnostics_batch: int = 1024  # examples per pass chunk of the diagnostics
    diagnostics_spec: object = None  # the study's DiagnosticsSpec (settings of the calibration run)


def _stage(seconds, low, high, peak, disk) -> dict:
    return {"seconds": float(seconds), "seconds_low": float(low), "seconds_high": float(high),
            "peak_memory_bytes": int(peak), "disk_bytes": int(disk)}


def _spread(seconds: float) -> tuple[float, float]:
    return seconds * (1 - MODEL_ERROR), seconds * (1 + MODEL_ERROR)


def store_bytes(shape: StudyShape, weights_bytes: int) -> int:
    """Bytes of a store: the preallocated arrays (see datamodels.store.store.array_spec) and the weights."""
    n, t, k = shape.models, shape.n_test, shape.n_classes
    arrays = n * shape.n_train + 8 * n + 4 * n * t + 4 * n * t * k + 4 * n + n + 8 * n
    if shape.train_margins:
        arrays += 4 * n * shape.n_train
    return arrays + n * weights_bytes


def predict_training(cal: TrainingCalibration, recipe, shape: StudyShape, base_rss: int) -> dict:
    steps = steps_per_model(shape.n_train, shape.subset_fraction, recipe.batch_size, recipe.epochs)
    args = (cal.chunk, shape.models, shape.ensemble_size, steps, cal.startup)
    largest = max(chunk_sizes(shape.models, shape.ensemble_size), default=shape.ensemble_size)
    peak = cal.peak_at(largest)
    return _stage(store_seconds(*args, "mid"), store_seconds(*args, "low"), store_seconds(*args, "high"),
                  max(peak, base_rss), store_bytes(shape, cal.weights_bytes))


def predict_attribution(cal: AttributionCalibration, shape: StudyShape, base_rss: int) -> dict:
    scores_disk = int(4 * shape.n_test * shape.n_train * HDF5_OVERHEAD)
    if cal.method == "datamodels":
        seconds = cal.lasso_seconds_per_target * shape.n_test
        peak = base_rss + cal.peak_rss_extra + 4 * shape.models * shape.n_train
        return _stage(seconds, *_spread(seconds), peak, scores_disk)
    m, k = shape.attribution_models, shape.proj_dim
    per_model = (cal.load_seconds + (shape.n_train + shape.n_test) * cal.per_example_seconds
                 + cal.kernel_fixed_seconds + shape.n_train * cal.kernel_per_row_seconds)
    scoring = m * shape.n_test * shape.n_train * k * cal.score_seconds_per_mac
    seconds = m * per_model + scoring
    features = min(m * (shape.n_train + shape.n_test) * k * 4, 2 << 30)  # TRAK spills above 2 GiB
    block = 4 * min(1024, shape.n_test) * shape.n_train * 2
    peak = base_rss + cal.peak_rss_extra + features + block
    return _stage(seconds, *_spread(seconds), peak, scores_disk)


def predict_diff(cal: DiffCalibration, shape: StudyShape, base_rss: int) -> dict:
    entries = shape.n_test * shape.n_train
    seconds = 2 * entries * cal.seconds_per_entry  # both directions (A−B and B−A)
    peak = base_rss + entries * (cal.bytes_per_entry + 8)  # + the two score matrices held by the study
    return _stage(seconds, *_spread(seconds), peak, 0)


def predict_null(cal: DiffCalibration, shape: StudyShape, base_rss: int) -> dict:
    """The null calibration: ``null_fits`` ModelDiff fits of full-width half-model matrices."""
    entries = shape.n_test * shape.n_train
    seconds = shape.null_fits * entries * cal.seconds_per_entry
    peak = base_rss + entries * (cal.bytes_per_entry + 16)  # + the four half matrices of a split
    return _stage(seconds, *_spread(seconds), peak, 0)


def _halves(shape: StudyShape) -> tuple[int, int]:
    """Models of the search's discovery and confirmation halves (modeldiff.counterfactual.search.model_halves)."""
    first = shape.models // 2
    return min(first, shape.search_models), min(shape.models - first, shape.search_models)


def predict_search(evaluation: dict, shape: StudyShape, base_rss: int, weights_bytes: int) -> dict:
    """Discovery: every candidate (and one control) on each algorithm's discovery half; confirmation:
    ``search_confirm`` candidates per direction on the confirmation halves, with their bootstrap CIs."""
    disc, conf = _halves(shape)
    seconds = 0.0
    for e in evaluation.values():
        per_input = shape.search_inputs / max(1, e.search_inputs)  # forward passes scale with the inputs
        seconds += e.load(disc) + e.load(conf)
        seconds += (shape.search_candidates + 1) * e.search(disc) * per_input
        seconds += (2 * shape.search_confirm + 1) * e.search(conf) * per_input
    boot = max(e.bootstrap for e in evaluation.values())
    seconds += 2 * shape.search_confirm * 2 * boot * shape.search_resamples / BOOT_RESAMPLES
    peak = base_rss + 2 * (disc + conf) * weights_bytes
    return _stage(seconds, *_spread(seconds), peak, 0)


def predict_counterfactual(evaluation: dict, shape: StudyShape, base_rss: int, weights_bytes: int) -> dict:
    """Per direction: each test = control + treated store-predictor calls of both algorithms (each call
    loads the models) and two bootstrap comparisons; each patch sweep = one control and one treated call
    per size, two comparisons per size."""
    calls = sum(e.store_call(shape.models) * shape.counterfactual_inputs / max(1, e.cf_inputs)
                for e in evaluation.values())  # one call of A's and one of B's models
    boot = 2 * max(e.bootstrap for e in evaluation.values()) * shape.counterfactual_resamples / BOOT_RESAMPLES
    per_direction = (shape.counterfactual_tests * (2 * calls + boot)
                     + shape.counterfactual_sweeps * (calls + shape.counterfactual_sizes * (calls + boot)))
    seconds = 2 * per_direction
    return _stage(seconds, *_spread(seconds), base_rss + min(shape.models, 16) * weights_bytes, 0)


def report_plot_rows(shape: StudyShape) -> int:
    """Rows of the largest effect plot of a direction's report: its counterfactual tests or confirmed candidates."""
    return max(1, shape.counterfactual_tests, shape.search_confirm if shape.search_candidates else 0)


def predict_report(cal, shape: StudyShape, base_rss: int) -> dict:
    """Two reports (one per direction): per direction a variance scatter, one examples figure per component,
    the effect plots of the counterfactual tests and of the search, one plot per size sweep; plus the
    process's first figure (matplotlib's import and set-up) once. ``cal``: a
    :class:`~modeldiff.plan.calibrate_report.ReportCalibration`."""
    singles = 1 + bool(shape.counterfactual_tests) + bool(shape.search_candidates) + shape.counterfactual_sweeps
    seconds = cal.first_seconds + 2 * (shape.components * cal.grid_seconds + singles * cal.plot_seconds)
    return _stage(seconds, *_spread(seconds), base_rss, 0)


NOISE_MAX_BYTES = 512 << 20  # modeldiff.diagnostics.noise.noise_diagnostics: cap of the held gradients


def predict_diagnostics(cals: dict, shape: StudyShape, base_rss: int) -> dict:
    """``diagnostics_models`` models of each algorithm diagnosed on their training subsets
    (``modeldiff.studies.diagnostics.run_diagnostics``); ``cals``: tag ->
    :class:`~modeldiff.plan.calibrate_diagnostics.DiagnosticsCalibration`."""
    n = max(1, round(shape.subset_fraction * shape.n_train))
    seconds, low, high, peak = 0.0, 0.0, 0.0, 0
    for c in cals.values():
        models = min(shape.diagnostics_models, shape.models)
        r = n / max(1, c.examples)
        m = min(n, max(2, min(4096, NOISE_MAX_BYTES // max(1, 4 * c.n_params))))
        gram = m * m * c.n_params * c.gram_seconds_per_mac

        def per_model(lanczos, c=c, r=r, gram=gram):
            return (c.linear_seconds + (lanczos - c.lanczos_used) * c.hvp_seconds) * r + gram

        seconds += models * per_model(c.lanczos_used)
        low += models * per_model(c.lanczos_min) * (1 - MODEL_ERROR)
        high += models * per_model(c.lanczos_max) * (1 + MODEL_ERROR)
        chunk = min(shape.diagnostics_batch, n)
        peak = max(peak, int(base_rss + c.activation_bytes * chunk + 4 * m * c.n_params + c.gram_entry_bytes * m * m))
    return _stage(seconds, min(low, seconds), max(high, seconds), peak, 0)


def predict(cal: Calibration, recipes: dict, shape: StudyShape) -> dict:
    """The plan: ``{"stages": {...}, "total_seconds", "total_seconds_low", "total_seconds_high",
    "peak_memory_bytes", "disk_bytes"}``. ``recipes``: ``{"a": recipe, "b": recipe}`` or ``{"": recipe}``."""
    stages = {}
    for tag, recipe in recipes.items():
        stages["train" if tag == "" else f"train_{tag}"] = predict_training(cal.training[tag], recipe, shape,
                                                                          cal.base_rss)
    if cal.attribution is not None:
        for tag in recipes:
            stages[f"attribute_{tag}"] = predict_attribution(cal.attribution, shape, cal.base_rss)
    if cal.diff is not None:
        stages["diff"] = predict_diff(cal.diff, shape, cal.base_rss)
    if cal.diff is not None and shape.null_fits:
        stages["null"] = predict_null(cal.diff, shape, cal.base_rss)
    weights = max((t.weights_bytes for t in cal.training.values()), default=0)
    if cal.evaluation and shape.search_candidates:
        stages["search"] = predict_search(cal.evaluation, shape, cal.base_rss, weights)
    if cal.evaluation and (shape.counterfactual_tests or shape.counterfactual_sweeps):
        stages["counterfactual"] = predict_counterfactual(cal.evaluation, shape, cal.base_rss, weights)
    if getattr(cal, "report", None) is not None:
        stages["report"] = predict_report(cal.report, shape, cal.base_rss)
    diagnostics = getattr(cal, "diagnostics", None)
    if diagnostics and shape.diagnostics_models:
        stages["diagnostics"] = predict_diagnostics(diagnostics, shape, cal.base_rss)
    total = {key: sum(s[key] for s in stages.values()) for key in ("seconds", "seconds_low", "seconds_high")}
    return {"stages": stages, "total_seconds": total["seconds"], "total_seconds_low": total["seconds_low"],
            "total_seconds_high": total["seconds_high"],
            "peak_memory_bytes": max(s["peak_memory_bytes"] for s in stages.values()),
            "disk_bytes": sum(s["disk_bytes"] for s in stages.values())}
