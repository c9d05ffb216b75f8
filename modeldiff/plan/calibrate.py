"""The calibration run: measure, on this machine and with the study's real recipes, what each stage costs.

Training: two chunks of a temporary store (``E`` and ``E/4`` models, ~``CAL_STEPS`` optimizer steps
each, or exactly the one or two chunk sizes the store will have, through the real trainer,
:func:`datamodels.runs.runner.train_chunk`) give setup, step and
finish times as functions of the ensemble size (:mod:`modeldiff.plan.scaling`), the peak memory of
a training process and the size of one weights file. With ``W > 1`` workers, ``W`` processes then
train one chunk each *at the same time* (each with ``cores / W`` threads), which measures the
contention between workers and their start-up cost. Attribution: per-example gradients of a few
examples (TRAK) or a lasso fit on a few targets (datamodels), the kernel inverse at the real
projection size, and a score block. The diff: ModelDiff on a synthetic pair of the study's width.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from datamodels.base.progress import step_bar
from modeldiff.plan.memory import PeakSampler, release_memory, rss_bytes, timed
from modeldiff.plan.scaling import ChunkTimeModel, Linear

CAL_STEPS = 10  # optimizer steps per model in a calibration chunk (plus one warm-up step)
CAL_TRAK_EXAMPLES = 2  # TRAK: at least this many 64-example batches of per-example gradients are timed
CAL_DIFF_ROWS = 256  # test rows of the synthetic ModelDiff problem
CAL_LOOP_MODELS = 2  # models of the one calibration chunk of a trainer that trains them one at a time
CAL_LASSO_TARGETS = 16  # test examples of the synthetic datamodels problem


@dataclass
class TrainingCalibration:
    """What one recipe's training costs here."""

    chunk: ChunkTimeModel  # chunk time under ``workers`` concurrent workers
    alone: ChunkTimeModel  # chunk time of one worker alone on the machine (all its cores)
    startup: float  # seconds before the first chunk starts (process / worker start, data loading)
    peak_rss: int  # bytes, one training process at the study's ensemble size
    weights_bytes: int  # one model's weights file
    forward_seconds: float  # one model, one example, evaluation forward pass
    seconds: float  # what this calibration itself took
    # peak memory of a chunk = peak_base + peak_growth(E): the process before training plus the growth
    # during a chunk of E models, fixed + per-model parts fitted on the calibration chunks' sizes
    peak_base: int = 0
    peak_growth: Linear | None = None
    peak_points: tuple = ()  # ((E, growth bytes), ...) as measured

    def peak_at(self, ensemble: int) -> int:
        """Peak bytes of a training process whose largest chunk has ``ensemble`` models."""
        if getattr(self, "peak_growth", None) is None:
            return self.peak_rss
        return int(self.peak_base + self.peak_growth(ensemble))


@dataclass
class AttributionCalibration:
    method: str
    per_example_seconds: float = 0.0  # TRAK: per-example gradient + projection, one model
    load_seconds: float = 0.0  # TRAK: loading one model
    kernel_fixed_seconds: float = 0.0  # TRAK: inverse of the k x k kernel
    kernel_per_row_seconds: float = 0.0  # TRAK: one row of Φ (ΦᵀΦ)⁻¹
    score_seconds_per_mac: float = 0.0  # TRAK: scoring matmul, per multiply-add
    lasso_seconds_per_target: float = 0.0  # datamodels: one test example's lasso path
    peak_rss_extra: int = 0  # bytes above the process base while featurising / fitting
    seconds: float = 0.0


@dataclass
class DiffCalibration:
    seconds_per_entry: float  # ModelDiff seconds per entry of one [n_test, n_train] matrix
    bytes_per_entry: float  # peak memory per entry
    seconds: float


@dataclass
class EvaluationCalibration:
    """What evaluating one candidate transformation costs for one recipe's models (search, counterfactuals).

    ``search``: one candidate on one half of the models, already loaded (the search's
    :class:`~modeldiff.counterfactual.search.LoadedModels`): transform, forward pass and per-class
    effects, at ``search_inputs`` inputs, linear in the number of models. ``load``: loading models
    once. ``store_call``: one call of a store predictor (the counterfactual tests: it loads the models
    and runs them) at ``cf_inputs`` inputs, linear in the number of models. ``bootstrap``: one
    ``compare_effects`` (both algorithms, ``CAL_BOOT_RESAMPLES`` bootstrap draws) — seconds.
    """

    search: Linear
    load: Linear
    store_call: Linear
    bootstrap: float
    search_inputs: int
    cf_inputs: int
    seconds: float = 0.0


