"""Datamodels regression: equal to scikit-learn's lasso, λ chosen on held-out models, robust."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, lasso_path

from datamodels.attribution.lasso import Design, fista
from datamodels.attribution.regression import DatamodelsRegression, split_models


def _problem(seed=0, n=160, p=50, t=5, noise=0.5):
    rng = np.random.default_rng(seed)
    x = rng.random((n, p)) < 0.5
    w = rng.normal(size=(p, t)) * (rng.random((p, t)) < 0.2)
    y = x @ w + noise * rng.normal(size=(n, t))
    return x, y


def _fit(x, y, write=None, **kw):
    kw = {"dtype": torch.float64, "tol": 1e-12, "max_iter": 100000, "progress": False, **kw}
    return DatamodelsRegression(**kw).fit(x, y, write=write)


@pytest.mark.parametrize("gram_max_bytes", [1 << 30, 0], ids=["gram", "design"])
def test_equals_sklearn_lasso_at_chosen_lambda(gram_max_bytes):
    x, y = _problem()
    reg = _fit(x, y, gram_max_bytes=gram_max_bytes)
    assert reg.converged_ == 1.0
    for t in range(y.shape[1]):
        sk = Lasso(alpha=reg.lambda_[t], tol=1e-12, max_iter=100000).fit(x.astype(float), y[:, t])
        assert np.abs(sk.coef_).max() > 0
        np.testing.assert_allclose(reg.coef_[t], sk.coef_, rtol=0,
                                   atol=1e-3 * np.abs(sk.coef_).max())
        assert reg.intercept_[t] == pytest.approx(sk.intercept_, rel=1e-3, abs=1e-6)


def test_fista_core_equals_sklearn_on_a_path_of_lambdas():
    x, y = _problem(seed=3, n=90, p=70, t=1)  # p close to n: harder conditioning
    xc = torch.tensor(x - x.mean(0))
    prob = Design(xc).targets(torch.tensor(y - y.mean(0)))
    alphas, sk_coefs, _ = lasso_path(xc.numpy(), y[:, 0] - y[:, 0].mean(), alphas=8, eps=1e-2,
                                     tol=1e-12, max_iter=100000)
    w = torch.zeros(70, 1, dtype=torch.float64)
    for a, ref in zip(alphas, sk_coefs.T):
        w, ok, _ = fista(prob, w, torch.tensor([a]), tol=1e-12, max_iter=100000)
        assert bool(ok.all())
        np.testing.assert_allclose(w[:, 0].numpy(), ref, atol=1e-3 * max(np.abs(ref).max(), 1e-9))


def test_lambda_selection_is_the_heldout_best():
    x, y = _problem(seed=1, n=200, p=40, t=4, noise=1.5)
    reg = _fit(x, y, n_lambdas=12, eps=1e-2, val_fraction=0.25, seed=7, patience=None)
    early = _fit(x, y, n_lambdas=12, eps=1e-2, val_fraction=0.25, seed=7, patience=2)
    np.testing.assert_array_equal(early.lambda_index_, reg.lambda_index_)  # U-shaped curves
    np.testing.assert_allclose(early.coef_, reg.coef_, atol=1e-6)
    assert np.isnan(early.val_mse_).any() and not np.isnan(reg.val_mse_).any()
    tr, va = split_models(len(y), 0.25, 7)
    xf = x.astype(float)
    for t in range(y.shape[1]):
        lams = reg.lambdas_[:, t]
        _, coefs, _ = lasso_path(xf[tr] - xf[tr].mean(0), y[tr, t] - y[tr, t].mean(), alphas=lams,
                                 tol=1e-12, max_iter=100000)
        intercepts = y[tr, t].mean() - xf[tr].mean(0) @ coefs
        mse = ((y[va, t][:, None] - xf[va] @ coefs - intercepts) ** 2).mean(0)
        np.testing.assert_allclose(reg.val_mse_[:, t], mse, rtol=1e-6)
        assert reg.lambda_index_[t] == int(np.argmin(mse))
        assert reg.lambda_[t] == pytest.approx(lams[np.argmin(mse)])
    assert set(reg.lambda_index_.tolist()) - {0, 11}  # an interior choice: the test can fail


def test_constant_target_and_constant_mask_column():
    x, y = _problem(seed=2, t=3)
    x[:, 0] = True  # an example every model saw: no information about it
    y[:, 1] = 2.5  # a test example whose margin never changes
    reg = _fit(x, y)
    assert np.isfinite(reg.coef_).all() and np.isfinite(reg.intercept_).all()
    assert np.all(reg.coef_[1] == 0) and reg.intercept_[1] == pytest.approx(2.5)
    assert np.all(reg.coef_[:, 0] == 0)
    assert np.abs(reg.coef_[[0, 2]]).max() > 0


def test_target_blocks_and_streaming_do_not_change_the_result():
    x, y = _problem(seed=4, t=7)
    ref = _fit(x, y, target_block=64)
    rows = {}
    _fit(x, y, target_block=3, write=lambda s, b: rows.update({s: b}))
    assert sorted(rows) == [0, 3, 6]
    np.testing.assert_allclose(np.concatenate([rows[k] for k in sorted(rows)]), ref.coef_,
                               atol=1e-6 * np.abs(ref.coef_).max())


def test_float32_default_is_close_to_float64():
    x, y = _problem(seed=5)
    a = DatamodelsRegression(progress=False).fit(x, y)
    b = _fit(x, y, tol=1e-4)
    np.testing.assert_array_equal(a.lambda_index_, b.lambda_index_)
    assert np.abs(a.coef_ - b.coef_).max() < 2e-2 * np.abs(b.coef_).max()


def test_bad_inputs():
    x, y = _problem()
    with pytest.raises(ValueError, match="share N"):
        DatamodelsRegression(progress=False).fit(x[:-1], y)
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DatamodelsRegression(progress=False).fit(x, y)


def test_planted_sparse_datamodels_are_recovered():
    from datamodels.attribution.lds import lds

    rng = np.random.default_rng(8)
    n_train, n_test = 100, 10
    true = rng.normal(size=(n_test, n_train)) * (rng.random((n_test, n_train)) < 0.1)
    masks = rng.random((400, n_train)) < 0.5
    margins = masks @ true.T + 0.5 * rng.normal(size=(400, n_test))
    reg = DatamodelsRegression(progress=False).fit(masks[:300], margins[:300])
    assert lds(reg.coef_, masks[300:], margins[300:]).mean > 0.8
    support = np.abs(true) > 0
    assert (np.abs(reg.coef_[support]) > 0).mean() > 0.9  # finds the true effects
    assert np.abs(reg.coef_[~support]).mean() < 0.1 * np.abs(true[support]).mean()
