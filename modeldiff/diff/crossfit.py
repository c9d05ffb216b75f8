"""Cross-fitted ModelDiff: residual components that rank signal, not estimation noise.

Why: the classic estimator (:class:`modeldiff.diff.residual_pca.ModelDiff`) runs a PCA of the
residuals ``R = Ã − proj_B̃ Ã`` of one attribution matrix per algorithm. With a finite number of
models every attribution is ``signal + estimation noise``, and the covariance of ``R`` is
``Σ_signal + Σ_noise``: its top eigenvector is the direction of largest *noise* as soon as the
noise is larger than the signal along some direction (few models, anisotropic noise).

Method (cross-validated PCA: Stringer et al. 2019, Nature; GSN, Kay et al. 2024, PLOS Comput
Biol): attribute disjoint halves of each algorithm's models (``A₁, A₂, B₁, B₂``, as the null
calibration already does, :mod:`modeldiff.diff.null`), form one residual per half pair,
``R₁ = res(A₁, B₁)`` and ``R₂ = res(A₂, B₂)`` (L2-normalised rows, A's row minus its projection
on B's row, columns centred), and eigen-decompose the symmetric cross-covariance

    C = (R₁ᵀR₂ + R₂ᵀR₁) / (2n),   averaged over the splits.

The two halves' noises are independent and zero-mean, so ``E[C] = Σ_signal`` (to first order in
the noise, the normalisation being smooth): noise does not enter the expectation, only the
variance, and the top eigenvectors of ``C`` are the directions of largest *signal* variance.
Eigenvalues of ``C`` can be negative (noise-only directions); only the largest algebraic ones
are kept.

Explained *signal* variance of a component ``p`` under A is cross-fitted the same way,
``(Ã₁ p)·(Ã₂ p) / n`` (column-centred, row-normalised halves), and likewise under B.

Cost: the residuals of every split are kept (``2 · n_splits · n_test · n_train`` values in
``dtype``); the eigen-decomposition is a dense ``eigh`` of ``C`` up to ``_MAX_DENSE`` training
examples, Lanczos (``scipy.sparse.linalg.eigsh``) on the operator ``v -> C v`` above.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from datamodels.base.errors import UserError
from modeldiff.diff import validation

_MAX_DENSE = 3000  # n_train up to which C [n_train, n_train] is formed and eigh'd in float64


def _normalised(x, dtype) -> np.ndarray:
    x = np.asarray(x, dtype=dtype)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0), norms[:, 0] > 0


def residual(a, b, dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row-normalised A, B and residual ``r = ã − (ã·b̃) b̃`` ``[n_test, n_train]`` each, and the valid rows."""
    an, va = _normalised(a, dtype)
    bn, vb = _normalised(b, dtype)
    cos = (an * bn).sum(axis=1, keepdims=True)
    return an, bn, an - cos * bn, va & vb


