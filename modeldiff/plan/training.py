"""Training's cost: a calibration chunk of each of the store's chunk sizes through the real trainer, scaled.

A chunk of ``E`` models, ``S`` steps per model (full-batch equivalents), costs ``fixed(E) + S/s · steps(E)``
where a calibration chunk of the same ``E`` ran ``s`` steps: ``steps`` = mean step time x step callbacks,
``fixed`` = the rest (set-up, evaluation, commit). Nothing is fitted across sizes. One-model-at-a-time
trainers (loop, ``train_fn``) are calibrated on ``CAL_LOOP_MODELS`` models and scaled in proportion. Peak
memory: the process before training plus the largest growth during a chunk.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from modeldiff.plan.measure import PeakSampler, release_memory, rss_bytes, stage

CAL_STEPS = 10  # optimizer steps per model in a calibration chunk (plus one warm-up step)
CAL_LOOP_MODELS = 2  # models of the calibration chunk of a trainer that trains them one at a time
_VALUE_ONLY = {"name", "epochs", "seed", "init"}  # recipe keys whose values change no step's cost
_VALUE_ONLY_OPTIM = {"lr", "weight_decay", "schedule", "warmup_fraction", "label_smoothing", "betas", "eps"}


@dataclass
class ChunkCost:
    """One calibration chunk of ``models`` models: ``fixed`` and ``steps`` seconds at ``cal_steps`` steps each."""

    models: int
    fixed: float
    steps: float
    cal_steps: float
    spread: tuple[float, float]  # (low, high) multipliers of the step time: its quartiles over the mean
    growth: int  # peak RSS growth during the chunk, bytes

    def seconds(self, e: int, steps: float, which: int = 1) -> float:
        """``e`` models, ``steps`` per model; ``which`` 0 / 1 / 2: low / mid / high step time."""
        per_step = self.steps / self.cal_steps * (self.spread[0], 1.0, self.spread[1])[which]
        return e / self.models * (self.fixed + steps * per_step)


@dataclass
class TrainingCost:
    chunks: dict  # chunk size -> ChunkCost (one entry, scaled, for one-model-at-a-time trainers)
    base_rss: int  # bytes of the process before training
    weights_bytes: int  # one model's weights file


def timing_key(recipe) -> str:
    """What in ``recipe`` changes what training costs (recipes with equal keys are calibrated once)."""
    d = {k: v for k, v in recipe.to_dict().items() if k not in _VALUE_ONLY}
    optim = {k: v for k, v in (d.get("optim") or {}).items() if k not in _VALUE_ONLY_OPTIM}
    if "momentum" in optim:  # a momentum buffer or none; its value costs nothing
        optim["momentum"] = bool(optim["momentum"])
    return json.dumps({**d, "optim": optim}, sort_keys=True, default=str)


def chunk_sizes(n_models: int, ensemble_size: int) -> list[int]:
    """Sizes of the chunks the runner trains a store of ``n_models`` in."""
    from datamodels.runs.runner import plan_chunks

    return [len(c) for c in plan_chunks(np.arange(n_models), ensemble_size, n_models)]


def steps_per_model(n_train: int, fraction: float, batch_size: int, epochs: int) -> float:
    """Steps of one model in full-batch equivalents, ``epochs · round(α · n_train) / B`` (a last partial batch
    counts as its share of a step: its time is dominated by its examples)."""
    return epochs * max(1, round(fraction * n_train)) / batch_size


def calibrate_training(recipe, data, sizes: list[int], device: str, folder: str, show: bool = True) -> TrainingCost:
    """Train a calibration chunk of each size in ``sizes`` (``CAL_STEPS + 1`` steps per model) into a store at
    ``folder`` (its weights serve the evaluation and diagnostics calibrations)."""
    from datamodels.base.progress import step_bar
    from datamodels.runs.runner import train_chunk
    from datamodels.store import Store
    from datamodels.training.backends import check_recipe

    sizes = sorted(set(sizes), reverse=True)
    if check_recipe(recipe, data, dry=False) not in ("ensemble", "vmap"):  # one model at a time
        sizes = [min(min(sizes), CAL_LOOP_MODELS)]
    fraction = min(1.0, (CAL_STEPS + 1) * recipe.batch_size / data.n_train)
    cal_steps = steps_per_model(data.n_train, fraction, recipe.batch_size, 1)
    store = Store.create_or_resume(folder, recipe.replace(epochs=1), data, sum(sizes), fraction, seed=0,
                                   ensemble_size=max(sizes))
    chunks, base, first = {}, None, 0
    for k, e in enumerate(sizes, 1):
        release_memory()
        rss0 = rss_bytes()
        base = rss0 if base is None else min(base, rss0)
        stamps: list[float] = []
        with step_bar(f"  calibration chunk {k} of {len(sizes)} ({e} models, {recipe.name})", disable=not show) as bar:
            def step(n, stamps=stamps, bar=bar):
                stamps.append(time.perf_counter())
                bar.update(n)

            t0 = time.perf_counter()
            with PeakSampler() as peak:
                train_chunk(str(store.path), list(range(first, first + e)), device, data, progress=step)
            wall = time.perf_counter() - t0
        gaps = np.diff(stamps) if len(stamps) > 1 else np.array([wall])
        mean = float(gaps.mean())
        q1, q3 = np.quantile(gaps, [0.25, 0.75])
        steps = mean * max(1, len(stamps))  # the first step's gap is counted as a mean one
        chunks[e] = ChunkCost(e, max(0.0, wall - steps), min(steps, wall), cal_steps,
                              (min(1.0, q1 / mean), max(1.0, q3 / mean)), max(0, peak.peak - rss0))
        first += e
    weights = sorted((store.path / "weights").glob("*.pt"))
    return TrainingCost(chunks, base, weights[0].stat().st_size if weights else 0)


def store_bytes(shape, weights_bytes: int) -> int:
    """A store's disk: its preallocated arrays (the store's own ``array_spec``) and the weights files."""
    from datamodels.store.store import array_spec

    spec = array_spec(shape.models, shape.n_train, shape.n_test, shape.n_classes, train_margins=True)
    return sum(int(np.prod(a["shape"])) * np.dtype(a["dtype"]).itemsize for a in spec.values()) \
        + shape.models * weights_bytes


def predict_training(cost: TrainingCost, recipe, shape) -> dict:
    """Seconds (interval: the quartiles of the step times), peak memory and disk of training a store."""
    steps = steps_per_model(shape.n_train, shape.subset_fraction, recipe.batch_size, recipe.train_epochs)  # until: upper bound
    chunks = [(e, cost.chunks.get(e) or next(iter(cost.chunks.values())))
              for e in chunk_sizes(shape.models, shape.ensemble_size)]
    low, mid, high = (sum(c.seconds(e, steps, w) for e, c in chunks) for w in (0, 1, 2))
    peak = cost.base_rss + max((c.growth for _, c in chunks), default=0)
    return stage(mid, peak, store_bytes(shape, cost.weights_bytes), low, high)