@dataclass
class Calibration:
    base_rss: int  # bytes of a process with torch and the data loaded
    training: dict = field(default_factory=dict)  # recipe tag -> TrainingCalibration
    attribution: AttributionCalibration | None = None
    diff: DiffCalibration | None = None
    evaluation: dict = field(default_factory=dict)  # recipe tag -> EvaluationCalibration
    diagnostics: dict = field(default_factory=dict)  # recipe tag -> DiagnosticsCalibration (studies with diagnostics)
    report: object = None  # ReportCalibration (studies): the two reports' figures
    seconds: float = 0.0
    reused: list = field(default_factory=list)  # what was reused instead of measured (stated in the plan)


@contextmanager
def _no_bar():
    yield None


def _threads_for(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class _EnoughSteps(Exception):
    """Raised from the step callback once the steps are timed (a chunk whose evaluation is known)."""


def steps_only_backend(recipe, data) -> bool:
    """Whether ``recipe``'s trainer trains a chunk's models together, step by step (ensemble, vmap),
    so that a chunk can be stopped after its timed steps."""
    from datamodels.training.backends import check_recipe

    return check_recipe(recipe, data, dry=False) in ("ensemble", "vmap")


def fit_peak(points, base: int) -> tuple[Linear, int]:
    """``(growth, base)``: the peak growth of a chunk as ``fixed + per_model · E`` through the measured
    ``points`` ``[(E, growth bytes), ...]``. One size (a trainer that trains one model at a time, or
    an ensemble size too small to split): all fixed, the growth measured at the size that is used."""
    sizes, growth = zip(*points)
    if len(set(sizes)) == 1:
        return Linear(float(np.mean(growth)), 0.0), int(base)
    return Linear.fit(sizes, growth), int(base)


def calibrate_training(recipe, data, ensemble_size: int, device: str, folder: str, workers: int = 1,
                       progress=None, finish_from: TrainingCalibration | None = None,
                       show: bool = True, sizes: list[int] | None = None) -> TrainingCalibration:
    """Time two calibration chunks of ``recipe`` (and a concurrent run when ``workers > 1``).

    The calibration store is left in ``folder`` (its first model's weights serve the TRAK
    calibration); ``progress(n_models_done)`` is called after each chunk. ``finish_from``: the
    calibration of a recipe with the same model, data and trainer (:func:`modeldiff.plan.reuse.finish_key`),
    whose evaluation-and-commit time, peak memory of evaluation and weights size are reused; the
    chunks then stop after their timed steps (nothing is written to the store). A trainer that
    trains one model at a time (loop, train_fn) is timed on one chunk of ``CAL_LOOP_MODELS`` models.
    """
    from datamodels.runs.runner import train_chunk
    from datamodels.store import Store

    start = time.perf_counter()
    small = max(1, ensemble_size // 4)
    if sizes is None:  # any store: fit fixed and per-model parts on two sizes
        sizes = [ensemble_size] if small == ensemble_size else [ensemble_size, small]
    else:  # the chunk sizes the store will have (at most two): each measured as it will run, nothing fitted
        sizes = sorted(set(sizes), reverse=True)
    steps = CAL_STEPS + 1
    fraction = min(1.0, steps * recipe.batch_size / data.n_train)
    cal = recipe.replace(epochs=1)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(_threads_for(workers))
    records, peak, weights_bytes, points, peak_base = [], 0, 0, [], None
    if finish_from is None and not steps_only_backend(recipe, data):  # loop / train_fn: nothing amortised
        sizes = [min(small, CAL_LOOP_MODELS)]  # one model after another: a chunk's time is proportional
    try:
        store = Store.create_or_resume(folder, cal, data, sum(sizes), fraction, seed=0,
                                       ensemble_size=ensemble_size)
        first = 0
        for k, e in enumerate(sizes, 1):
            stamps: list[float] = []
            release_memory()
            rss0 = rss_bytes()
            peak_base = rss0 if peak_base is None else min(peak_base, rss0)
            desc = f"  calibration chunk {k} of {len(sizes)} ({e} models, {recipe.name})"
            together = finish_from is not None or steps_only_backend(recipe, data)  # one count per step
            with (step_bar(desc, steps if together else None) if show else _no_bar()) as bar:
                def step(n, stamps=stamps, bar=bar, e=e):
                    stamps.append(time.perf_counter())
                    if bar is not None:
                        bar.update(n)
                        if len(stamps) >= steps and finish_from is None:
                            bar.set_postfix_str(f"evaluating {e} models on {data.n_train + data.n_test} examples")
                    if finish_from is not None and len(stamps) >= steps:
                        raise _EnoughSteps

                t0 = time.perf_counter()
                with PeakSampler() as sampler:
                    try:
                        train_chunk(str(store.path), list(range(first, first + e)), device, data, progress=step)
                    except _EnoughSteps:
                        pass
                t_end = time.perf_counter()
            peak = max(peak, sampler.peak) if e == sizes[0] else peak
            points.append((e, max(0, sampler.peak - rss0)))
            records.append((e, t0, stamps, t_end))
            if progress:
                progress(e)
            first += e
        weights_bytes = _weights_size(store) if finish_from is None else finish_from.weights_bytes
    finally:
        torch.set_num_threads(old_threads)
    setup, step, finish, spreads = [], [], [], []
    for _, t0, stamps, t_end in records:
        gaps = np.diff(stamps) if len(stamps) > 1 else np.array([stamps[0] - t0])
        s, spread = step_time(gaps)
        setup.append(max(0.0, stamps[0] - t0 - s))
        step.append(s)
        finish.append(t_end - stamps[-1])
        spreads.append(spread)
    finish_fit = Linear.fit(sizes, finish) if finish_from is None else finish_from.alone.finish
    chunk = ChunkTimeModel(Linear.fit(sizes, setup), Linear.fit(sizes, step), finish_fit,
                           (min(x[0] for x in spreads), max(x[1] for x in spreads)), workers=1)
    forward = chunk.finish.per_model / max(1, data.n_train + data.n_test)
    if finish_from is not None:  # its evaluation (not run here) may need more than these steps
        peak = max(peak, finish_from.peak_rss)
        theirs = dict(getattr(finish_from, "peak_points", ()) or ())
        points = [(e, max(g, theirs.get(e, 0))) for e, g in points]
    growth, peak_base = fit_peak(points, peak_base)
    alone, startup = chunk, 0.0
    if workers > 1:
        chunk, startup = _concurrent(recipe, data, ensemble_size, fraction, device, workers, chunk)
    return TrainingCalibration(chunk, alone, startup, peak, weights_bytes, forward, time.perf_counter() - start,
                               peak_base=peak_base, peak_growth=growth, peak_points=tuple(points))


def step_time(gaps) -> tuple[float, tuple[float, float]]:
    """``(seconds per step, (low, high) multipliers))`` from the times between consecutive steps.

    The **mean**: a store's training time is the sum of its steps, so the occasional slow step (a
    new epoch's batch order and augmentation draws, an allocation, a collection) counts with its
    weight; the median would leave them out and predict short when step times are skewed. The
    interval: the quartiles relative to it (widened to contain it).
    """
    gaps = np.asarray(gaps, dtype=float)
    s = float(gaps.mean())
    q1, q3 = np.quantile(gaps, [0.25, 0.75])
    return s, (min(1.0, q1 / s), max(1.0, q3 / s))


def _weights_size(store) -> int:
    files = sorted((store.path / "weights").glob("*.pt"))
    return files[0].stat().st_size if files else 0


def _concurrent_worker(recipe_dict, data, ensemble_size, fraction, device, threads, folder):
    """One worker of the contention run: start-up is measured by the caller, the chunk here."""
    torch.set_num_threads(threads)
    from datamodels.runs.runner import train_chunk
    from datamodels.store import Store
    from datamodels.training.recipe import recipe_from_dict

    store = Store.create_or_resume(folder, recipe_from_dict(recipe_dict), data, ensemble_size, fraction, seed=0,
                                   ensemble_size=ensemble_size)
    t0 = time.perf_counter()
    train_chunk(str(store.path), list(range(ensemble_size)), device, data)
    return time.perf_counter() - t0


def _concurrent(recipe, data, ensemble_size, fraction, device, workers, alone: ChunkTimeModel):
    """Chunk time with ``workers`` chunks running at once, and the workers' start-up time."""
    cal = recipe.replace(epochs=1)
    threads = _threads_for(workers)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="modeldiff-plan-") as tmp:
        t0 = time.perf_counter()
        with ctx.Pool(workers) as pool:
            jobs = [pool.apply_async(_concurrent_worker, (cal.to_dict(), data, ensemble_size, fraction, device,
                                                          threads, os.path.join(tmp, f"w{k}")))
                    for k in range(workers)]
            chunk_times = [j.get() for j in jobs]
        wall = time.perf_counter() - t0
    steps = CAL_STEPS + 1
    measured = float(np.mean(chunk_times))
    predicted_alone = alone.seconds(ensemble_size, steps)
    contention = measured / predicted_alone if predicted_alone > 0 else 1.0
    scaled = ChunkTimeModel(*(Linear(f.fixed * contention, f.per_model * contention)
                              for f in (alone.setup, alone.step, alone.finish)),
                            alone.step_spread, workers=workers)
    startup = max(0.0, wall - max(chunk_times))
    return scaled, startup


def untrained_model(recipe, data, device: str) -> torch.nn.Module:
    """One untrained model of ``recipe`` as `modeldiff attribute` loads a trained one (one-model net, the
    recipe's precision, eval mode): what the TRAK calibration featurises before any training has shaped the
    heap. Per-example gradient cost and memory depend on the architecture, not on the weights' values."""
    from datamodels.training.model_factory import DataSpec, init_module

    dtype = torch.float64 if recipe.precision == "float64" else torch.float32
    return init_module(recipe.model, DataSpec.of(data), seed=0).to(device, dtype).eval()


def calibrate_trak_recipe(recipe, data, proj_dim: int, batch_size: int, device: str) -> AttributionCalibration:
    """:func:`calibrate_trak` on an untrained model of ``recipe``, in this process, run *before* the training
    calibration: the heap then looks like a fresh `modeldiff attribute` process's (torch and the data loaded,
    nothing freed yet), so TRAK's growth is all seen. Measured after training instead, the planner's heap hid
    ~130 MiB of it even after a trim (digits demo: 370 vs 500 MiB of growth); a fresh process for it cost
    ~3-4 s, most of a small study's calibration. Loading a model is timed as a state dict read from disk
    into a new module."""
    start = time.perf_counter()
    model = untrained_model(recipe, data, device)
    with tempfile.TemporaryDirectory(prefix="modeldiff-plan-") as tmp:
        path = os.path.join(tmp, "model.pt")
        torch.save(model.state_dict(), path)
        with timed() as t_load:
            state = torch.load(path, map_location="cpu", weights_only=True)
            untrained_model(recipe, data, device).load_state_dict(state)
    cal = calibrate_trak(model, data, proj_dim, batch_size, device)
    cal.load_seconds = t_load["seconds"]
    cal.seconds = time.perf_counter() - start
    return cal


def calibrate_trak(model, data, proj_dim: int, batch_size: int, device: str) -> AttributionCalibration:
    """Per-example gradient, kernel and scoring costs of TRAK for ``model`` (one-model net, eval mode), or
    for the first model with weights of the store at ``model`` when it is a path."""
    from datamodels.attribution.gradients import featurize, n_params
    from datamodels.attribution.projectors import make_projector
    from datamodels.attribution.trak import kernel_features
    from datamodels.store import Store

    start = time.perf_counter()
    t_load = {"seconds": 0.0}
    if isinstance(model, (str, os.PathLike)):
        store = Store.open(model, data)
        first = next(int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i)))
        with timed() as t_load:
            model = store.load_model(first, device)
    k = proj_dim
    proj = make_projector("auto", n_params(model), k, 0, torch.device(device), None)
    # One full batch and the training set's last partial one, as the study's pass over the training set ends
    # (its peak memory: a full batch's per-example gradients, then the partial one's on a fragmented heap).
    rest = data.n_train % batch_size if data.n_train > batch_size else 0
    n = min(data.n_train, max(batch_size + rest, CAL_TRAK_EXAMPLES * 64))
    # Peak memory from a trimmed heap (the calibration's training left freed memory behind, which would
    # hide the growth) and including the first call: its one-time allocations (~300 MiB on the digits
    # CNN, whatever n) stay for the whole pass in a fresh `modeldiff attribute` process.
    release_memory()
    base = rss_bytes()
    with PeakSampler() as sampler:
        featurize(model, data.x_train[:32], data.y_train[:32], proj, 0,
                  batch_size=batch_size)  # warm-up: first-call allocations, not timed
        # Timed as a study's next model: its own projector and seed (the projector's sign vectors and
        # blocks are generated per model), at the study's batch size.
        with timed() as t_feat:
            proj = make_projector("auto", n_params(model), k, 0, torch.device(device), None)
            featurize(model, data.x_train[:n], data.y_train[:n], proj, 1, batch_size=batch_size)
    rows = min(data.n_train, 4096)
    phi = torch.randn(rows, k)
    with timed() as t_inv:
        xtx = phi.T.double() @ phi.double()
        torch.linalg.inv(xtx + torch.eye(k, dtype=xtx.dtype))
    with timed() as t_kernel:
        kernel_features(phi, 1e-3)
    a, b = torch.randn(min(1024, data.n_test), k), torch.randn(min(8192, data.n_train), k)
    with timed() as t_score:
        _ = a @ b.T
    return AttributionCalibration(
        "trak", per_example_seconds=t_feat["seconds"] / n, load_seconds=t_load["seconds"],
        kernel_fixed_seconds=t_inv["seconds"],
        kernel_per_row_seconds=max(0.0, t_kernel["seconds"] - t_inv["seconds"]) / rows,
        score_seconds_per_mac=t_score["seconds"] / (a.shape[0] * b.shape[0] * k),
        peak_rss_extra=max(0, sampler.peak - base), seconds=time.perf_counter() - start)


