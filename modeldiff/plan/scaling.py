"""Training time of one chunk (an ensemble of ``E`` models trained together) and of a whole store.

A chunk of ``E`` models with ``S`` optimizer steps each costs::

    T_chunk(E, S) = setup(E) + S · step(E) + finish(E)

``setup`` builds and initialises the ensemble and moves data, ``step`` is one optimizer step of
all ``E`` models, ``finish`` evaluates them on the test and training sets and commits their rows.
Each term is linear in ``E`` (a fixed part plus a per-model part): fitted on calibration chunks
of two ensemble sizes, so the per-step overhead that ensembles amortise is *measured*.

``W`` workers (processes with ``cores / W`` threads each) run chunks in parallel; the store
finishes after ``startup(W) + ceil(n_chunks / W)`` chunk times (the makespan of equal chunks),
where the chunk time under ``W`` concurrent workers is measured with ``W`` workers running at
once (Scavenger's parallel efficiency, ``η(W) = T_chunk(1) · W / (T_chunk(W) · W)``), not assumed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Linear:
    """``value(E) = fixed + per_model · E`` (seconds)."""

    fixed: float
    per_model: float

    def __call__(self, e: float) -> float:
        return max(0.0, self.fixed + self.per_model * e)

    @classmethod
    def fit(cls, sizes, values) -> "Linear":
        """Least squares through the points ``(sizes[i], values[i])``; one point: all per-model."""
        sizes = np.asarray(sizes, dtype=float)
        values = np.asarray(values, dtype=float)
        if sizes.size == 0:
            raise ValueError("no calibration points")
        if np.unique(sizes).size == 1:
            return cls(0.0, float(values.mean() / sizes[0]))
        slope, intercept = np.polyfit(sizes, values, 1)
        if slope < 0:  # noise: a bigger ensemble cannot be cheaper in total
            return cls(float(values.mean()), 0.0)
        if intercept < 0:
            return cls(0.0, float((values / sizes).mean()))
        return cls(float(intercept), float(slope))


@dataclass(frozen=True)
class ChunkTimeModel:
    """``T_chunk(E, S)`` for one recipe on one machine configuration (workers, threads)."""

    setup: Linear
    step: Linear
    finish: Linear
    step_spread: tuple[float, float] = (1.0, 1.0)  # (low, high) multipliers of step time (quartiles)
    workers: int = 1

    def seconds(self, ensemble: int, steps: float, which: str = "mid") -> float:
        scale = {"mid": 1.0, "low": self.step_spread[0], "high": self.step_spread[1]}[which]
        return self.setup(ensemble) + steps * self.step(ensemble) * scale + self.finish(ensemble)


def chunk_sizes(n_models: int, ensemble_size: int) -> list[int]:
    """Sizes of the chunks a store of ``n_models`` is split into (consecutive, at most ``ensemble_size``)."""
    if n_models <= 0:
        return []
    full, rest = divmod(n_models, ensemble_size)
    return [ensemble_size] * full + ([rest] if rest else [])


def store_seconds(model: ChunkTimeModel, n_models: int, ensemble_size: int, steps_per_model: float,
                  startup: float = 0.0, which: str = "mid") -> float:
    """Wall time to fill a store: ``startup`` + the makespan of its chunks over ``model.workers``.

    Chunks are handed out in order to the first free worker (the local launcher's pool and
    the Ray launcher both do); the makespan is computed by simulating that greedy schedule.
    """
    times = [model.seconds(e, steps_per_model, which) for e in chunk_sizes(n_models, ensemble_size)]
    free = [0.0] * max(1, model.workers)
    for t in times:
        k = int(np.argmin(free))
        free[k] += t
    return startup + max(free)


def steps_per_model(n_train: int, subset_fraction: float, batch_size: int, epochs: int) -> float:
    """Optimizer steps of one model in full-batch equivalents: ``epochs · round(α · n_train) / B``.

    An epoch has ``ceil(m / B)`` steps, the last one on ``m mod B`` examples; it is counted as that
    share of a full step (a step's time is dominated by its examples at the ensemble sizes used:
    e.g. the low-noise demo recipe, batch 128 on 718 examples, has 5 full steps and one of 78 per
    epoch: 5.61 step-equivalents, where counting 6 full steps would add 7 % to its training time).
    """
    m = max(1, round(subset_fraction * n_train))
    return epochs * m / batch_size
