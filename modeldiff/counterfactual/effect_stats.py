"""Statistics of treatment effects over models: bootstrap CIs and the A−B test.

The unit of resampling is the *model*: each model of an algorithm gives one effect (its
mean of ``Pr(class | do(T)) − Pr(class | control)`` over the test inputs), and the
question is what the algorithm does on average over the models it trains.

* Each algorithm's mean effect: BCa bootstrap CI (``scipy.stats.bootstrap``) over models;
  percentile bootstrap when BCa is undefined (e.g. all models give the same effect).
* The A−B difference ``mean(A) − mean(B)``: two-sided Welch t-test p-value and the matching
  Welch CI (``scipy.stats.ttest_ind(equal_var=False)``): per-model effects are averages
  over many inputs, so close to normal; the two algorithms may have different spreads and
  numbers of models; and the CI excludes 0 exactly when p < 1 − level.
* Each algorithm's own p-value (effect ≠ 0): one-sample t-test.

All resampling uses ``numpy.random.Generator(seed)``; same seed, same numbers. With fewer
than two models a CI cannot be estimated: bounds and p-values are NaN.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class EffectEstimate:
    """Mean effect with its confidence interval (``level``) over ``n_models`` models."""
    mean: float
    ci_low: float
    ci_high: float
    stderr: float   # standard error of the mean (of the difference, for A − B)
    n_models: int
    p_value: float  # H0: mean effect = 0 (t-test)

    def covers(self, value: float) -> bool:
        return bool(self.ci_low <= value <= self.ci_high)


@dataclass
class EffectComparison:
    """Effects of A and B and their difference A − B (CI and Welch p-value)."""
    a: EffectEstimate
    b: EffectEstimate
    diff: EffectEstimate
    level: float
    method: str = "BCa bootstrap CI over models per algorithm; Welch t-test and CI for A-B"

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN
    return obj


def _bootstrap(samples: tuple, statistic, level: float, n_resamples: int, seed: int) -> tuple[float, float]:
    from scipy import stats  # lazy: scipy.stats is slow to import
    if min(len(s) for s in samples) < 2:
        return float("nan"), float("nan")
    if all(np.ptp(s) == 0 for s in samples):   # no spread: the interval is the point
        value = float(statistic(*samples, axis=-1))
        return value, value
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa's degenerate-case warning: we fall back instead
            res = stats.bootstrap(samples, statistic, n_resamples=n_resamples, confidence_level=level,
                                  method=method, vectorized=True, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high
    return float("nan"), float("nan")


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def estimate_effect(per_model, *, level: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> EffectEstimate:
    """Mean of per-model effects ``[n_models]`` with a bootstrap CI at ``level``."""
    x = _check(per_model, "per_model")
    from scipy import stats
    low, high = _bootstrap((x,), _mean, level, n_resamples, seed)
    if x.size < 2:
        p = float("nan")
    elif np.ptp(x) == 0:   # every model gives the same effect: certain, zero or not
        p = 1.0 if x[0] == 0 else 0.0
    else:
        p = float(stats.ttest_1samp(x, 0.0).pvalue)
    stderr = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return EffectEstimate(float(x.mean()), low, high, stderr, int(x.size), p)


def compare_effects(per_model_a, per_model_b, *, level: float = 0.95, n_resamples: int = 9999,
                    seed: int = 0) -> EffectComparison:
    """Effects of A ``[n_models_a]`` and B ``[n_models_b]``, and their difference A − B.

    The difference's CI is Welch's t interval, so it excludes 0 exactly when the Welch
    p-value is below ``1 − level``; with no spread in either group it falls back to the
    two-sample bootstrap (a point).
    """
    a, b = _check(per_model_a, "per_model_a"), _check(per_model_b, "per_model_b")
    from scipy import stats
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size) if min(a.size, b.size) > 1 else float("nan")
    if np.isfinite(se) and se > 0:
        test = stats.ttest_ind(a, b, equal_var=False)
        ci = test.confidence_interval(confidence_level=level)
        p, low, high = float(test.pvalue), float(ci.low), float(ci.high)
    else:
        p = float("nan") if not np.isfinite(se) else float(a.mean() == b.mean())
        low, high = _bootstrap((a, b), _mean_diff, level, n_resamples, seed + 2)
    diff = EffectEstimate(float(a.mean() - b.mean()), low, high, float(se), int(a.size + b.size), p)
    return EffectComparison(estimate_effect(a, level=level, n_resamples=n_resamples, seed=seed),
                            estimate_effect(b, level=level, n_resamples=n_resamples, seed=seed + 1),
                            diff, level)


def _check(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty: need at least one model's effect")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite effects (diverged models?); drop them first")
    return x
