"""Attribution precision as a function of the number of models (``modeldiff plan --target-precision P``).

**Definition.** For an estimator that averages per-model attributions (TRAK), a test example's
scores from ``n`` models are ``s̄_n[t, ·] = μ[t, ·] + noise`` where ``μ`` is what infinitely many
models of the same recipe would give and the between-model noise shrinks as ``1/n``. The
*reliability* ``R(n)`` is the correlation, across training examples, between the scores of two
independent sets of ``n`` models (two runs of the same study), averaged over test examples; the
*precision* is ``sqrt(R(n))``, the correlation of ``n`` models' scores with the infinite-model
scores (classical test theory: ``corr(s̄_n, μ)² = corr(s̄_n, s̄'_n)``). ``precision = 0.9``: a test
example's scores correlate 0.9 with the scores of infinitely many models, and two independent runs
agree at 0.81. Both follow Spearman–Brown::

    R(n) = n ρ₁ / (1 + (n − 1) ρ₁)          (ρ₁: the reliability of a single model)

**Estimation** from a pilot's ``M`` models' scores ``s[M, T, n_train]`` (and TRAK's per-model
weights ``q``, averaged per half as TRAK averages them): the mean split-half correlation ``R(h)`` of
two disjoint halves of ``h = ⌊M/2⌋`` models (``SPLITS`` random splits, averaged over splits and test
examples) is measured directly and carried to any ``n`` by Spearman–Brown, i.e.
``logit R(n) = logit ρ₁ + log n``. Checked on the digits demo recipe's attributed models (not the
pilot's): Spearman–Brown from their 4-model reliability gives the measured 8- and 12-model
reliabilities within 3 % (0.118 vs 0.121, 0.167 vs 0.163). A line fitted through the pilot's
smaller halves (``h = 1, 2, …``) was tried and dropped: with TRAK's weights averaged per half, the
smallest halves are depressed by the noise of one model's weights, which steepens the fitted growth
and over-predicts. Interval: delete-one jackknife of ``logit ρ₁`` over the pilot's models (normal).
The models needed for a target ``P`` is the smallest ``n`` with ``R(n) ≥ P²``; its interval is where
the interval's ends reach ``P²``. A pilot whose split-half correlation (largest halves) is not above
3 standard errors over test examples shows no reproducible signal: no model count can be predicted
(one-line error).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from datamodels.base.errors import UserError

LIMIT = 1 << 20  # the largest model count considered
SPLITS = 16  # random half-splits averaged per half size for the fit (8 per jackknife replicate)


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Pearson correlation of ``a[T, N]`` and ``b[T, N]`` (NaN for a constant row)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def _scores(s: np.ndarray, q: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """The estimator's scores from models ``idx``: the mean per-model scores (times the mean weights ``q``)."""
    out = s[idx].mean(0)
    return out if q is None else out * q[idx].mean(0)[None, :]


def split_half(s: np.ndarray, h: int, splits: int, seed: int = 0, q: np.ndarray | None = None) -> float:
    """The mean split-half correlation of ``s[M, T, N]`` with two disjoint halves of ``h`` models each."""
    with np.errstate(all="ignore"):
        return float(np.nanmean(_rows_split_half(s, h, splits, seed, q)))


def _rows_split_half(s: np.ndarray, h: int, splits: int, seed: int, q: np.ndarray | None = None) -> np.ndarray:
    """Per test example, the split-half correlation with ``h`` models per half, averaged over splits."""
    rng = np.random.default_rng(seed)
    acc = []
    for _ in range(splits):
        perm = rng.permutation(s.shape[0])
        acc.append(_row_corr(_scores(s, q, perm[:h]), _scores(s, q, perm[h:2 * h])))
    with np.errstate(all="ignore"):
        return np.nanmean(np.array(acc), axis=0)


def _fit(s: np.ndarray, q, splits: int, seed: int) -> tuple[float, float, np.ndarray]:
    """``(a, b, R[h])``: Spearman–Brown through the split-half reliability ``R(h)`` of the largest halves
    (``h = ⌊M/2⌋``): ``logit R(n) = a + log n``, ``a = logit ρ₁``."""
    h = s.shape[0] // 2
    r = np.array([split_half(s, h, splits, seed, q)])
    if not np.all((r > 0) & (r < 1)):
        return float("nan"), 1.0, r
    return float(np.log(r[0] / (1 - r[0])) - np.log(h)), 1.0, r


