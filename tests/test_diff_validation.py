"""Each user mistake gives one UserError that names the problem (and what to do)."""
import numpy as np
import pytest
import torch

from datamodels.base.errors import UserError
from modeldiff import ModelDiff


def pair(n=30, m=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, m)).astype(np.float32), rng.normal(size=(n, m)).astype(np.float32)


def test_mismatched_shapes():
    A, B = pair()
    with pytest.raises(UserError, match=r"different shapes \(30, 50\) and \(30, 49\).*same test and training"):
        ModelDiff(2).fit(A, B[:, :49])


def test_not_two_dimensional():
    A, B = pair()
    with pytest.raises(UserError, match=r"scores_b must be a 2-D attribution matrix.*\(1500,\)"):
        ModelDiff(2).fit(A, B.ravel())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["scores_a", "scores_b"])
def test_non_finite_values(bad, which):
    A, B = pair()
    target = A if which == "scores_a" else B
    target[4, 7] = bad
    target[9, 0] = bad
    with pytest.raises(UserError, match=rf"{which} has non-finite values .* in 2 of 30 rows, the first at row 4"):
        ModelDiff(2).fit(A, B)


def test_non_finite_in_torch_input():
    A, B = pair()
    B[2, 2] = np.nan
    with pytest.raises(UserError, match="scores_b has non-finite values"):
        ModelDiff(2).fit(torch.from_numpy(A), torch.from_numpy(B))


@pytest.mark.parametrize("k", [30, 31, 100])
def test_too_many_components(k):
    A, B = pair()
    with pytest.raises(UserError, match=rf"n_components={k} must be smaller than the number of usable test rows 30"):
        ModelDiff(k).fit(A, B)


def test_too_many_components_after_excluding_zero_rows():
    A, B = pair(n=6)
    A[:3] = 0
    with pytest.warns(UserWarning, match="excluding 3 test rows"), \
            pytest.raises(UserError, match=r"usable test rows 3 \(3 all-zero rows were excluded\)"):
        ModelDiff(3).fit(A, B)


def test_more_components_than_training_examples():
    A, B = pair(n=30, m=4)
    with pytest.raises(UserError, match="exceeds the number of training examples 4"):
        ModelDiff(5).fit(A, B)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_bad_n_components(k):
    A, B = pair()
    with pytest.raises(UserError, match="n_components must be a positive integer"):
        ModelDiff(k).fit(A, B)


def test_bad_solver_and_dtype():
    A, B = pair()
    with pytest.raises(UserError, match="solver must be one of auto, full, randomized, got 'arpack'"):
        ModelDiff(2, solver="arpack").fit(A, B)
    with pytest.raises(UserError, match="scores_a has dtype complex64; attribution scores must be real"):
        ModelDiff(2).fit(A.astype(np.complex64), B)
    with pytest.raises(UserError, match="scores_b has dtype torch.bool"):
        ModelDiff(2).fit(torch.from_numpy(A), torch.from_numpy(B) > 0)


def test_single_test_row_is_refused():
    A, B = pair(n=1)
    with pytest.raises(UserError, match="too small: ModelDiff needs at least 2 test rows"):
        ModelDiff(1).fit(A, B)
