"""Null calibration of the cross-fitted estimator (:class:`modeldiff.diff.crossfit.CrossFitModelDiff`).

Why: the cross-fitted components rank *signal* variance of the residual A−B, so the statistic to
calibrate is that signal, as the cross-fitted estimator measures it, not the classic A/B variance
ratio. One cross-fit already needs two disjoint halves of each algorithm's models; a cross-fit of
one algorithm against itself needs four disjoint parts of its models.

Method (the classic rule of :mod:`modeldiff.diff.null`, with quarters in place of halves):

1. Split each algorithm's attribution models into four disjoint quarters, ``n_splits`` times at
   random (:func:`split_parts`), and attribute each quarter: ``A₁..A₄``, ``B₁..B₄`` (TRAK: unions
   of :class:`~modeldiff.diff.null.TrakGroups`, no new gradients; other methods attribute each
   quarter anew).
2. **Null** cross-fits, per split: ``(A₁, A₂ | A₃, A₄)``, ``(A₃, A₄ | A₁, A₂)`` and the same for B —
   one algorithm against itself. **Observed** cross-fits, per split: ``(A₁, A₂ | B₁, B₂)`` and
   ``(A₃, A₄ | B₃, B₄)`` for A−B (B−A swapped). Null and observed both use quarter-size parts.
3. Per rank ``j`` the statistic is the component's *signal*: ``min(θ_j, v_j^X − v_j^Y)``, the
   smaller of the cross-fit's residual signal variance ``θ_j`` (``explained_variance_``) and its
   signal gap, the cross-fitted variance under the first algorithm minus under the second
   (``explained_variance_a_ − explained_variance_b_``). ``θ`` alone does not say which algorithm
   holds the signal (the B−A residual holds A's feature too); the gap alone moves with the row
   normalisation when one algorithm's attributions are noisier. The median over the observed fits
   is standardised by the null's mean and sd at rank ``j`` and compared with the ``level`` quantile
   of the null's maximum over ranks (max-T), exactly as the classic rule; the reported threshold
   ``null_signal_q95`` is ``μ_j + c σ_j``.

Because estimation noise does not enter the cross-fit's expectation, the selection of noisy
directions that inflates the classic null does not happen here; the row normalisation still
depends on the noise (a row's norm includes it), to first order only.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from modeldiff.diff.null import DIRECTIONS, NullCalibration, _decide

PARTS = 4  # disjoint parts of each algorithm's models per split: two per side of a cross-fit


def split_parts(n_units: int, n_splits: int, seed: int = 0, n_parts: int = PARTS) -> list[tuple[np.ndarray, ...]]:
    """``n_splits`` random splits of ``range(n_units)`` into ``n_parts`` disjoint parts (sorted index
    arrays, sizes differing by at most one)."""
    if n_units < n_parts:
        raise ValueError(f"the cross-fitted null needs at least {n_parts} units (models or model groups) per "
                         f"algorithm to split into {n_parts} parts, got {n_units}")
    rng = np.random.default_rng(seed)
    return [tuple(np.sort(p) for p in np.array_split(rng.permutation(n_units), n_parts)) for _ in range(n_splits)]


def trak_quarters(groups_a, groups_b, n_splits: int = 8, seed: int = 0) -> Iterator[tuple]:
    """``(A parts, B parts)`` (four ``[n_test, n_train]`` matrices each) per random split of each
    algorithm's :class:`~modeldiff.diff.null.TrakGroups` into quarters."""
    sa = split_parts(len(groups_a.sizes), n_splits, seed)
    sb = split_parts(len(groups_b.sizes), n_splits, seed + 1)
    for pa, pb in zip(sa, sb):
        yield tuple(groups_a.scores(p) for p in pa), tuple(groups_b.scores(p) for p in pb)


