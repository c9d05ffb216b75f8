"""Null calibration of ModelDiff components: which part of an A−B gap is beyond noise?

Why: the PCA of A's residual picks the directions where A's *noise* is largest, so even two
copies of one algorithm give explained-variance ratios ``var_a / var_b`` well above 1
(about 2x on the digits sgd_noise recipe). A ratio means something only against that null.

Method (from the models already trained, no new training):

1. Split each algorithm's attribution models into two disjoint halves, ``n_splits`` times at
   random (:func:`split_halves`), and attribute each half separately: A₁, A₂, B₁, B₂
   (TRAK: :class:`TrakGroups` attributes fixed groups of models once and averages groups, so
   a split costs no new gradients; datamodels: :func:`regression_halves` regresses on each
   half of the models; anything else: :func:`mean_halves` over per-model matrices).
2. **Null** fits, per split: ModelDiff(A₁, A₂), (A₂, A₁), (B₁, B₂), (B₂, B₁) — one algorithm
   against itself. **Observed** fits, per split: ModelDiff(A₁, B₁) and (A₂, B₂) for A−B (B−A
   swapped). Both sides use half of the models, so the halving (fewer models, noisier
   attributions, larger ratios) affects null and observed alike; comparing the full-model
   ratio against a half-model null would be biased (conservative or not, depending on how
   the noise scales), which is why the decision uses the half-size statistic.
3. Per rank ``j``: ``ratio_halves_j`` = median over the observed fits of ``var_a / var_b``;
   the null log-ratios are standardised per rank (mean ``μ_j``, sd ``σ_j`` over the null
   fits). The **rule**: component ``j`` is *beyond null* when
   ``z_j = (log ratio_halves_j − μ_j) / σ_j`` exceeds the ``level`` quantile of the null's
   maximum over ranks ``max_j z⁰_j`` (Westfall–Young max-T, so the family-wise error over a
   direction's components is at most ``1 − level``); equivalently ``ratio_halves_j >
   null_ratio_q95_j = exp(μ_j + c σ_j)``. ``p_value_j = (1 + #{null max ≥ z_j}) / (1 + N)``
   (family-wise adjusted over ranks; N = 4·n_splits null fits). The median over splits makes
   the observed statistic less variable than one null fit: the test errs conservative.

What is reported per component (:class:`ComponentCalibration`): the full-model ``var_a``,
``var_b`` and ``ratio`` (what the report plots), the half-size ``ratio_halves`` that is
tested, ``null_ratio_q95``, ``p_value`` and ``beyond_null``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

DIRECTIONS = ("a_minus_b", "b_minus_a")
_FLOOR = 1e-30  # variances below this count as zero (log-ratios stay finite)

RULE = ("beyond null: the median over {n_obs} half-size fits (A-half vs B-half) of log(var_a/var_b) at rank j, "
        "standardised by the null's mean and sd at rank j ({n_null} fits of one algorithm's half against its "
        "other half, {n_splits} random splits), is exceeded by at most a share 1 - {level:g} of the null's maxima over "
        "ranks: p = (1 + #null maxima >= it) / (1 + {n_null}) <= {alpha:g} (max-T; p-values family-wise adjusted over "
        "the {k} components of a direction)")
CROSSFIT_RULE = ("beyond null (cross-fitted estimator): the median over {n_obs} quarter-size cross-fits (two quarters "
                 "of A's models against two of B's) of the signal at rank j (the smaller of the residual's cross-fitted "
                 "signal variance and the cross-fitted variance under A minus under B), standardised by the "
                 "null's mean and sd at rank j ({n_null} cross-fits of two quarters of one algorithm's models against "
                 "its other two, {n_splits} random splits into quarters), is exceeded by at most a share 1 - {level:g} "
                 "of the null's maxima over ranks: p = (1 + #null maxima >= it) / (1 + {n_null}) <= {alpha:g} (max-T; "
                 "p-values family-wise adjusted over the {k} components of a direction)")
_CLASSIC_ONLY = ("ratio_halves", "null_ratio_q95", "null_ratio_median")
_CROSSFIT_ONLY = ("signal_quarters", "null_signal_q95", "null_signal_median")


@dataclass
class ComponentCalibration:
    """One component of one direction against the null (see the module docstring)."""
    rank: int
    var_a: float            # full-model explained variance under the first algorithm
    var_b: float
    ratio: float            # var_a / var_b (full models)
    ratio_halves: float     # the tested statistic: median half-size ratio
    null_ratio_q95: float   # threshold on the half-size ratio at this rank
    null_ratio_median: float  # median half-size ratio of the null at this rank
    p_value: float          # family-wise adjusted over ranks
    beyond_null: bool
    # cross-fitted estimator only (``modeldiff.diff.null_crossfit``; the ratio fields are then NaN):
    signal_quarters: float = float("nan")     # the tested statistic: median quarter-size signal (null_crossfit)
    null_signal_q95: float = float("nan")     # threshold on it at this rank
    null_signal_median: float = float("nan")  # median of the null's statistic at this rank


@dataclass
class NullCalibration:
    """Result of :func:`calibrate`: per direction a list of :class:`ComponentCalibration`."""
    directions: dict
    null_log_ratios: np.ndarray      # [4 * n_splits, k] the null's statistic (classic: log variance ratios)
    observed_log_ratios: dict        # direction -> [2 * n_splits, k] the observed statistic
    n_splits: int
    level: float
    rule: str = ""
    extra: dict = field(default_factory=dict)
    estimator: str = "classic"       # the ModelDiff estimator calibrated: classic | crossfit

    def components(self, direction: str) -> list[ComponentCalibration]:
        return self.directions[direction]

    def any_beyond(self) -> bool:
        return any(c.beyond_null for cs in self.directions.values() for c in cs)

    def to_dict(self) -> dict:
        med = np.median(self.null_log_ratios, axis=0)
        key, med = ("null_ratio_median", np.exp(med)) if self.estimator == "classic" else ("null_signal_median", med)
        return {"rule": self.rule, "n_splits": self.n_splits, "level": self.level, "estimator": self.estimator,
                key: med.tolist(),
                "directions": {d: [self._record(c) for c in cs] for d, cs in self.directions.items()},
                **self.extra}

    def _record(self, c: ComponentCalibration) -> dict:
        """One component as summary.json holds it: the fields of the calibrated estimator's statistic."""
        drop = _CROSSFIT_ONLY if self.estimator == "classic" else _CLASSIC_ONLY
        return {k: v for k, v in _plain(asdict(c)).items() if k not in drop}


