"""Linear datamodeling score (LDS): does the attribution predict what retraining does?

For held-out subsets ``S_1 .. S_m`` (masks of models *not* used to estimate the scores) and a
test example ``t``: the Spearman rank correlation between the predicted effects
``Σ_{j ∈ S_i} scores[t, j]`` and the margins ``f_t(S_i)`` actually measured (averaged over the
models that share a mask, i.e. over seeds). LDS is the mean over test examples, with a
percentile bootstrap confidence interval over test examples. A correlation that is undefined
(constant predictions, e.g. an all-zero datamodel, or constant margins) counts as 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from datamodels.base.errors import UserError


@dataclass
class LDSResult:
    """``mean`` LDS, its ``[ci_low, ci_high]`` interval (``ci`` level), ``per_test[n_test]``."""

    mean: float
    ci_low: float
    ci_high: float
    per_test: np.ndarray
    n_subsets: int
    n_models: int
    ci: float = 0.95
    n_nonfinite: int = 0  # test rows left out: NaN/inf scores or margins (per_test is NaN there)

    def __str__(self) -> str:
        left = (f"; {self.n_nonfinite} test rows with NaN or infinite scores or margins left out"
                if self.n_nonfinite else "")
        return (f"LDS = {self.mean:.4f} ({100 * self.ci:.0f}% CI {self.ci_low:.4f} to "
                f"{self.ci_high:.4f}) over {self.per_test.size - self.n_nonfinite} test examples and "
                f"{self.n_subsets} held-out subsets ({self.n_models} models){left}")


def average_over_seeds(masks: np.ndarray, margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group identical masks: ``(unique_masks[m, n_train], mean_margins[m, n_test])``."""
    masks = np.asarray(masks, dtype=bool)
    uniq, inverse = np.unique(masks, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((uniq.shape[0], margins.shape[1]))
    np.add.at(sums, inverse, np.asarray(margins, dtype=np.float64))
    counts = np.bincount(inverse, minlength=uniq.shape[0])
    return uniq, sums / counts[:, None]


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of matching columns of ``a[m, T]`` and ``b[m, T]`` -> ``[T]``
    (average ranks for ties; NaN where a column is constant)."""
    ra = rankdata(a, axis=0)
    rb = rankdata(b, axis=0)
    ra -= ra.mean(0)
    rb -= rb.mean(0)
    den = np.sqrt((ra * ra).sum(0) * (rb * rb).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(0) / np.where(den > 0, den, 1), np.nan)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, ci: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` resampled with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def lds(scores, masks, margins, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
        block: int = 4096) -> LDSResult:
    """LDS of ``scores[n_test, n_train]`` against held-out ``masks[N, n_train]`` (bool) and
    ``margins[N, n_test]``; test rows are processed ``block`` at a time.

    Test rows whose scores or margins are NaN/inf are left out of the mean (counted in
    ``n_nonfinite``); when no row is finite a :class:`UserError` refuses."""
    scores = np.asarray(scores)
    margins = np.asarray(margins, dtype=np.float64)
    if scores.ndim != 2 or masks.shape[1] != scores.shape[1] or margins.shape[1] != scores.shape[0]:
        raise ValueError(f"shapes disagree: scores {scores.shape}, masks {masks.shape}, "
                         f"margins {margins.shape} (want [T, n], [N, n], [N, T])")
    if masks.shape[0] != margins.shape[0]:
        raise ValueError("masks and margins must have one row per model")
    finite = np.concatenate([np.isfinite(np.asarray(scores[t0:t0 + block])).all(1)
                             for t0 in range(0, scores.shape[0], block)] or [np.zeros(0, bool)])
    finite &= np.isfinite(margins).all(0)  # [n_test]: rows that can be measured
    if not finite.any():
        raise UserError(f"all {scores.shape[0]} test rows have NaN or infinite scores or margins: no LDS can be "
                        f"measured; recompute the scores from finite models")
    uniq, mean_margins = average_over_seeds(masks, margins)
    if uniq.shape[0] < 3:
        raise ValueError(f"LDS needs at least 3 distinct held-out subsets, got {uniq.shape[0]}")
    x = uniq.astype(np.float64)
    per_test = np.empty(scores.shape[0])
    for t0 in range(0, scores.shape[0], block):
        t1 = min(scores.shape[0], t0 + block)
        pred = x @ np.asarray(scores[t0:t1], dtype=np.float64).T  # [m, rows]
        per_test[t0:t1] = spearman_columns(pred, mean_margins[:, t0:t1])
    per_test = np.nan_to_num(per_test, nan=0.0)  # a constant prediction or margin: no rank information
    per_test[~finite] = np.nan
    kept = per_test[finite]
    lo, hi = bootstrap_ci(kept, n_boot, ci, seed)
    return LDSResult(float(kept.mean()), lo, hi, per_test, uniq.shape[0], masks.shape[0], ci,
                     int((~finite).sum()))


@dataclass
class HeldOut:
    """Which evaluation models are truly held out: ``keep[N]`` bool, ``n_same`` models whose mask
    equals a mask the scores were estimated from, ``n_dependent`` whose overlap with one is too
    large for independently drawn subsets (hypergeometric test, Bonferroni over all pairs)."""

    keep: np.ndarray
    n_same: int
    n_dependent: int

    @property
    def n_excluded(self) -> int:
        return self.n_same + self.n_dependent


def held_out(eval_masks: np.ndarray, used_masks: np.ndarray, alpha: float = 1e-3, block: int = 256) -> HeldOut:
    """Compare evaluation masks ``[N, n]`` with the masks ``[U, n]`` of the models behind the scores.

    An evaluation model is excluded when its subset equals one of them, or when the overlap with
    one is larger than independent random subsets of those sizes produce with probability
    ``alpha / (N * U)`` (one-sided hypergeometric tail). Masks, not folders or seeds, decide.
    """
    from scipy.stats import hypergeom

    ev = np.asarray(eval_masks, dtype=bool)
    used = np.asarray(used_masks, dtype=bool)
    n_eval = ev.shape[0]
    keep = np.ones(n_eval, dtype=bool)
    if used.shape[0] == 0 or n_eval == 0:
        return HeldOut(keep, 0, 0)
    n = ev.shape[1]
    size_e, size_u = ev.sum(1), used.sum(1)
    used_f = used.astype(np.float32)
    threshold = alpha / (n_eval * used.shape[0])
    same = np.zeros(n_eval, dtype=bool)
    dependent = np.zeros(n_eval, dtype=bool)
    for s in range(0, n_eval, block):
        e = ev[s:s + block]
        overlap = e.astype(np.float32) @ used_f.T  # [b, U], exact for n < 2**24
        eq = (overlap == size_e[s:s + block, None]) & (overlap == size_u[None, :])
        same[s:s + block] = eq.any(1)
        # P(overlap >= observed) for independent subsets: hypergeom(n, K=|used|, draws=|eval|)
        p = hypergeom.sf(overlap - 1, n, size_u[None, :], size_e[s:s + block, None])
        dependent[s:s + block] = (p < threshold).any(1) & ~same[s:s + block]
    keep = ~(same | dependent)
    return HeldOut(keep, int(same.sum()), int(dependent.sum()))