def fitted_quarters(attribute: Callable, store_a, store_b, rows_a, rows_b, n_splits: int = 4,
                    seed: int = 0) -> Iterator[tuple]:
    """``(A parts, B parts)`` per split, attributing each quarter anew: ``attribute(store, rows)``
    returns the ``[n_test, n_train]`` matrix of the models ``rows`` of ``store``."""
    ra, rb = np.asarray(rows_a), np.asarray(rows_b)
    sa = split_parts(len(ra), n_splits, seed)
    sb = split_parts(len(rb), n_splits, seed + 1)
    for pa, pb in zip(sa, sb):
        yield tuple(attribute(store_a, ra[p]) for p in pa), tuple(attribute(store_b, rb[p]) for p in pb)


def mean_quarters(per_unit_a: np.ndarray, per_unit_b: np.ndarray, n_splits: int = 8, seed: int = 0) -> Iterator[tuple]:
    """Parts as means of per-unit matrices ``[n_units, n_test, n_train]`` (e.g. simulations)."""
    sa = split_parts(len(per_unit_a), n_splits, seed)
    sb = split_parts(len(per_unit_b), n_splits, seed + 1)
    for pa, pb in zip(sa, sb):
        yield tuple(per_unit_a[p].mean(0) for p in pa), tuple(per_unit_b[p].mean(0) for p in pb)


def calibrate_crossfit(quarters: Iterable[tuple], n_components: int, full_fits: dict | None = None, *,
                       level: float = 0.95, random_state: int = 0) -> NullCalibration:
    """Null-calibrate cross-fitted components (rule in the module docstring).

    Args:
        quarters: per split ``(A parts, B parts)``, four ``[n_test, n_train]`` matrices each, from
            disjoint quarters of each algorithm's models.
        n_components: components per cross-fit (rank j is compared with rank j).
        full_fits: ``{"a_minus_b": CrossFitModelDiff, "b_minus_a": ...}`` fitted on the halves,
            whose cross-fitted variances are reported beside the test (optional).
    """
    from modeldiff.diff.crossfit import CrossFitModelDiff

    def theta(x1, x2, y1, y2):  # each component's signal: min(residual signal variance, signal gap X − Y)
        fit = CrossFitModelDiff(n_components, random_state=random_state).fit([(x1, x2, y1, y2)])
        return np.minimum(fit.explained_variance_, fit.explained_variance_a_ - fit.explained_variance_b_)

    null, obs = [], {d: [] for d in DIRECTIONS}
    n_splits = 0
    for (a1, a2, a3, a4), (b1, b2, b3, b4) in quarters:
        n_splits += 1
        null += [theta(a1, a2, a3, a4), theta(a3, a4, a1, a2), theta(b1, b2, b3, b4), theta(b3, b4, b1, b2)]
        obs["a_minus_b"] += [theta(a1, a2, b1, b2), theta(a3, a4, b3, b4)]
        obs["b_minus_a"] += [theta(b1, b2, a1, a2), theta(b3, b4, a3, a4)]
    if n_splits < 2:
        raise ValueError("null calibration needs at least 2 splits")
    return _decide(np.asarray(null), {d: np.asarray(v) for d, v in obs.items()}, n_splits, level, full_fits,
                   crossfit=True)


def regression_attribute(device="cpu", **params) -> Callable:
    """``attribute(store, rows)`` for :func:`fitted_quarters`: datamodels regression on those models."""
    from datamodels.attribution.regression import DatamodelsRegression

    def attribute(store, rows):
        return DatamodelsRegression(device=device, **params).fit(store.masks[rows], store.test_margins[rows]).coef_

    return attribute


def method_attribute(method, device="cpu", params: dict | None = None) -> Callable:
    """``attribute(store, rows)`` for :func:`fitted_quarters`: any
    :class:`~datamodels.attribution.methods.AttributionMethod` on those models."""
    import torch

    from datamodels.attribution.methods import run_method
    from datamodels.modelset import model_dtype

    def attribute(store, rows):
        return run_method(method, store, rows, device=torch.device(device), dtype=model_dtype(store), progress=None,
                          params=dict(params or {}), write=None)[0]

    return attribute
