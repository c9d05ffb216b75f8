"""Datamodels: one sparse linear model per test example, from subset masks to margins.

For every test example ``t`` (all at once, in blocks of targets), with ``X[N, n_train]`` the
masks of ``N`` models and ``y_t[N]`` their margins on ``t``:

1. centre ``X`` and ``y_t`` (scikit-learn's ``fit_intercept``; no scaling);
2. the λ grid: ``λ_max,t = max_j |X_cᵀ y_t| / N`` down to ``eps · λ_max,t``, ``n_lambdas`` values
   log-spaced (``sklearn.linear_model._alpha_grid``), computed on all models like ``LassoCV``;
3. the lasso path on the training split of the models (``1 − val_fraction``, drawn with
   ``seed``), warm-started from one λ to the next (:func:`datamodels.attribution.lasso.fista`), each λ
   scored by its mean squared error on the held-out models; the best (first on ties) wins.
   A target leaves the path after ``patience`` λ values without improvement (early stopping
   as in MadryLab's ``fast_l1``): the small-λ end, where ``n_train > N`` makes the problem
   ill-conditioned and slow, is solved only for targets that still improve there;
4. a refit on all models at the chosen λ, warm-started from the split's solution.

Objective: scikit-learn's ``1/(2N) ||y − Xw − b||² + λ ||w||₁``. Coefficients are the rows
of the attribution matrix ``scores[n_test, n_train]``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from datamodels.attribution.lasso import fista, make_problem
from datamodels.base.progress import progress_bar


@dataclass
class RegressionSettings:
    """Hyper-parameters of :class:`DatamodelsRegression` (recorded as ``method_params``)."""

    n_lambdas: int = 25  # values on the regularisation path
    eps: float = 1e-3  # λ_min / λ_max, as sklearn's lasso_path
    val_fraction: float = 0.1  # share of models held out to choose λ
    seed: int = 0  # draws the validation split of models
    tol: float = 1e-4  # duality gap / ||y_centred||², as sklearn's tol
    max_iter: int = 2000  # FISTA iterations per λ (per target block)
    check_every: int = 10  # iterations between convergence checks
    patience: int | None = 3  # λ steps without held-out improvement before a target leaves
    # the path (its selection is final); None = always solve the whole path
    target_block: int = 1024  # test examples solved together (bounds memory: n_train x block)
    gram_max_bytes: int = 1 << 30  # use XᵀX [n_train, n_train] only when it fits in this

    def __post_init__(self):
        if self.n_lambdas < 1 or not 0 < self.eps < 1:
            raise ValueError("n_lambdas must be >= 1 and eps in (0, 1)")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.tol <= 0 or self.max_iter < 1 or self.check_every < 1 or self.target_block < 1:
            raise ValueError("tol, max_iter, check_every and target_block must be positive")


def lambda_grid(xty: torch.Tensor, n: int, n_lambdas: int, eps: float) -> torch.Tensor:
    """``[n_lambdas, T]`` from ``Xcᵀ Yc [p, T]``: per target ``λ_max = max|Xcᵀ y| / N`` down to
    ``eps λ_max``, log-spaced (all 0 for a constant target)."""
    lam_max = xty.abs().amax(0) / n
    steps = torch.logspace(0, math.log10(eps), n_lambdas, dtype=xty.dtype, device=xty.device)
    return steps[:, None] * lam_max[None, :]


def split_models(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, val)`` model indices: ``round(val_fraction n)`` (at least 1) held out."""
    n_val = min(n - 2, max(1, round(val_fraction * n)))
    if n_val < 1:
        raise ValueError(f"need at least 3 models to hold some out, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class DatamodelsRegression:
    """Estimator: ``DatamodelsRegression(**settings).fit(masks, margins)``.

    Learned: ``coef_[T, n_train]`` (numpy float32, unless a ``write`` callback took the rows),
    ``intercept_[T]``, ``lambda_[T]`` (chosen λ), ``lambda_index_[T]``, ``val_mse_[n_lambdas, T]``,
    ``lambdas_[n_lambdas, T]`` (``val_mse_`` is NaN past a target's early stop), ``converged_``
    (fraction of (target, λ) solves that met ``tol`` within ``max_iter``).
    """

    def __init__(self, *, device="cpu", dtype=torch.float32, progress: bool | str = True, **settings):
        """``progress``: a bar per target block; a string is shown in front of it (e.g. "attributing A")."""
        self.settings = RegressionSettings(**settings)
        self.device, self.dtype, self.progress = torch.device(device), dtype, progress

    def params(self) -> dict:
        return {"method": "datamodels", **asdict(self.settings)}

    def fit(self, masks, margins, write: Callable[[int, np.ndarray], None] | None = None):
        """Fit datamodels for every column of ``margins``.

        Args:
            masks: ``[N, n_train]`` bool (numpy or torch): which examples each model saw.
            margins: ``[N, T]`` float: each model's margin on each test example.
            write: optional ``write(start, coef_block[rows, n_train])`` (e.g.
                ``InfluenceWriter.write_rows``); then ``coef_`` is not kept.
        Returns:
            self
        """
        s = self.settings
        x = torch.as_tensor(np.asarray(masks)).to(self.device, self.dtype)
        y_all = torch.as_tensor(np.asarray(margins)).to(self.device, self.dtype)
        if x.dim() != 2 or y_all.dim() != 2 or x.shape[0] != y_all.shape[0]:
            raise ValueError(f"masks [N, n_train] and margins [N, T] must share N; got "
                             f"{tuple(x.shape)} and {tuple(y_all.shape)}")
        if not torch.isfinite(y_all).all():
            raise ValueError("margins contain NaN or inf: drop unfinished or diverged models")
        n, p = x.shape
        t_total = self.n_targets_ = y_all.shape[1]
        tr, va = (torch.as_tensor(a, device=self.device) for a in split_models(n, s.val_fraction, s.seed))
        x_mean, xtr_mean = x.mean(0), x[tr].mean(0)
        xc_all, xc_tr, x_va = x - x_mean, x[tr] - xtr_mean, x[va]
        del x
        prob_tr = make_problem(xc_tr, s.gram_max_bytes)
        prob_all = make_problem(xc_all, s.gram_max_bytes)
        self.coef_ = None if write else np.empty((t_total, p), np.float32)
        self.intercept_ = np.empty(t_total)
        self.lambda_ = np.empty(t_total)
        self.lambda_index_ = np.empty(t_total, np.int64)
        self.lambdas_ = np.empty((s.n_lambdas, t_total))
        self.val_mse_ = np.empty((s.n_lambdas, t_total))
        n_ok = n_solves = 0
        for b0 in range(0, t_total, s.target_block):
            b1 = min(t_total, b0 + s.target_block)
            y = y_all[:, b0:b1]
            w, b, (ok, solves) = self._fit_block(prob_tr, prob_all, x_va, x_mean, xtr_mean, y, tr, va,
                                        b0, b1)
            n_ok, n_solves = n_ok + ok, n_solves + solves
            coef = w.T.float().cpu().numpy()
            self.intercept_[b0:b1] = b.cpu().numpy()
            if write:
                write(b0, coef)
            else:
                self.coef_[b0:b1] = coef
        self.converged_ = n_ok / n_solves
        return self

    def _fit_block(self, prob_tr, prob_all, x_va, x_mean, xtr_mean, y, tr, va, b0, b1):
        s = self.settings
        yc_all = y - y.mean(0)
        full = prob_all.targets(yc_all)
        lams = lambda_grid(full.xty, full.n, s.n_lambdas, s.eps)  # [k, T]
        y_tr = y[tr]
        ytr_mean = y_tr.mean(0)
        prob = prob_tr.targets(y_tr - ytr_mean)
        w = torch.zeros(x_va.shape[1], y.shape[1], dtype=self.dtype, device=self.device)
        best_w, best_mse = w.clone(), torch.full((y.shape[1],), math.inf, dtype=torch.float64,
                                                 device=self.device)
        best_idx = torch.zeros(y.shape[1], dtype=torch.int64, device=self.device)
        mses = torch.full((s.n_lambdas, y.shape[1]), math.nan, dtype=torch.float64,
                          device=self.device)
        active = torch.arange(y.shape[1], device=self.device)  # targets still on the path
        n_ok = n_solves = 0
        steps = range(s.n_lambdas)
        if self.progress:
            what = f"{self.progress}, " if isinstance(self.progress, str) else ""
            steps = progress_bar(steps, desc=f"{what}lasso path, targets {b0}-{b1 - 1} of {self.n_targets_}",
                         leave=False)
        for i in steps:
            sub = prob.select(active)
            wa, ok, _ = fista(sub, w[:, active], lams[i, active], tol=s.tol,
                              max_iter=s.max_iter, check_every=s.check_every)
            w[:, active] = wa
            n_ok, n_solves = n_ok + int(ok.sum()), n_solves + active.numel()
            pred = x_va @ wa + (ytr_mean[active] - xtr_mean @ wa)
            mse = ((y[va][:, active] - pred) ** 2).mean(0).double()
            mses[i, active] = mse
            better = mse < best_mse[active]
            idx = active[better]
            best_mse[idx], best_idx[idx] = mse[better], i
            best_w[:, idx] = wa[:, better]
            if s.patience is not None:  # leave the path once past the held-out optimum
                active = active[i - best_idx[active] < s.patience]
                if active.numel() == 0:
                    break
        del prob
        lam = lams.gather(0, best_idx[None, :])[0]
        w, ok, _ = fista(full, best_w, lam, tol=s.tol, max_iter=s.max_iter * 5,
                         check_every=s.check_every)
        n_ok, n_solves = n_ok + int(ok.sum()), n_solves + ok.numel()
        self.lambdas_[:, b0:b1] = lams.double().cpu().numpy()
        self.val_mse_[:, b0:b1] = mses.cpu().numpy()
        self.lambda_[b0:b1] = lam.double().cpu().numpy()
        self.lambda_index_[b0:b1] = best_idx.cpu().numpy()
        return w, y.mean(0) - x_mean @ w, (n_ok, n_solves)
