"""Statistical efficiency: how the linear datamodeling score grows with the number of models.

Model (a saturating curve that both estimators follow: averaging ``n`` noisy estimates of a
fixed target shrinks the noise variance as ``1/n``, and a correlation with a noisy estimate
rises towards its ceiling accordingly)::

    LDS(n) = a · sqrt(n / (n + b))

``a`` is the ceiling (the LDS with infinitely many models), ``b`` the number of models at which
half the estimate's variance is noise. Fitted by least squares on a pilot's LDS at several
model counts (each the mean over random subsets of the pilot's models); the interval of a
prediction comes from a bootstrap over those subsets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

from datamodels.base.errors import UserError


def curve(n, a, b):
    """``a · sqrt(n / (n + b))``."""
    n = np.asarray(n, dtype=float)
    return a * np.sqrt(n / (n + b))


@dataclass
class LearningCurve:
    """A fitted curve and its bootstrap replicates ``params_boot[R, 2]``."""

    a: float
    b: float
    params_boot: np.ndarray
    n_observed: np.ndarray
    lds_observed: np.ndarray

    def predict(self, n, level: float = 0.95) -> tuple[float, float, float]:
        """``(mean, low, high)`` predicted LDS at ``n`` models."""
        mid = float(curve(n, self.a, self.b))
        reps = curve(n, self.params_boot[:, 0], self.params_boot[:, 1])
        lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
        return mid, float(lo), float(hi)

    def models_for(self, target: float, level: float = 0.95) -> tuple[int, int, int]:
        """``(n, n_low, n_high)`` models needed to reach LDS ``target`` (UserError when unreachable)."""
        if not self.a > target:
            raise UserError(f"target LDS {target:g} is above what this pilot's learning curve can reach "
                            f"(ceiling {self.a:.3f}): lower --target-lds or change the estimator settings "
                            f"(e.g. a larger proj_dim)")
        n = _invert(target, self.a, self.b)
        reps = [_invert(target, a, b) for a, b in self.params_boot]
        reps = np.array([r for r in reps if np.isfinite(r)])
        if reps.size == 0:
            return n, n, n
        lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
        return n, int(np.ceil(lo)), int(np.ceil(hi)) if np.isfinite(hi) else -1

    @property
    def pilot_models(self) -> int:
        return int(self.n_observed.max())

    def to_dict(self) -> dict:
        return {"model": "a * sqrt(n / (n + b))", "a": self.a, "b": self.b, "n_observed": self.n_observed.tolist(),
                "lds_observed": self.lds_observed.tolist()}


def _invert(target: float, a: float, b: float) -> float:
    """Smallest integer ``n`` with ``curve(n) >= target`` (inf when ``target >= a``)."""
    if target >= a:
        return float("inf")
    r = (target / a) ** 2
    return int(np.ceil(b * r / (1 - r)))


def fit_learning_curve(n_models, lds_values, *, n_boot: int = 500, seed: int = 0) -> LearningCurve:
    """Fit ``LDS(n)`` to observations ``lds_values[i]`` at ``n_models[i]`` (repeats allowed).

    The bootstrap resamples observations with replacement, stratified by model count.
    """
    n = np.asarray(n_models, dtype=float)
    y = np.asarray(lds_values, dtype=float)
    if n.size < 3 or np.unique(n).size < 2:
        raise UserError("the learning curve needs LDS at two or more model counts: use a pilot store "
                        "with more models")
    a, b = _fit(n, y)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(n == v) for v in np.unique(n)]
    boot = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        boot.append(_fit(n[idx], y[idx]))
    return LearningCurve(a, b, np.array(boot), n, y)


def _fit(n, y) -> tuple[float, float]:
    guess = (max(float(y.max()) * 1.2, 1e-3), float(np.median(n)))
    try:
        (a, b), _ = curve_fit(curve, n, y, p0=guess, bounds=([0.0, 1e-6], [1.0, 1e7]), maxfev=5000)
    except RuntimeError:
        a, b = guess
    return float(a), float(b)