class CrossFitModelDiff:
    """ModelDiff whose components maximise the cross-fitted (signal) residual variance.

    Parameters (keyword-only after ``n_components``, only stored by the constructor):
        n_components: k, the number of components.
        dtype: working precision of the residuals (numpy dtype; the eigen-problem is float64).
        random_state: seed of the Lanczos start vector (large ``n_train`` only).

    ``fit(halves)``: ``halves`` is an iterable of splits ``(A1, A2, B1, B2)``, each a
    ``[n_test, n_train]`` attribution matrix from a disjoint half of one algorithm's models
    (e.g. :func:`modeldiff.diff.null.trak_halves`); at least one split. Test rows that are
    all-zero in any half are excluded (NaN in ``test_projections_``).

    Attributes after ``fit`` (numpy, float64):
        components_ [k, n_train]: orthonormal; each one's largest |entry| is positive.
        explained_variance_ [k]: cross-fitted residual (signal) variance along each component
            (the eigenvalues of ``C``; can be ≤ 0 for directions without signal).
        explained_variance_a_, explained_variance_b_ [k]: cross-fitted signal variance under A, B.
        noise_variance_ [k]: mean single-half residual variance minus ``explained_variance_``.
        test_projections_ [n_test, k]: mean over halves of the centred residual rows projected.
        excluded_rows_ [e], n_splits_, solver_ ("dense" or "lanczos").
    """

    def __init__(self, n_components: int = 10, *, dtype=np.float64, random_state: int = 0):
        self.n_components = n_components
        self.dtype = dtype
        self.random_state = random_state

    def fit(self, halves: Iterable[tuple]) -> "CrossFitModelDiff":
        validation.check_params(self.n_components, "full")
        k = int(self.n_components)
        splits = []  # per split: (Ã1, Ã2, B̃1, B̃2, R1, R2), raw (not yet centred)
        valid = None
        for split in halves:
            if len(split) != 4:
                raise UserError("each split of cross-fitted ModelDiff must be (A1, A2, B1, B2)")
            a1, a2, b1, b2 = split
            shape = validation.check_pair(a1, b1)
            validation.check_pair(a2, b2), validation.check_pair(a1, a2)
            for name, x in zip(("A1", "A2", "B1", "B2"), split):
                if not np.isfinite(np.asarray(x)).all():
                    raise UserError(f"the half {name} has non-finite attribution scores; recompute it")
            an1, bn1, r1, v1 = residual(a1, b1, self.dtype)
            an2, bn2, r2, v2 = residual(a2, b2, self.dtype)
            ok = v1 & v2
            valid = ok if valid is None else valid & ok
            splits.append((an1, an2, bn1, bn2, r1, r2))
        if not splits:
            raise UserError("cross-fitted ModelDiff needs at least one split (A1, A2, B1, B2)")
        n, m = shape
        n_used = int(valid.sum())
        validation.check_n_components(k, n_used, m, n - n_used)
        centred = [tuple(_centre(x[valid]) for x in s) for s in splits]
        theta, comps, solver = _top_cross_eigen(centred, k, n_used, self.random_state)
        top = np.abs(comps).argmax(axis=1)
        comps = comps * np.sign(comps[np.arange(k), top])[:, None]
        cross = lambda i, j: np.mean([((s[i] @ comps.T) * (s[j] @ comps.T)).sum(0) / n_used for s in centred], axis=0)
        single = np.mean([((s[h] @ comps.T) ** 2).sum(0) / n_used for s in centred for h in (4, 5)], axis=0)
        proj = np.mean([s[h] @ comps.T for s in centred for h in (4, 5)], axis=0)
        self.components_ = comps
        self.explained_variance_ = theta
        self.explained_variance_a_, self.explained_variance_b_ = cross(0, 1), cross(2, 3)
        self.noise_variance_ = single - theta
        self.test_projections_ = np.full((n, k), np.nan)
        self.test_projections_[valid] = proj
        self.excluded_rows_ = np.flatnonzero(~valid)
        self.n_splits_, self.solver_ = len(splits), solver
        self.n_features_in_, self.n_test_ = m, n
        return self


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0, keepdims=True)


def _top_cross_eigen(centred: list, k: int, n: int, seed: int):
    """Largest algebraic eigenpairs of ``C = mean_s (R₁ᵀR₂ + R₂ᵀR₁) / (2n)``: ``(θ [k], V [k, m], solver)``."""
    m = centred[0][4].shape[1]
    scale = 1.0 / (2 * n * len(centred))
    if m <= _MAX_DENSE:
        c = np.zeros((m, m))
        for s in centred:
            r1, r2 = s[4].astype(np.float64), s[5].astype(np.float64)
            x = r1.T @ r2
            c += x + x.T
        theta, v = np.linalg.eigh(c * scale)
        return theta[::-1][:k].copy(), v[:, ::-1][:, :k].T.copy(), "dense"
    from scipy.sparse.linalg import LinearOperator, eigsh

    def matvec(v):
        v = np.asarray(v, dtype=np.float64).reshape(m, -1)
        out = np.zeros_like(v)
        for s in centred:
            r1, r2 = s[4], s[5]
            out += r1.T @ (r2 @ v) + r2.T @ (r1 @ v)
        return out * scale

    op = LinearOperator((m, m), matvec=matvec, matmat=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).normal(size=m)
    theta, v = eigsh(op, k=k, which="LA", v0=v0)
    order = np.argsort(-theta)
    return theta[order], v[:, order].T.copy(), "lanczos"


def own_components(pairs: Iterable[tuple], n_components: int = 1, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted PCA of ONE algorithm's attributions (the "own ranking" control).

    ``pairs``: per split ``(X1, X2)`` from disjoint halves of its models, ``[n_test, n_train]``.
    Rows are L2-normalised and columns centred as in :class:`CrossFitModelDiff`; returns
    ``(signal variances [k], components [k, n_train])`` of ``mean (X̃₁ᵀX̃₂ + X̃₂ᵀX̃₁) / (2n)``, signs fixed.
    """
    centred, valid = [], None
    for x1, x2 in pairs:
        (n1, v1), (n2, v2) = _normalised(x1, dtype), _normalised(x2, dtype)
        valid = v1 & v2 if valid is None else valid & v1 & v2
        centred.append((n1, n2))
    if not centred:
        raise UserError("own_components needs at least one split (X1, X2)")
    centred = [(None,) * 4 + tuple(_centre(x[valid]) for x in s) for s in centred]
    theta, comps, _ = _top_cross_eigen(centred, int(n_components), int(valid.sum()), 0)
    top = np.abs(comps).argmax(axis=1)
    return theta, comps * np.sign(comps[np.arange(len(comps)), top])[:, None]
