"""ModelDiff against an independent plain-numpy float64 implementation of the paper's formulas."""
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from modeldiff import ModelDiff


def reference(A, B, k):
    """Row-normalise, remove from A's row its projection on B's row, centred PCA, variances."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    An = A / np.sqrt((A ** 2).sum(axis=1, keepdims=True))
    Bn = B / np.sqrt((B ** 2).sum(axis=1, keepdims=True))
    R = An - (An * Bn).sum(axis=1, keepdims=True) * Bn
    Rc = R - R.mean(axis=0)
    with threadpool_limits(1):   # threaded LAPACK on small matrices crawls on a busy machine
        evals, evecs = np.linalg.eigh(Rc.T @ Rc)       # independent of the package's SVD / Krylov
    P = evecs[:, ::-1][:, :k].T                         # [k, n_train]
    n = A.shape[0]
    var = lambda X: (((X - X.mean(axis=0)) @ P.T) ** 2).sum(axis=0) / n
    return P, var(An), var(Bn), Rc @ P.T, evals[::-1][:k] / n


def structured(rng, n, m, rank=8):
    """Random matrices whose residual spectrum decays (so components are well defined)."""
    scale = np.geomspace(4.0, 0.5, rank)
    B = rng.normal(size=(n, rank)) @ (scale[:, None] * rng.normal(size=(rank, m))) + rng.normal(size=(n, m))
    A = B + rng.normal(size=(n, rank)) @ (scale[:, None] * rng.normal(size=(rank, m))) * 0.7
    return A.astype(np.float32), B.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["gaussian", "structured"])
def test_full_solver_matches_numpy_reference(seed, kind):
    rng = np.random.default_rng(seed)
    n, m, k = 60, 250, 5
    if kind == "gaussian":
        A, B = (rng.normal(size=(n, m)).astype(np.float32) for _ in range(2))
    else:
        A, B = structured(rng, n, m)
    P, va, vb, proj, ev = reference(A, B, k)
    md = ModelDiff(k).fit(A, B)
    assert md.solver_ == "full"
    cos = np.abs((md.components_.astype(np.float64) * P).sum(axis=1))
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(md.explained_variance_a_, va, atol=1e-5)
    np.testing.assert_allclose(md.explained_variance_b_, vb, atol=1e-5)
    np.testing.assert_allclose(md.explained_variance_, ev, atol=1e-5)
    signs = np.sign((md.components_ * P).sum(axis=1))
    np.testing.assert_allclose(md.test_projections_, proj * signs, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(md.components_, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("seed", [3, 4])
def test_randomized_solver_matches_numpy_reference(seed):
    A, B = structured(np.random.default_rng(seed), 600, 700)
    P, va, vb, _, ev = reference(A, B, 4)
    md = ModelDiff(4, solver="randomized", dtype=torch.float64, tol=1e-6, max_passes=30).fit(A, B)
    assert md.solver_ == "randomized" and md.converged_
    cos = np.abs((md.components_ * P).sum(axis=1))
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(md.explained_variance_a_, va, atol=1e-5)
    np.testing.assert_allclose(md.explained_variance_b_, vb, atol=1e-5)
    np.testing.assert_allclose(md.explained_variance_, ev, atol=1e-5)


def test_signs_are_deterministic_and_largest_entry_positive():
    A, B = structured(np.random.default_rng(5), 50, 120)
    first = ModelDiff(3).fit(A, B).components_
    again = ModelDiff(3).fit(A.copy(), B.copy()).components_
    np.testing.assert_array_equal(first, again)
    top = np.abs(first).argmax(axis=1)
    assert (first[np.arange(3), top] > 0).all()


def test_unnormalized_residual_matches_reference_formula():
    rng = np.random.default_rng(6)
    A, B = rng.normal(size=(40, 90)), rng.normal(size=(40, 90)) * rng.uniform(0.5, 3, size=(40, 1))
    R = A - ((A * B).sum(1) / (B * B).sum(1))[:, None] * B
    Rc = R - R.mean(axis=0)
    P = np.linalg.svd(Rc, full_matrices=False)[2][:3]
    md = ModelDiff(3, normalize=False, dtype=torch.float64).fit(A, B)
    assert np.abs((md.components_ * P).sum(axis=1)).min() >= 0.9999
    Ac = A - A.mean(axis=0)
    np.testing.assert_allclose(md.explained_variance_a_, ((Ac @ md.components_.T) ** 2).mean(0), rtol=1e-8)