def calibrate_datamodels(n_models: int, n_train: int, fraction: float, n_lambdas: int,
                         device: str) -> AttributionCalibration:
    """A lasso path on ``CAL_LASSO_TARGETS`` synthetic targets with the study's mask matrix shape."""
    from datamodels.attribution.regression import DatamodelsRegression

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    masks = rng.random((n_models, n_train)) < fraction
    w = rng.normal(size=(n_train, CAL_LASSO_TARGETS)) * (rng.random((n_train, CAL_LASSO_TARGETS)) < 0.02)
    margins = masks @ w + rng.normal(size=(n_models, CAL_LASSO_TARGETS))
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t:
        DatamodelsRegression(device=torch.device(device), progress=False, n_lambdas=n_lambdas).fit(
            masks, margins.astype(np.float32))
    return AttributionCalibration("datamodels", lasso_seconds_per_target=t["seconds"] / CAL_LASSO_TARGETS,
                                  peak_rss_extra=max(0, sampler.peak - base),
                                  seconds=time.perf_counter() - start)


def calibrate_diff(n_test: int, n_train: int, components: int) -> DiffCalibration:
    """ModelDiff on a synthetic pair of ``[min(n_test, CAL_DIFF_ROWS), n_train]`` matrices."""
    from modeldiff.diff import ModelDiff

    start = time.perf_counter()
    rows = min(n_test, CAL_DIFF_ROWS)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(rows, n_train)).astype(np.float32)
    b = rng.normal(size=(rows, n_train)).astype(np.float32)
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t:
        ModelDiff(min(components, rows - 1), random_state=0).fit(a, b)
    entries = rows * n_train
    return DiffCalibration(t["seconds"] / entries, max(0, sampler.peak - base) / entries,
                           time.perf_counter() - start)


