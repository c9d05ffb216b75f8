"""Planted features: ModelDiff must find the training examples a feature lives on.

Residual PCA alone is symmetric (the A−B and B−A residual of a row span the same plane),
so what tells the algorithms apart is the explained variance under A versus under B; the
tests check both the subset a component picks and that variance comparison.
"""
import numpy as np
import pytest

from modeldiff import ModelDiff

N_TEST, N_TRAIN, SUPPORT = 200, 1000, 50


def planted(rng, amplitude):
    """A rank-one feature: training subset S (weights 1), test subset T (random strengths)."""
    S = rng.choice(N_TRAIN, SUPPORT, replace=False)
    T = rng.choice(N_TEST, int(rng.integers(50, 90)), replace=False)
    v = np.zeros(N_TRAIN)
    v[S] = 1.0
    u = np.zeros(N_TEST)
    u[T] = amplitude * rng.uniform(0.5, 1.5, size=T.size)
    return S, np.outer(u, v)


def top_share(component, subset, by_value=True):
    order = np.argsort(-component if by_value else -np.abs(component))[:SUPPORT]
    return np.isin(order, subset).mean()


def most_distinguishing(md):
    return int(np.argmax(md.explained_variance_a_ - md.explained_variance_b_))


@pytest.mark.parametrize("solver", ["full", "randomized"])
@pytest.mark.parametrize("seed,amplitude", [(0, 2.0), (1, 1.5), (2, 3.0), (3, 2.0)])
def test_feature_planted_in_a_only(seed, amplitude, solver):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(N_TEST, N_TRAIN))
    S, feature = planted(rng, amplitude)
    A = (B + feature).astype(np.float32)
    B = B.astype(np.float32)

    a_minus_b = ModelDiff(4, solver=solver, random_state=seed).fit(A, B)
    assert top_share(a_minus_b.components_[0], S) >= 0.9   # sign fixed: the planted weights are positive
    assert a_minus_b.explained_variance_a_[0] > 2 * a_minus_b.explained_variance_b_[0]

    b_minus_a = ModelDiff(4, solver=solver, random_state=seed).fit(B, A)
    under_b, under_a = b_minus_a.explained_variance_a_, b_minus_a.explained_variance_b_
    assert (under_b > under_a).sum() >= 2          # B-leaning directions exist ...
    for j in range(4):                             # ... and none of them is the planted subset
        if under_b[j] > under_a[j]:
            assert top_share(b_minus_a.components_[j], S, by_value=False) <= 0.5
        else:   # the residual plane is shared, so S may show up here: as a direction A uses, not B
            assert under_a[j] > under_b[j]


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_features_planted_in_both_are_told_apart(seed):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(N_TEST, N_TRAIN))
    S_a, feature_a = planted(rng, 2.0)
    S_b, feature_b = planted(rng, 2.5)
    S_b = np.setdiff1d(S_b, S_a)   # overlap is rare; keep the check about disjoint examples
    A = (shared + feature_a).astype(np.float32)
    B = (shared + feature_b).astype(np.float32)

    a_minus_b = ModelDiff(5).fit(A, B)
    j = most_distinguishing(a_minus_b)
    assert top_share(a_minus_b.components_[j], S_a, by_value=False) >= 0.9
    assert top_share(a_minus_b.components_[j], S_b, by_value=False) <= 0.1
    assert a_minus_b.explained_variance_a_[j] > a_minus_b.explained_variance_b_[j]

    b_minus_a = ModelDiff(5).fit(B, A)
    j = most_distinguishing(b_minus_a)
    assert top_share(b_minus_a.components_[j], S_b, by_value=False) >= 0.9
    assert top_share(b_minus_a.components_[j], S_a, by_value=False) <= 0.1


def test_top_test_projections_are_the_planted_test_rows():
    rng = np.random.default_rng(7)
    B = rng.normal(size=(N_TEST, N_TRAIN))
    u = np.zeros(N_TEST)
    T = rng.choice(N_TEST, 40, replace=False)
    u[T] = 3.0
    v = np.zeros(N_TRAIN)
    v[rng.choice(N_TRAIN, SUPPORT, replace=False)] = 1.0
    md = ModelDiff(2).fit((B + np.outer(u, v)).astype(np.float32), B.astype(np.float32))
    top_rows = np.argsort(-np.abs(md.test_projections_[:, 0]))[:40]
    assert np.isin(top_rows, T).mean() >= 0.9