def _plain(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        v = v.item() if isinstance(v, np.generic) else v
        out[k] = None if isinstance(v, float) and not np.isfinite(v) else v
    return out


def split_halves(n_units: int, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` random splits of ``range(n_units)`` into two disjoint halves (sorted index arrays).

    Distinct splits while there are enough of them; each split's halves differ in size by at most one.
    """
    if n_units < 2:
        raise ValueError(f"need at least 2 units (models or model groups) to split, got {n_units}")
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    for _ in range(50 * n_splits):
        perm = rng.permutation(n_units)
        first = np.sort(perm[: n_units // 2])
        key = tuple(first) if 0 in first else tuple(np.setdiff1d(np.arange(n_units), first))
        if key in seen and len(seen) < _n_distinct(n_units):
            continue
        seen.add(key)
        out.append((first, np.sort(perm[n_units // 2:])))
        if len(out) == n_splits:
            break
    return out


def _n_distinct(n: int) -> int:
    from math import comb
    return comb(n, n // 2) // (2 if n % 2 == 0 else 1)


def log_ratios(fit) -> np.ndarray:
    """``log(var_a / var_b)`` per component of a fitted ModelDiff ``[k]``."""
    va = np.maximum(np.asarray(fit.explained_variance_a_, np.float64), _FLOOR)
    vb = np.maximum(np.asarray(fit.explained_variance_b_, np.float64), _FLOOR)
    return np.log(va) - np.log(vb)


def calibrate(halves: Iterable[tuple], n_components: int, full_fits: dict | None = None, *, level: float = 0.95,
              random_state: int = 0, solver: str = "auto") -> NullCalibration:
    """Null-calibrate ModelDiff components (rule in the module docstring).

    Args:
        halves: per split a tuple ``(A1, A2, B1, B2)`` of ``[n_test, n_train]`` attribution
            matrices, each from a disjoint half of one algorithm's models.
        n_components: components per fit (rank j is compared with rank j).
        full_fits: ``{"a_minus_b": ModelDiff, "b_minus_a": ModelDiff}`` fitted on all models,
            whose variances are reported beside the test (optional).
    """
    from modeldiff.diff.residual_pca import ModelDiff

    fit = lambda x, y: log_ratios(ModelDiff(n_components, random_state=random_state, solver=solver).fit(x, y))
    null, obs = [], {d: [] for d in DIRECTIONS}
    n_splits = 0
    for a1, a2, b1, b2 in halves:
        n_splits += 1
        null += [fit(a1, a2), fit(a2, a1), fit(b1, b2), fit(b2, b1)]
        obs["a_minus_b"] += [fit(a1, b1), fit(a2, b2)]
        obs["b_minus_a"] += [fit(b1, a1), fit(b2, a2)]
    if n_splits < 2:
        raise ValueError("null calibration needs at least 2 splits")
    null = np.asarray(null)
    obs = {d: np.asarray(v) for d, v in obs.items()}
    return _decide(null, obs, n_splits, level, full_fits)


def _decide(null: np.ndarray, obs: dict, n_splits: int, level: float, full_fits: dict | None,
            crossfit: bool = False) -> NullCalibration:
    """Max-T decision on per-rank statistics ``null [N, k]`` and ``obs {direction: [n_obs, k]}``
    (classic: log variance ratios; ``crossfit``: cross-fitted residual signal variances)."""
    mu = null.mean(axis=0)
    sd = np.maximum(null.std(axis=0, ddof=1), 1e-6)
    null_max = ((null - mu) / sd).max(axis=1)              # [N]
    # beyond null <=> p = (1 + #{null max >= z}) / (1 + N) <= 1 - level <=> z > c, with c the
    # (N - m)-th smallest null max, m = floor((1 - level)(1 + N) - 1) (c = inf when m < 0: too few fits)
    m = int(np.floor((1 - level) * (1 + null_max.size) - 1 + 1e-9))
    c = float(np.sort(null_max)[null_max.size - 1 - m]) if m >= 0 else float("inf")
    k = null.shape[1]
    out = {}
    for d, o in obs.items():
        stat = np.median(o, axis=0)
        z = (stat - mu) / sd
        p = (1 + (null_max[None, :] >= z[:, None]).sum(axis=1)) / (1 + null_max.size)
        full = (full_fits or {}).get(d)
        comps = []
        for j in range(k):
            va = float(full.explained_variance_a_[j]) if full is not None else float("nan")
            vb = float(full.explained_variance_b_[j]) if full is not None else float("nan")
            thr, med = float(mu[j] + c * sd[j]), float(np.median(null[:, j]))
            tested = dict(signal_quarters=float(stat[j]), null_signal_q95=thr, null_signal_median=med,
                          ratio_halves=float("nan"), null_ratio_q95=float("nan"), null_ratio_median=float("nan")) \
                if crossfit else dict(ratio_halves=float(np.exp(stat[j])), null_ratio_q95=float(np.exp(thr)),
                                      null_ratio_median=float(np.exp(med)))
            comps.append(ComponentCalibration(
                rank=j, var_a=va, var_b=vb, ratio=va / vb if vb > 0 else float("inf"), **tested,
                p_value=float(p[j]), beyond_null=bool(p[j] <= 1 - level + 1e-12)))
        out[d] = comps
    rule = (CROSSFIT_RULE if crossfit else RULE).format(n_obs=len(next(iter(obs.values()))), n_null=len(null),
                                                        n_splits=n_splits, level=level, k=k, alpha=1 - level)
    return NullCalibration(out, null, obs, n_splits, level, rule, estimator="crossfit" if crossfit else "classic")


# -- ways to get the halves -------------------------------------------------------------------------

def mean_halves(per_unit_a: np.ndarray, per_unit_b: np.ndarray, n_splits: int = 8, seed: int = 0) -> Iterator[tuple]:
    """Halves as means of per-unit matrices ``[n_units, n_test, n_train]`` (e.g. per-model
    attributions, or simulations); yields ``(A1, A2, B1, B2)`` per split."""
    sa = split_halves(len(per_unit_a), n_splits, seed)
    sb = split_halves(len(per_unit_b), n_splits, seed + 1)
    for (a1, a2), (b1, b2) in zip(sa, sb):
        yield (per_unit_a[a1].mean(0), per_unit_a[a2].mean(0), per_unit_b[b1].mean(0), per_unit_b[b2].mean(0))


@dataclass
class TrakGroups:
    """TRAK scores of fixed groups of models, so that any union of groups is cheap.

    TRAK's scores are ``(1/M Σ_m Φ_test,m F_mᵀ) · (1/M Σ_m Q_m)`` (see
    :mod:`datamodels.attribution.trak`): keeping per group ``g`` the mean kernel product
    ``S_g [n_test, n_train]`` and the mean ``Q_g [n_train]`` gives the scores of any set of
    groups exactly (weights = group sizes); all groups together reproduce the full run.
    """
    s: np.ndarray        # [G, n_test, n_train] float32
    q: np.ndarray        # [G, n_train] float64
    sizes: np.ndarray    # [G] models per group
    rows: list           # store rows of each group

    def scores(self, groups: Sequence[int] | None = None) -> np.ndarray:
        g = np.arange(len(self.sizes)) if groups is None else np.asarray(groups)
        w = self.sizes[g] / self.sizes[g].sum()
        s = np.tensordot(w, self.s[g], axes=1)
        return (s * (w @ self.q[g])[None, :]).astype(np.float32)

    def save(self, path) -> None:
        from datamodels.base.atomic import atomic_path
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, s=self.s, q=self.q, sizes=self.sizes,
                         rows=np.concatenate([np.asarray(r) for r in self.rows]))

    @classmethod
    def load(cls, path) -> "TrakGroups":
        z = np.load(path)
        bounds = np.cumsum(z["sizes"])[:-1]
        return cls(z["s"], z["q"], z["sizes"], [r.tolist() for r in np.split(z["rows"], bounds)])


def trak_groups(store, rows, n_groups: int = 8, device="cpu", progress_label: str | None = None,
                **params) -> TrakGroups:
    """Run TRAK once per group of ``rows`` (contiguous groups, as equal as possible).

    ``progress_label``: show "attributing LABEL: model k of n" headings and bars on stderr."""

    from datamodels.attribution.trak import TRAK
    from datamodels.base.progress import announced

    data = store.load_dataset()
    from datamodels.modelset import model_dtype

    dtype = model_dtype(store)
    groups = [g for g in np.array_split(np.asarray(rows), min(n_groups, len(rows))) if len(g)]
    s, q = [], []
    done = 0
    for g in groups:
        est = TRAK(device=device, dtype=dtype, progress=progress_label is not None, **params)
        scores = est.run(announced(g, lambda i: store.load_model(i, device), progress_label, len(rows), done),
                         data.x_train, data.y_train, data.x_test, data.y_test, n_models=len(g))
        done += len(g)
        qg = est.q_mean_.double().cpu().numpy()
        s.append(np.where(qg[None, :] > 0, scores / np.where(qg > 0, qg, 1.0)[None, :], 0.0).astype(np.float32))
        q.append(qg)
    return TrakGroups(np.stack(s), np.stack(q), np.array([len(g) for g in groups]), [g.tolist() for g in groups])


def trak_halves(groups_a: TrakGroups, groups_b: TrakGroups, n_splits: int = 8, seed: int = 0) -> Iterator[tuple]:
    """``(A1, A2, B1, B2)`` per random split of each algorithm's TRAK groups."""
    sa = split_halves(len(groups_a.sizes), n_splits, seed)
    sb = split_halves(len(groups_b.sizes), n_splits, seed + 1)
    for (a1, a2), (b1, b2) in zip(sa, sb):
        yield groups_a.scores(a1), groups_a.scores(a2), groups_b.scores(b1), groups_b.scores(b2)


def regression_halves(store_a, store_b, rows_a, rows_b, n_splits: int = 4, seed: int = 0, device="cpu",
                      progress: bool = False, **params) -> Iterator[tuple]:
    """Datamodels: regress masks -> margins on each half of each algorithm's models
    (``progress``: a heading per regression and its bar on stderr)."""
    from datamodels.attribution.regression import DatamodelsRegression
    from datamodels.base.progress import heading

    count = [0]

    def fit(store, rows):
        count[0] += 1
        what = f"null calibration: regression {count[0]} of {4 * n_splits} ({len(rows)} models)"
        if progress:
            heading(what)
        est = DatamodelsRegression(device=device, progress=progress and what, **params)
        return est.fit(store.masks[rows], store.test_margins[rows]).coef_

    sa = split_halves(len(rows_a), n_splits, seed)
    sb = split_halves(len(rows_b), n_splits, seed + 1)
    ra, rb = np.asarray(rows_a), np.asarray(rows_b)
    for (a1, a2), (b1, b2) in zip(sa, sb):
        yield fit(store_a, ra[a1]), fit(store_a, ra[a2]), fit(store_b, rb[b1]), fit(store_b, rb[b2])


def method_halves(method, store_a, store_b, rows_a, rows_b, n_splits: int = 4, seed: int = 0, device="cpu",
                  params: dict | None = None) -> Iterator[tuple]:
    """Any attribution method (:class:`datamodels.attribution.methods.AttributionMethod`): attribute
    each half of each algorithm's models with it."""
    import torch

    from datamodels.attribution.methods import run_method
    from datamodels.modelset import model_dtype

    def fit(store, rows):
        scores, _ = run_method(method, store, rows, device=torch.device(device), dtype=model_dtype(store),
                               progress=None, params=dict(params or {}), write=None)
        return scores

    sa = split_halves(len(rows_a), n_splits, seed)
    sb = split_halves(len(rows_b), n_splits, seed + 1)
    ra, rb = np.asarray(rows_a), np.asarray(rows_b)
    for (a1, a2), (b1, b2) in zip(sa, sb):
        yield fit(store_a, ra[a1]), fit(store_a, ra[a2]), fit(store_b, rb[b1]), fit(store_b, rb[b2])


AttributeHalves = Callable[[], Iterable[tuple]]