@dataclass
class PrecisionCurve:
    """``precision(n) = sqrt(R(n))``, ``logit R(n) = a + b log n`` (``b = 1``: Spearman–Brown) from a pilot."""

    a: float
    b: float
    replicates: np.ndarray  # [M, 2] jackknife (a, b)
    observed: np.ndarray  # [R(h)], the measured split-half reliability, h = ⌊M/2⌋
    pilot_models: int

    def _logit(self, n) -> tuple[float, float]:
        """Logit of R(n) and its jackknife standard error."""
        x = math.log(n)
        reps = self.replicates[:, 0] + self.replicates[:, 1] * x
        m = len(reps)
        se = float(np.sqrt((m - 1) / m * ((reps - reps.mean()) ** 2).sum()))
        return self.a + self.b * x, se

    def predict(self, n, level: float = 0.95) -> tuple[float, float, float]:
        """``(precision, low, high)`` with ``n`` models."""
        mid, se = self._logit(n)
        z = float(norm.ppf((1 + level) / 2))
        f = lambda v: math.sqrt(1 / (1 + math.exp(-v)))  # noqa: E731
        return f(mid), f(mid - z * se), f(mid + z * se)

    def models_for(self, target: float, level: float = 0.95) -> tuple[int, int, int]:
        """``(n, n_low, n_high)`` models for precision ``target`` (``n_high = -1``: unbounded)."""
        if not 0 < target < 1:
            raise UserError(f"--target-precision must be in (0, 1) (a correlation with the infinite-model scores), "
                            f"got {target:g}")
        n = _smallest(lambda k: self.predict(k, level)[0] >= target)
        if n is None:
            raise UserError(f"target precision {target:g} needs more than {LIMIT} models by this pilot's curve "
                            f"(split-half reliability {self.observed[-1]:.3f} with {self.pilot_models // 2} models per "
                            "half): lower --target-precision")
        low = _smallest(lambda k: self.predict(k, level)[2] >= target) or n
        high = _smallest(lambda k: self.predict(k, level)[1] >= target)
        return n, min(low, n), -1 if high is None else max(high, n)

    def to_dict(self) -> dict:
        return {"definition": "sqrt of the mean correlation between two independent n-model score sets "
                              "(= correlation with infinitely many models' scores)",
                "model": "Spearman-Brown from the pilot's split-half correlation: logit R(n) = a + b log n, b = 1",
                "a": self.a, "b": self.b, "split_half": self.observed.tolist(), "pilot_models": self.pilot_models}


def _smallest(ok) -> int | None:
    """Smallest ``n`` in ``[1, LIMIT]`` with ``ok(n)`` (``ok`` monotone), None if none."""
    if not ok(LIMIT):
        return None
    lo, hi = 1, LIMIT
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fit_precision_curve(per_model: np.ndarray, q: np.ndarray | None = None, seed: int = 0) -> PrecisionCurve:
    """``per_model[M, T, n_train]``: each pilot model's scores (``M >= 5``: halves of 1 and 2 models) -> the curve.

    ``q[M, n_train]``: per-model weights the estimator averages separately and multiplies in (TRAK's
    out-to-loss weights: its scores are ``mean(per_model) · mean(q)``), so each half is scored as the
    estimator would score those models.
    """
    s = np.asarray(per_model, dtype=np.float32)
    q = None if q is None else np.asarray(q, dtype=np.float32)
    m = s.shape[0]
    if m < 5:
        raise UserError(f"the precision curve needs at least 5 pilot models (two halves of 2 and a jackknife), "
                        f"got {m}: train a larger pilot")
    a, b, r = _fit(s, q, SPLITS, seed)
    rows = _rows_split_half(s, m // 2, SPLITS, seed, q)
    rows = rows[np.isfinite(rows)]
    detectable = rows.size > 1 and rows.mean() > 3 * rows.std(ddof=1) / np.sqrt(rows.size)
    if not (np.isfinite(a) and detectable):
        raise UserError(f"the pilot's attributions show no reproducible signal (split-half correlation "
                        f"{r[-1]:.3f} with {m // 2} models per half): no model count can be predicted; train a "
                        "larger pilot")
    reps = np.array([_fit(np.delete(s, i, axis=0), None if q is None else np.delete(q, i, axis=0), SPLITS // 2,
                          seed + 100 * (i + 1))[:2] for i in range(m)])
    reps = reps[np.all(np.isfinite(reps), axis=1)]
    if len(reps) < 3:
        raise UserError("the pilot's split-half correlations are not all positive without one of its models: "
                        "no interval can be given; train a larger pilot")
    return PrecisionCurve(a, b, reps, r, m)
