"""LDS: agrees with scipy's Spearman, averages seeds, bootstrap CI, recovers a planted model."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from datamodels.attribution.lds import average_over_seeds, lds, spearman_columns


def _planted(seed=0, n_models=120, n_train=80, n_test=15, noise=1.0):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n_test, n_train))
    masks = rng.random((n_models, n_train)) < 0.5
    margins = masks @ true.T + noise * rng.normal(size=(n_models, n_test))
    return true, masks, margins


def test_spearman_columns_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=(30, 4)).astype(float)
    b = rng.normal(size=(30, 4))
    ours = spearman_columns(a, b)
    for t in range(4):
        assert ours[t] == pytest.approx(spearmanr(a[:, t], b[:, t]).statistic, abs=1e-12)
    assert np.isnan(spearman_columns(np.ones((5, 1)), b[:5, :1]))[0]


def test_true_scores_beat_noisy_and_random_ones():
    true, masks, margins = _planted()
    good = lds(true, masks, margins)
    noisy = lds(true + 2 * np.random.default_rng(3).normal(size=true.shape), masks, margins)
    rand = lds(np.random.default_rng(4).normal(size=true.shape), masks, margins)
    assert good.mean > noisy.mean > rand.mean
    assert good.ci_low <= good.mean <= good.ci_high
    assert good.ci_low > 0.8 and abs(rand.mean) < 0.1
    assert good.n_subsets == 120 and good.per_test.shape == (15,)


def test_models_sharing_a_mask_are_averaged_over_seeds():
    true, masks, margins = _planted(n_models=40, noise=0.0)
    masks2 = np.concatenate([masks, masks])
    noise = np.random.default_rng(5).normal(size=margins.shape)
    margins2 = np.concatenate([margins + noise, margins - noise])  # seed noise cancels on average
    u, m = average_over_seeds(masks2, margins2)
    assert u.shape[0] == 40
    res = lds(true, masks2, margins2)
    assert res.n_subsets == 40 and res.n_models == 80
    assert res.mean == pytest.approx(1.0)


def test_zero_rows_count_as_zero_and_block_size_is_irrelevant():
    true, masks, margins = _planted()
    true[3] = 0
    a = lds(true, masks, margins, block=4)
    b = lds(true, masks, margins, block=1000)
    assert a.per_test[3] == 0
    np.testing.assert_allclose(a.per_test, b.per_test)


def test_shape_errors():
    true, masks, margins = _planted()
    with pytest.raises(ValueError, match="shapes disagree"):
        lds(true[:, :-1], masks, margins)
    with pytest.raises(ValueError, match="3 distinct"):
        lds(true, masks[:2], margins[:2])
