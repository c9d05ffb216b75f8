"""The calibration run: measure, on this machine and with the study's real recipes, what each stage costs.

Training: two chunks of a temporary store (``E`` and ``E/4`` models, ~``CAL_STEPS`` optimizer steps
each, through the real trainer, :func:`datamodels.training.runner.train_chunk`) give setup, step and
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
from dataclasses import dataclass, field

import numpy as np
import torch

from modeldiff.plan.memory import PeakSampler, rss_bytes, timed
from modeldiff.plan.scaling import ChunkTimeModel, Linear

CAL_STEPS = 10  # optimizer steps per model in a calibration chunk (plus one warm-up step)
CAL_TRAK_EXAMPLES = 2  # batches of per-example gradients timed for TRAK
CAL_DIFF_ROWS = 256  # test rows of the synthetic ModelDiff problem
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
class Calibration:
    base_rss: int  # bytes of a process with torch and the data loaded
    training: dict = field(default_factory=dict)  # recipe tag -> TrainingCalibration
    attribution: AttributionCalibration | None = None
    diff: DiffCalibration | None = None
    seconds: float = 0.0


def _threads_for(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def calibrate_training(recipe, data, ensemble_size: int, device: str, folder: str, workers: int = 1,
                       progress=None) -> TrainingCalibration:
    """Time two calibration chunks of ``recipe`` (and a concurrent run when ``workers > 1``).

    The calibration store is left in ``folder`` (its first model's weights serve the TRAK
    calibration); ``progress(n_models_done)`` is called after each chunk.
    """
    from datamodels.store import Store
    from datamodels.training.runner import train_chunk

    start = time.perf_counter()
    small = max(1, ensemble_size // 4)
    sizes = [ensemble_size] if small == ensemble_size else [ensemble_size, small]
    steps = CAL_STEPS + 1
    fraction = min(1.0, steps * recipe.batch_size / data.n_train)
    cal = recipe.replace(epochs=1)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(_threads_for(workers))
    records, peak, weights_bytes = [], 0, 0
    try:
        store = Store.create_or_resume(folder, cal, data, sum(sizes), fraction, seed=0,
                                       ensemble_size=ensemble_size)
        first = 0
        for e in sizes:
            stamps: list[float] = []
            t0 = time.perf_counter()
            with PeakSampler() as sampler:
                train_chunk(str(store.path), list(range(first, first + e)), device, data,
                            progress=lambda n, stamps=stamps: stamps.append(time.perf_counter()))
            t_end = time.perf_counter()
            peak = max(peak, sampler.peak) if e == ensemble_size else peak
            records.append((e, t0, stamps, t_end))
            if progress:
                progress(e)
            first += e
        weights_bytes = _weights_size(store)
    finally:
        torch.set_num_threads(old_threads)
    setup, step, finish, spreads = [], [], [], []
    for _, t0, stamps, t_end in records:
        gaps = np.diff(stamps) if len(stamps) > 1 else np.array([stamps[0] - t0])
        s = float(np.median(gaps))
        setup.append(max(0.0, stamps[0] - t0 - s))
        step.append(s)
        finish.append(t_end - stamps[-1])
        q1, q3 = np.quantile(gaps, [0.25, 0.75])
        spreads.append((q1 / s, q3 / s))
    chunk = ChunkTimeModel(Linear.fit(sizes, setup), Linear.fit(sizes, step), Linear.fit(sizes, finish),
                           (min(x[0] for x in spreads), max(x[1] for x in spreads)), workers=1)
    forward = chunk.finish.per_model / max(1, data.n_train + data.n_test)
    alone, startup = chunk, 0.0
    if workers > 1:
        chunk, startup = _concurrent(recipe, data, ensemble_size, fraction, device, workers, chunk)
    return TrainingCalibration(chunk, alone, startup, peak, weights_bytes, forward, time.perf_counter() - start)


def _weights_size(store) -> int:
    files = sorted((store.path / "weights").glob("*.pt"))
    return files[0].stat().st_size if files else 0


def _concurrent_worker(recipe_dict, data, ensemble_size, fraction, device, threads, folder):
    """One worker of the contention run: start-up is measured by the caller, the chunk here."""
    torch.set_num_threads(threads)
    from datamodels.store import Store
    from datamodels.training.recipe import recipe_from_dict
    from datamodels.training.runner import train_chunk

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


def calibrate_trak(store_path, data, proj_dim: int, batch_size: int, device: str) -> AttributionCalibration:
    """Per-example gradient, kernel and scoring costs of TRAK for a trained calibration model."""
    from datamodels.attribution.gradients import featurize, n_params
    from datamodels.attribution.projectors import make_projector
    from datamodels.attribution.trak import kernel_features
    from datamodels.store import Store

    start = time.perf_counter()
    store = Store.open(store_path, data)
    with timed() as t_load:
        model = store.load_model(0, device)
    k = proj_dim
    proj = make_projector("auto", n_params(model), k, 0, torch.device(device), None)
    n = min(data.n_train, CAL_TRAK_EXAMPLES * batch_size)
    base = rss_bytes()
    featurize(model, data.x_train[:min(n, batch_size)], data.y_train[:min(n, batch_size)], proj, 0,
              batch_size=batch_size)  # warm-up: projector caches, vmap compilation
    with PeakSampler() as sampler, timed() as t_feat:
        featurize(model, data.x_train[:n], data.y_train[:n], proj, 0, batch_size=batch_size)
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
