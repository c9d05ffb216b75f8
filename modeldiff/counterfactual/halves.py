"""The two halves the search works on: each algorithm's models split into discovery and
confirmation halves, the test inputs split into two disjoint halves, and the predictors that load
a store's models once (:mod:`modeldiff.counterfactual.search`)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from modeldiff.counterfactual.screen import SCREEN_MODELS


@dataclass
class Halves:
    """Predictors of each algorithm's two disjoint model halves, and the two input halves.

    ``predict_*``: callables ``x[n, C, H, W] -> probabilities [n_models, n, K]``;
    ``x_*``: inputs ``[n, C, H, W]`` with labels ``y_*`` ``[n]``; ``screen``: optional predictors
    ``(a, b)`` over a few models of each discovery half, for the screening pass
    (:mod:`modeldiff.counterfactual.screen`).
    """
    predict_a: tuple          # (discovery, confirmation)
    predict_b: tuple
    x: tuple                  # (discovery inputs, confirmation inputs)
    y: tuple
    screen: tuple | None = None


def model_halves(rows: Sequence[int]) -> tuple[list[int], list[int]]:
    """Discovery = first half of the rows, confirmation = the second half."""
    rows = [int(r) for r in rows]
    if len(rows) < 4:
        from datamodels.base.errors import UserError
        raise UserError(f"the search needs at least 4 models with saved weights per algorithm, got {len(rows)}")
    return rows[: len(rows) // 2], rows[len(rows) // 2:]


def input_halves(y: np.ndarray, n_per_half: int, seed: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of test rows (from ``rows``, default all), at most ``n_per_half`` each."""
    rows = np.arange(len(y)) if rows is None else np.asarray(rows)
    perm = np.random.default_rng(seed).permutation(rows)
    half = min(n_per_half, len(perm) // 2)
    return np.sort(perm[:half]), np.sort(perm[half:2 * half])


class LoadedModels:
    """Predictor over some of a store's models, loaded once (the search calls it hundreds of
    times): ``x[n, C, H, W] -> probabilities [n_models, n, K]`` (softmax in float64)."""

    def __init__(self, store, indices, device="cpu", batch_size: int = 512, per_pass: int = 16):
        self.nets = [store.load_ensemble(list(indices[i:i + per_pass]), device)
                     for i in range(0, len(indices), per_pass)]
        self.device, self.batch_size, self.indices = device, batch_size, list(indices)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from datamodels.training.ensemble_trainer import predict_logits

        outs = []
        for net in self.nets:
            dtype = next(net.parameters()).dtype
            outs.append(predict_logits(net, torch.as_tensor(x), self.device, dtype, self.batch_size).double()
                        .softmax(-1).cpu())
        return torch.cat(outs, 0)


def store_halves(store_a, store_b, data, *, n_inputs: int = 400, seed: int = 0, device="cpu", rows=None,
                 max_models: int | None = None, screen_models: int = SCREEN_MODELS) -> Halves:
    """:class:`Halves` from two stores: model halves by :func:`model_halves` (at most
    ``max_models`` each), inputs by :func:`input_halves` (from test ``rows``, default all); the
    screening predictors over the first ``screen_models`` discovery models (0: no screening, and
    none when the discovery half is not larger)."""
    preds, screen = [], []
    for store in (store_a, store_b):
        usable = [int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i))]
        d, c = model_halves(usable)
        d, c = (d[:max_models], c[:max_models]) if max_models else (d, c)
        preds.append((LoadedModels(store, d, device), LoadedModels(store, c, device)))
        if screen_models and len(d) > screen_models:
            screen.append(LoadedModels(store, d[:screen_models], device))
    y = data.y_test.numpy()
    i1, i2 = input_halves(y, n_inputs, seed, rows)
    x = (data.x_test[torch.from_numpy(i1)], data.x_test[torch.from_numpy(i2)])
    return Halves(preds[0], preds[1], x, (y[i1], y[i2]), tuple(screen) if len(screen) == 2 else None)
