"""Input checks for ModelDiff: every problem a user can fix becomes one `UserError`.

Each message names the problem *and* what to do about it. The checks that need the
values themselves (non-finite entries, all-zero rows) are made during the estimator's
single pass over the rows, so that the 2-GB inputs of a real study are read once; the
functions here turn what that pass found into the error or the warning.
"""
from __future__ import annotations

import warnings

import numpy as np

from datamodels.base.errors import UserError
from datamodels.registry import is_target
from modeldiff.diff.names import SOLVERS


def check_distinct(scores_a, scores_b) -> None:
    """Refuse identical matrices: A − B is then zero and its "components" are rounding noise."""
    import torch

    if scores_a is scores_b:
        same = True
    elif isinstance(scores_a, torch.Tensor) or isinstance(scores_b, torch.Tensor):
        same = bool(torch.equal(torch.as_tensor(scores_a).cpu(), torch.as_tensor(scores_b).cpu()))
    else:
        same = bool(np.array_equal(np.asarray(scores_a), np.asarray(scores_b)))
    if same:
        raise UserError("scores_a and scores_b are identical: the residual A − B is zero and its components would be "
                        "rounding noise; compare the attributions of two different algorithms (for a null, two "
                        "halves of one algorithm's models)")


def check_pair(scores_a, scores_b) -> tuple[int, int]:
    """Check two attribution matrices and return their common shape ``(n_test, n_train)``.

    Both must be 2-D ``[n_test, n_train]`` arrays of real numbers with the same shape
    (same test examples, same training examples, same order).
    """
    shapes = []
    for name, x in (("scores_a", scores_a), ("scores_b", scores_b)):
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 2:
            raise UserError(
                f"{name} must be a 2-D attribution matrix [n_test, n_train], got shape {shape}; "
                "pass one row per test example and one column per training example")
        kind = getattr(getattr(x, "dtype", None), "kind", None)
        if kind is None:  # a torch tensor: ask torch
            ok = x.dtype.is_floating_point or not (x.dtype.is_complex or str(x.dtype) == "torch.bool")
        else:
            ok = kind in "fiu"
        if not ok:
            raise UserError(
                f"{name} has dtype {x.dtype}; attribution scores must be real numbers "
                "(convert with .astype(np.float32))")
        shapes.append(shape)
    if shapes[0] != shapes[1]:
        raise UserError(
            f"scores_a and scores_b have different shapes {shapes[0]} and {shapes[1]}; both must be "
            "[n_test, n_train] over the same test and training examples in the same order")
    n_test, n_train = shapes[0]
    if n_test < 2 or n_train < 1:
        raise UserError(
            f"attribution matrices of shape {shapes[0]} are too small: ModelDiff needs at least "
            "2 test rows and 1 training column")
    return n_test, n_train


def check_params(n_components, solver: str) -> None:
    """Check the estimator's hyper-parameters before any data is touched."""
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
            or n_components < 1:
        raise UserError(
            f"n_components must be a positive integer, got {n_components!r}")
    if isinstance(solver, str) and solver not in SOLVERS and not is_target(solver) or not (
            isinstance(solver, str) or callable(solver)):
        raise UserError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")


def check_n_components(n_components: int, n_rows: int, n_train: int, n_excluded: int = 0) -> None:
    """Refuse ``n_components >= n_rows`` (rows left after exclusions) or ``> n_train``."""
    if n_components >= n_rows:
        extra = f" ({n_excluded} all-zero rows were excluded)" if n_excluded else ""
        raise UserError(
            f"n_components={n_components} must be smaller than the number of usable test rows "
            f"{n_rows}{extra}: centred residuals of {n_rows} rows have at most {n_rows - 1} "
            f"components; ask for at most {max(n_rows - 1, 1)} or add test examples")
    if n_components > n_train:
        raise UserError(
            f"n_components={n_components} exceeds the number of training examples {n_train}; "
            f"ask for at most {n_train}")


def raise_nonfinite(name: str, x, first_row: int) -> None:
    """Raise the error for non-finite entries, counting the bad rows of ``x`` (error path only)."""
    n_bad = 0
    for start in range(0, x.shape[0], 1024):
        block = np.asarray(x[start:start + 1024].cpu() if hasattr(x, "cpu") else x[start:start + 1024])
        with np.errstate(over="ignore"):
            n_bad += int((~np.isfinite(block.astype(np.float64) ** 2).all(axis=1)).sum())
    raise UserError(
        f"{name} has non-finite values (NaN or Inf, or magnitudes too large to square) in "
        f"{n_bad} of {x.shape[0]} rows, the first at row {first_row}; fix or drop those test "
        "rows (e.g. scores[~np.isfinite(scores).all(1)]) before running ModelDiff")


def warn_excluded(zero_a: np.ndarray, zero_b: np.ndarray) -> None:
    """Warn that rows with an all-zero attribution vector (in A or in B) are excluded.

    Such a row has no direction to normalise; the estimator leaves it out of the residual
    PCA and of the explained variances, and gives it NaN in ``test_projections_``.
    """
    bad = np.flatnonzero(zero_a | zero_b)
    if bad.size == 0:
        return
    head = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
    warnings.warn(
        f"excluding {bad.size} test rows whose attribution vector is all zeros "
        f"({int(zero_a.sum())} in scores_a, {int(zero_b.sum())} in scores_b; rows {head}); "
        "their test_projections_ are NaN. Drop them or re-estimate them to silence this warning.",
        UserWarning, stacklevel=3)
