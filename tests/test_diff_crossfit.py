"""Cross-fitted ModelDiff against a simulation with known signal and noise covariances (float64)."""
import numpy as np
import pytest
import torch

import modeldiff.diff.crossfit as crossfit
from datamodels.base.errors import UserError
from modeldiff.diff.crossfit import CrossFitModelDiff
from modeldiff.diff.null import mean_halves
from modeldiff.diff.residual_pca import ModelDiff


def simulate(seed, n=400, m=120, units=16, signal=1.5, noise_big=8.0, noise_iso=0.5):
    """Per-model attributions ``[units, n, m]`` of A and B and the true directions.

    Both share a rank-3 signal; A alone has signal variance ``signal²`` along ``s``. Every
    model's estimation noise is isotropic (sd ``noise_iso``) plus a large direction ``d``
    (sd ``noise_big``): after averaging ``units`` models the noise variance along ``d``
    (``noise_big² / units`` = 4) exceeds the signal variance along ``s`` (2.25).
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(m, 5)))
    shared, s, d = q[:, :3], q[:, 3], q[:, 4]
    base = rng.normal(size=(n, 3)) * [6.0, 5.0, 4.0] @ shared.T
    a_signal = base + rng.normal(size=(n, 1)) * signal * s

    def models(mean):
        return mean[None] + rng.normal(size=(units, n, m)) * noise_iso + rng.normal(size=(units, n, 1)) * noise_big * d

    return models(a_signal), models(base), s, d


@pytest.mark.parametrize("seed", [0, 1])
def test_crossfit_recovers_signal_where_classic_picks_noise(seed):
    a, b, s, d = simulate(seed)
    classic = ModelDiff(3, solver="full", dtype=torch.float64).fit(a.mean(0), b.mean(0))
    assert abs(classic.components_[0] @ d) > 0.9   # the classic estimator's bias: the noise direction
    assert abs(classic.components_[0] @ s) < 0.3
    fit = CrossFitModelDiff(3).fit(mean_halves(a, b, n_splits=4, seed=seed))
    assert abs(fit.components_[0] @ s) > 0.9       # the signal direction
    assert abs(fit.components_[0] @ d) < 0.3
    assert fit.explained_variance_a_[0] > 5 * fit.explained_variance_b_[0]
    assert fit.explained_variance_[0] > 2 * fit.explained_variance_[1]
    np.testing.assert_allclose(fit.components_ @ fit.components_.T, np.eye(3), atol=1e-8)


def test_lanczos_agrees_with_dense(monkeypatch):
    a, b, s, _ = simulate(2, n=200, m=80)
    dense = CrossFitModelDiff(2).fit(mean_halves(a, b, n_splits=2))
    monkeypatch.setattr(crossfit, "_MAX_DENSE", 10)
    lanczos = CrossFitModelDiff(2).fit(mean_halves(a, b, n_splits=2))
    assert (dense.solver_, lanczos.solver_) == ("dense", "lanczos")
    np.testing.assert_allclose(np.abs((dense.components_ * lanczos.components_).sum(1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(dense.explained_variance_, lanczos.explained_variance_, rtol=1e-6)


def test_row_scale_and_zero_rows():
    a, b, _, _ = simulate(3, n=120, m=60, units=4)
    splits = list(mean_halves(a, b, n_splits=2))
    ref = CrossFitModelDiff(2).fit(splits)
    scaled = [tuple(x * np.linspace(0.1, 10, x.shape[0])[:, None] for x in sp) for sp in splits]
    np.testing.assert_allclose(CrossFitModelDiff(2).fit(scaled).components_, ref.components_, atol=1e-8)
    zeroed = [tuple(x.copy() for x in sp) for sp in splits]
    zeroed[0][1][5] = 0.0
    fit = CrossFitModelDiff(2).fit(zeroed)
    assert fit.excluded_rows_.tolist() == [5] and np.isnan(fit.test_projections_[5]).all()


def test_bad_splits_are_refused():
    a = np.ones((5, 4))
    with pytest.raises(UserError, match="at least one split"):
        CrossFitModelDiff(1).fit([])
    with pytest.raises(UserError, match="A1, A2, B1, B2"):
        CrossFitModelDiff(1).fit([(a, a, a)])
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError, match="non-finite"):
        CrossFitModelDiff(1).fit([(a, bad, a, a)])