CAL_EVAL_REPEATS = 2  # timed repetitions of one candidate's evaluation (the median is kept)
CAL_BOOT_RESAMPLES = 2000  # bootstrap draws of the timed comparison (predict.BOOT_RESAMPLES)


def _median_time(fn, repeats: int = CAL_EVAL_REPEATS) -> float:
    times = []
    for _ in range(repeats):
        with timed() as t:
            fn()
        times.append(t["seconds"])
    return float(np.median(times))


def calibrate_evaluation(store_path, data, search_inputs: int, cf_inputs: int, device: str) -> EvaluationCalibration:
    """Time one candidate's evaluation with all the calibration store's models.

    The candidate is the middle of the generic library for image data (a patch), an element-wise
    change otherwise; its cost is dominated by the forward passes, which the timing includes.
    """
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
    # One size, all the calibration store's models (E + E/4): the per-model part dominates there, so a
    # proportional model (no fixed part) errs by at most the fixed part's share at smaller halves.
    with timed() as t_load:
        pred = LoadedModels(store, rows, device)
    _, _, control = per_model_effects(pred, x_s, y_s, transform)  # warm-up; the control, as in the search
    search = _median_time(lambda: per_model_effects(pred, x_s, y_s, transform, control), CAL_EVAL_REPEATS)
    call = _median_time(lambda: store.predict_proba(transform(x_c), indices=rows, device=device), 1)
    sizes, search, load, call = [len(rows)], [search], [t_load["seconds"]], [call]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=len(rows)), rng.normal(size=len(rows))
    with timed() as t_boot:
        compare_effects(a, b, n_resamples=CAL_BOOT_RESAMPLES, seed=0)
    return EvaluationCalibration(Linear.fit(sizes, search), Linear.fit(sizes, load), Linear.fit(sizes, call),
                                 t_boot["seconds"], int(x_s.shape[0]), int(x_c.shape[0]),
                                 time.perf_counter() - start)
