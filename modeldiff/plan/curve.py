"""The one statistical model: an average of ``n`` per-model estimates (TRAK) is a fixed signal plus between-model
noise whose variance shrinks as ``1/n``.

Per test example, from a pilot's per-model values ``p[m, u, t]`` over units ``u`` (each model's values centred
over the units): ``var_μ`` (signal over the units, ``var(p̄_M) − σ̂²/M``, floored) and ``σ²`` (between models).
**LDS** — units are held-out subsets with measured margins ``y``: ``r_t(n) = cov(μ, y) / sqrt((var_μ + σ²/n)
var y)``, as Spearman's ``(6/π) asin(r/2)``, mean over ``t``. **Precision** — units are training examples:
the correlation of ``n`` models' scores with infinitely many models', ``sqrt(var_μ / (var_μ + σ²/n))``, mean
over ``t``. Intervals: delete-one jackknife over the pilot's models (resampling with replacement would duplicate
models and bias ``σ²``). Approximation (stated): TRAK's out-to-loss weights as their all-model average.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from datamodels.base.errors import UserError

LIMIT = 1 << 20  # the largest model count considered


@dataclass
class Components:
    """Per test example: ``cov`` = cov(μ, y), ``var_mu``, ``var_noise`` = σ², ``var_y`` (None for precision)."""

    cov: np.ndarray | None
    var_mu: np.ndarray
    var_noise: np.ndarray
    var_y: np.ndarray | None

    def value(self, n) -> float:
        """LDS (with margins) or precision (without) of an average of ``n`` models."""
        total = np.maximum(self.var_mu + self.var_noise / n, 1e-300)
        if self.var_y is None:
            return float(np.mean(np.sqrt(self.var_mu / total)))
        r = np.where(self.var_y > 0, self.cov / np.sqrt(total * np.maximum(self.var_y, 1e-300)), 0.0)
        return float(np.mean(6 / np.pi * np.arcsin(np.clip(r, -1, 1) / 2)))


def components(p: np.ndarray, y: np.ndarray | None = None) -> Components:
    """``p[M, U, T]`` per-model values on ``U`` units; ``y[U, T]`` measured margins (LDS) or None (precision)."""
    m, u, _ = p.shape
    pc = p - p.mean(1, keepdims=True)
    pbar = pc.mean(0)
    var_noise = ((pc - pbar[None]) ** 2).sum((0, 1)) / ((m - 1) * (u - 1))
    var_mu = (pbar * pbar).sum(0) / (u - 1) - var_noise / m
    if y is None:
        return Components(None, np.maximum(var_mu, 0.0), var_noise, None)
    yc = y - y.mean(0, keepdims=True)
    cov, var_y = (pbar * yc).sum(0) / (u - 1), (yc * yc).sum(0) / (u - 1)
    floor = np.where(var_y > 0, cov ** 2 / np.where(var_y > 0, var_y, 1), 0.0)
    return Components(cov, np.maximum(var_mu, floor), var_noise, var_y)


@dataclass
class Curve:
    """``value(n)`` from a pilot (``kind`` lds or precision) with its jackknife replicates."""

    kind: str
    point: Components
    replicates: list
    pilot_models: int

    def predict(self, n, level: float = 0.95) -> tuple[float, float, float]:
        """``(value, low, high)`` with ``n`` models; normal interval with the jackknife's standard error."""
        mid, reps = self.point.value(n), np.array([c.value(n) for c in self.replicates])
        m = len(reps)
        se = float(np.sqrt((m - 1) / m * ((reps - reps.mean()) ** 2).sum()))
        z = float(norm.ppf((1 + level) / 2))
        return mid, mid - z * se, mid + z * se

    @property
    def ceiling(self) -> float:
        return self.point.value(float("inf"))

    def models_for(self, target: float, level: float = 0.95) -> tuple[int, int, int]:
        """``(n, n_low, n_high)`` models to reach ``target`` (``n_high`` None: unbounded); UserError if none does."""
        flag = "--target-lds" if self.kind == "lds" else "--target-precision"
        if self.kind == "precision" and not 0 < target < 1:
            raise UserError(f"{flag} must be in (0, 1) (a correlation with the infinite-model scores), got {target:g}")
        if not self.ceiling > target or self.point.value(LIMIT) < target:
            raise UserError(f"{flag} {target:g} is above what this estimator reaches with any number of models "
                            f"(ceiling {self.ceiling:.3f} from the pilot): lower {flag} or change the estimator's "
                            "settings (e.g. a larger proj_dim)")
        n = self._smallest(target)
        _, lo, hi = self.predict(n, level)  # the value at n is uncertain by ± z·se: models for its ends
        spread = max(hi - lo, 0.0) / 2
        most = self._smallest(target + spread) if target + spread < self.point.value(LIMIT) else None
        return n, self._smallest(target - spread), most

    def _smallest(self, target: float) -> int:
        lo, hi = 1, LIMIT
        while lo < hi:  # the value increases with n
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.point.value(mid) >= target else (mid + 1, hi)
        return lo

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model": "signal + noise / n", "pilot_models": self.pilot_models, "ceiling": self.ceiling}


def fit_curve(p: np.ndarray, y: np.ndarray | None = None) -> Curve:
    """:func:`components` of ``p[M, U, T]`` (``M >= 3``) and their delete-one jackknife replicates. Without
    ``y`` (precision) the pilot must show a reproducible signal: ``var_μ`` above 3 standard errors over ``T``."""
    m = p.shape[0]
    if m < 3 or p.shape[1] < 3:
        raise UserError(f"the learning curve needs at least 3 pilot models and 3 units, got {m} and {p.shape[1]}: "
                        "train a larger pilot")
    point = components(p, y)
    if y is None:
        pc = p - p.mean(1, keepdims=True)
        snr = ((pc.mean(0) ** 2).sum(0) / (p.shape[1] - 1) - point.var_noise / m) / np.maximum(point.var_noise, 1e-300)
        if not snr.mean() > 3 * snr.std(ddof=1) / np.sqrt(snr.size):
            raise UserError("the pilot's attributions show no reproducible signal (their mean over models varies "
                            "no more than the between-model noise predicts): no model count can be predicted; "
                            "train a larger pilot")
    return Curve("lds" if y is not None else "precision", point,
                 [components(np.delete(p, i, axis=0), y) for i in range(m)], m)
