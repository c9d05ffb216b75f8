"""LDS as a function of the number of averaged models, from variance components (TRAK-style estimators).

An estimator that averages per-model attributions (TRAK) predicts, for a held-out subset ``u`` and a
test example ``t``, ``p̄_n(u) = mean of n per-model predictions p_m(u)`` with
``p_m(u) = Σ_{j ∈ S_u} s_m[t, j]``. The per-model predictions are i.i.d. around their mean ``μ(u)``,
so with ``y(u)`` the margins measured on held-out models::

    cov(p̄_n, y) = cov(μ, y)                       (does not depend on n)
    var(p̄_n)    = var(μ) + σ² / n                  (σ²: the between-model variance)
    r_t(n)      = cov(μ, y) / sqrt((var(μ) + σ²/n) · var(y))

All three are estimated per test example from a pilot's ``M`` models (``var(μ)`` unbiasedly, as
``var(p̄_M) − σ̂²/M``, floored at ``cov²/var(y)`` so that ``|r| ≤ 1``); Pearson's ``r`` is turned into
Spearman's with the Gaussian relation ``ρ = (6/π) asin(r/2)`` (the LDS is a Spearman correlation),
and ``LDS(n)`` is the mean over test examples. Unlike a curve fitted to a few noisy LDS values, this
sees each test example's own signal-to-noise ratio, so it also predicts where the curve bends.
Intervals: a delete-one jackknife over the pilot's models (a bootstrap with replacement would
duplicate models, which biases the between-model variance and the curve downwards).
Approximation (stated): TRAK's out-to-loss weights are taken as their all-model average for every
``n``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from datamodels.base.errors import UserError


@dataclass
class VarianceComponents:
    """Per test example: ``cov[T]`` = cov(μ, y), ``var_mu[T]``, ``var_noise[T]`` = σ², ``var_y[T]``."""

    cov: np.ndarray
    var_mu: np.ndarray
    var_noise: np.ndarray
    var_y: np.ndarray

    def lds(self, n) -> float:
        """Predicted LDS with ``n`` averaged models."""
        den = np.sqrt(np.maximum((self.var_mu + self.var_noise / n) * self.var_y, 1e-300))
        r = np.clip(np.where(self.var_y > 0, self.cov / den, 0.0), -1, 1)
        return float(np.mean(6 / np.pi * np.arcsin(r / 2)))


def components(preds: np.ndarray, margins: np.ndarray) -> VarianceComponents:
    """``preds[M, U, T]`` per-model predictions on ``U`` held-out subsets, ``margins[U, T]``."""
    m, u, _ = preds.shape
    if m < 2 or u < 3:
        raise UserError(f"variance components need at least 2 pilot models and 3 held-out subsets, got {m} and {u}")
    pc = preds - preds.mean(1, keepdims=True)
    pbar = pc.mean(0)
    y = margins - margins.mean(0, keepdims=True)
    cov = (pbar * y).sum(0) / (u - 1)
    var_y = (y * y).sum(0) / (u - 1)
    var_bar = (pbar * pbar).sum(0) / (u - 1)
    var_noise = ((pc - pbar[None]) ** 2).sum((0, 1)) / ((m - 1) * (u - 1))
    floor = np.where(var_y > 0, cov ** 2 / np.where(var_y > 0, var_y, 1), 0.0)
    var_mu = np.maximum(var_bar - var_noise / m, floor)
    return VarianceComponents(cov, var_mu, var_noise, var_y)


@dataclass
class VarianceCurve:
    """``LDS(n)`` from a pilot, with its delete-one jackknife replicates (one per pilot model)."""

    point: VarianceComponents
    replicates: list
    pilot_models: int

    def _se(self, values: np.ndarray) -> float:
        m = len(values)
        return float(np.sqrt((m - 1) / m * ((values - values.mean()) ** 2).sum()))

    def predict(self, n, level: float = 0.95) -> tuple[float, float, float]:
        """``(LDS, low, high)`` with ``n`` models; the interval is normal with the jackknife's standard error."""
        mid = self.point.lds(n)
        z = float(norm.ppf((1 + level) / 2))
        se = self._se(np.array([c.lds(n) for c in self.replicates]))
        return mid, mid - z * se, mid + z * se

    def models_for(self, target: float, level: float = 0.95, limit: int = 1 << 20) -> tuple[int, int, int]:
        """``(n, n_low, n_high)`` averaged models needed for LDS ``target`` (UserError when unreachable)."""
        ceiling = self.point.lds(float("inf"))
        if not ceiling > target:
            raise UserError(f"target LDS {target:g} is above what this estimator can reach with any number of "
                            f"models (ceiling {ceiling:.3f} from the pilot): lower --target-lds or change the "
                            f"estimator's settings (e.g. a larger proj_dim)")
        n = _smallest_n(self.point, target, limit)
        _, lo_n, hi_n = self.predict(n, level)  # the LDS at n is uncertain by ± z·se: models for its ends
        spread = max(hi_n - lo_n, 0.0) / 2
        fewest = _smallest_n(self.point, target - spread, limit)
        most = _smallest_n(self.point, target + spread, limit) if target + spread < self.point.lds(limit) else -1
        return n, fewest, most

    def to_dict(self) -> dict:
        return {"model": "variance components", "pilot_models": self.pilot_models,
                "ceiling": self.point.lds(float("inf"))}


def _smallest_n(c: VarianceComponents, target: float, limit: int) -> int:
    if c.lds(limit) < target:
        return limit
    lo, hi = 1, limit
    while lo < hi:  # LDS(n) increases with n
        mid = (lo + hi) // 2
        if c.lds(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def fit_variance_curve(preds: np.ndarray, margins: np.ndarray) -> VarianceCurve:
    """Variance components of ``preds[M, U, T]`` (``M >= 3``) and their delete-one jackknife replicates."""
    m = preds.shape[0]
    if m < 3:
        raise UserError(f"the learning curve needs at least 3 pilot models, got {m}: train a larger pilot")
    reps = [components(np.delete(preds, i, axis=0), margins) for i in range(m)]
    return VarianceCurve(components(preds, margins), reps, m)
