"""Learning curve from a pilot store: how the LDS grows with the number of models.

TRAK: each of the first ``pool`` models is featurised once; its per-model predictions on the
pilot's *other* models' subsets give the variance components of
:mod:`modeldiff.plan.variance_curve` (signal, between-model noise and their covariance with the
measured margins, per test example), hence ``LDS(n)`` for any ``n``. Datamodels (not an average
of per-model estimates): the regression is refitted on random subsets of the pool's models and a
saturating curve (:mod:`modeldiff.plan.learning_curve`) is fitted to the LDS values. The LDS is
measured against the held-out models (their masks are independent draws), on a fixed random
sample of at most ``max_test`` test examples (an unbiased estimate of the mean over all of them).
The same featurised TRAK pilot also gives the precision curve of :mod:`modeldiff.plan.precision`
(``--target-precision``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from datamodels.attribution.lds import average_over_seeds, lds
from datamodels.base.errors import UserError
from modeldiff.plan.learning_curve import LearningCurve, fit_learning_curve
from modeldiff.plan.precision import PrecisionCurve, fit_precision_curve
from modeldiff.plan.variance_curve import VarianceCurve, fit_variance_curve


def _counts(pool: int) -> list[int]:
    counts, n = [], 1
    while n < pool:
        counts.append(n)
        n *= 2
    return counts + [pool]


@dataclass
class TrakPilot:
    """A TRAK pilot featurised once: per-model scores ``per_model[M, T, n_train]`` (before the
    out-to-loss weights), weights ``q[M, n_train]``, and the held-out models' ``masks[U, n_train]``
    and ``margins[U, T]`` on the same ``T`` sampled test rows."""

    per_model: np.ndarray
    q: np.ndarray
    masks: np.ndarray
    margins: np.ndarray

    def lds_curve(self) -> VarianceCurve:
        return trak_variance_curve(self.per_model, self.q, self.masks, self.margins)

    def precision_curve(self) -> PrecisionCurve:
        """:mod:`modeldiff.plan.precision`: halves scored as TRAK scores them (mean scores x mean ``q``)."""
        return fit_precision_curve(self.per_model, self.q)


def pilot_learning_curve(store, method: str, *, pool: int | None = None, proj_dim: int = 1024,
                         batch_size: int = 256, lambdas: int = 12, repeats: int = 4, max_test: int = 300,
                         device: str = "cpu", seed: int = 0) -> LearningCurve | VarianceCurve:
    """Fit LDS(n models) on ``store`` (a Store) for ``method`` (``trak`` or ``datamodels``)."""
    if method == "trak":
        return trak_pilot(store, pool=pool, proj_dim=proj_dim, batch_size=batch_size, max_test=max_test,
                          device=device, seed=seed).lds_curve()
    return _split_pilot(store, method, pool, lambdas, repeats, max_test, device, seed)


def trak_pilot(store, *, pool: int | None = None, proj_dim: int = 1024, batch_size: int = 256,
               max_test: int = 300, device: str = "cpu", seed: int = 0) -> TrakPilot:
    """Featurise the first ``pool`` models with weights (default a third); the rest are held out."""
    return _split_pilot(store, "trak", pool, 0, 0, max_test, device, seed, proj_dim, batch_size)


def _split_pilot(store, method, pool, lambdas, repeats, max_test, device, seed, proj_dim=1024, batch_size=256):
    valid = np.asarray(store.valid_indices(warn=False))
    if method == "trak":
        with_weights = np.array([i for i in valid if store.has_weights(int(i))], dtype=np.int64)
        pool = pool or max(2, len(with_weights) // 3)
        attributed = with_weights[:pool]
    else:
        pool = pool or int(0.8 * len(valid))
        attributed = valid[:pool]
    held_out = np.setdiff1d(valid, attributed)
    if len(attributed) < 2 or len(np.unique(store.masks[held_out], axis=0)) < 3:
        raise UserError(f"pilot store {store.path} has {len(valid)} usable models: a learning curve needs at least 2 "
                        f"attributed and 3 held-out models; train a larger pilot (e.g. --models 32)")
    rng = np.random.default_rng(seed)
    data = store.load_dataset()
    rows = np.sort(rng.choice(data.n_test, size=min(max_test, data.n_test), replace=False))
    masks_ev = np.asarray(store.masks[held_out])
    margins_ev = np.asarray(store.test_margins[held_out])[:, rows]
    if method == "trak":
        per_model, q = trak_per_model(store, attributed, data, rows, proj_dim, batch_size, device)
        return TrakPilot(per_model, q, masks_ev, margins_ev)
    subset_scores = _datamodels_subsets(store, attributed, rows, lambdas, device)
    ns, values = [], []
    counts = [n for n in _counts(len(attributed)) if n >= 10]  # a lasso needs >= 10 models
    if len(counts) < 2:
        raise UserError(f"pilot store {store.path}: datamodels need at least 20 attributed models for a learning "
                        f"curve, it has {len(attributed)}; train a larger pilot")
    for n in tqdm(counts, desc="pilot learning curve", leave=False):
        for _ in range(1 if n == len(attributed) else repeats):
            pick = np.sort(rng.choice(len(attributed), size=n, replace=False))
            ns.append(n)
            values.append(lds(subset_scores(pick), masks_ev, margins_ev, n_boot=10).mean)
    return fit_learning_curve(ns, values, seed=seed)


def trak_variance_curve(per_model: np.ndarray, q: np.ndarray, masks: np.ndarray, margins: np.ndarray) -> VarianceCurve:
    """The curve from per-model scores ``per_model[M, T, n_train]`` (before the out-to-loss weights),
    weights ``q[M, n_train]``, held-out ``masks[U, n_train]`` and ``margins[U, T]``."""
    uniq, mean_margins = average_over_seeds(masks, margins)
    weighted = per_model * q.mean(0)[None, None, :]
    preds = np.einsum("un,mtn->mut", uniq.astype(np.float64), weighted)
    return fit_variance_curve(preds, mean_margins)


def trak_per_model(store, attributed, data, rows, proj_dim, batch_size, device) -> tuple[np.ndarray, np.ndarray]:
    """Per-model TRAK scores ``[M, len(rows), n_train]`` (without Q) and out-to-loss weights ``[M, n_train]``."""
    from datamodels.attribution.trak import TRAK

    est = TRAK(device=device, progress=False, proj_dim=proj_dim, batch_size=batch_size)
    est.proj_dim_ = proj_dim
    x_te, y_te = data.x_test[torch.as_tensor(rows)], data.y_test[torch.as_tensor(rows)]
    per_model, qs = [], []
    for i in tqdm(attributed, desc="pilot: featurising", leave=False):
        feats, phi_te, q = est._per_model(store.load_model(int(i), device), int(i), data.x_train, data.y_train,
                                          x_te, y_te)
        per_model.append((phi_te @ feats.T).double().cpu().numpy())
        qs.append(q.double().cpu().numpy())
    return np.stack(per_model), np.stack(qs)


def _datamodels_subsets(store, attributed, rows, lambdas, device):
    from datamodels.attribution.regression import DatamodelsRegression

    masks = np.asarray(store.masks[attributed])
    margins = np.asarray(store.test_margins[attributed])[:, rows]

    def scores(pick):
        fit = DatamodelsRegression(device=torch.device(device), progress=False, n_lambdas=lambdas)
        return fit.fit(masks[pick], margins[pick]).coef_

    return scores
