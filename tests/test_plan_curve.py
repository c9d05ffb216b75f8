"""`modeldiff plan --pilot`: the one statistical model (signal + between-model noise / n) on simulated
per-model values with known answers — the LDS of larger ensembles, the precision (correlation with infinitely
many models' scores: sqrt(v / (v + s2 / n)) for signal variance v and noise variance s2), the models needed,
intervals, and one-line errors."""
import numpy as np
import pytest

from datamodels.base.errors import UserError
from modeldiff.plan.curve import fit_curve


def test_variance_components_predict_the_lds_of_larger_ensembles():
    """Per-model predictions with known signal and noise: the curve fitted on 8 models predicts the Spearman
    correlation that averaging 32 models actually gives."""
    from datamodels.attribution.lds import spearman_columns

    rng = np.random.default_rng(0)
    u, t = 200, 150
    mu = rng.normal(size=(u, t))
    noise_sd = rng.uniform(1.0, 6.0, size=t)  # test examples differ in their signal-to-noise ratio
    margins = 0.8 * mu + rng.normal(size=(u, t))
    preds = mu[None] + noise_sd[None, None, :] * rng.normal(size=(64, u, t))
    curve = fit_curve(preds[:8], margins)
    for n in (8, 32):
        actual = np.mean(spearman_columns(preds[8:8 + n].mean(0), margins))
        mid, lo, hi = curve.predict(n)
        assert abs(mid - actual) < 0.03 and lo - 0.02 <= actual <= hi + 0.02, (n, mid, lo, hi, actual)
    n, n_lo, n_hi = curve.models_for(0.9 * curve.ceiling)
    assert n_lo <= n <= n_hi or n_hi is None
    with pytest.raises(UserError, match="above what this estimator reaches"):
        curve.models_for(0.99)


def _scores(rng, m, t=40, n_train=400, v=1.0, s2=9.0):
    """``m`` models' scores as ``[m, n_train, t]``: mu (variance v over training examples) + noise (variance s2);
    each model also shifts each test row by a constant (which changes no correlation)."""
    mu = rng.normal(0, np.sqrt(v), size=(n_train, t))
    shift = rng.normal(0, 5.0, size=(m, 1, t))
    return mu, mu[None] + rng.normal(0, np.sqrt(s2), size=(m, n_train, t)) + shift


def _measured(rng, mu, n, s2=9.0):
    """The precision averaging ``n`` fresh models gives: mean over test rows of the correlation with mu."""
    a = mu + rng.normal(0, np.sqrt(s2 / n), size=mu.shape)
    a, b = a - a.mean(0), mu - mu.mean(0)
    return float(np.mean((a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))))


def test_precision_curve_recovers_the_known_curve_and_the_models_needed():
    rng = np.random.default_rng(0)
    mu, scores = _scores(rng, 12)
    curve = fit_curve(scores)
    for n in (4, 12, 48, 200):
        mid, lo, hi = curve.predict(n)
        truth = np.sqrt(1 / (1 + 9 / n))
        assert mid == pytest.approx(truth, abs=0.02) and lo - 0.01 <= truth <= hi + 0.01 and lo <= mid <= hi, n
        assert _measured(rng, mu, n) == pytest.approx(truth, abs=0.02)
    need, need_lo, need_hi = curve.models_for(0.9)
    exact = 9.0 * 0.81 / 0.19  # n with sqrt(1 / (1 + 9 / n)) = 0.9: 38.4
    assert need == pytest.approx(exact, rel=0.15) and need_lo <= need <= need_hi
    assert curve.predict(need)[0] >= 0.9 > curve.predict(need - 1)[0]
    assert _measured(rng, mu, need) == pytest.approx(0.9, abs=0.02)  # averaging that many models delivers it


def test_precision_intervals_cover_the_truth():
    """95 % jackknife intervals at 4x the pilot cover the true precision (of these examples: each row's realised
    signal variance) in most seeded pilots."""
    covered = 0
    for seed in range(30):
        mu, scores = _scores(np.random.default_rng(100 + seed), 8, t=20, n_train=200)
        v = mu.var(0, ddof=1)
        _, lo, hi = fit_curve(scores).predict(32)
        covered += lo <= float(np.mean(np.sqrt(v / (v + 9.0 / 32)))) <= hi
    assert covered >= 24, covered


def test_more_noise_needs_more_models():
    rng = np.random.default_rng(3)
    needs = [fit_curve(_scores(rng, 10, s2=s2)[1]).models_for(0.8)[0] for s2 in (1.0, 4.0, 16.0)]
    assert needs[0] < needs[1] < needs[2]
    for s2, n in zip((1.0, 4.0, 16.0), needs):
        assert n == pytest.approx(s2 * 0.64 / 0.36, rel=0.2, abs=1)


def test_heavy_tailed_scores_are_predicted_too():
    """Attribution-like scores (a few huge entries per row, Student-t noise): the pilot's curve predicts the
    precision that 16 fresh models actually give."""
    rng = np.random.default_rng(5)
    t, n_train = 30, 600
    mu = rng.standard_t(2.5, size=(n_train, t))
    scores = mu[None] + 3.0 * rng.standard_t(2.5, size=(40, n_train, t))
    a, b = scores[8:24].mean(0), mu
    a, b = a - a.mean(0), b - b.mean(0)
    measured = float(np.mean((a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))))
    mid, lo, hi = fit_curve(scores[:8]).predict(16)
    assert abs(mid - measured) < 0.05 and lo <= mid <= hi, (lo, mid, hi, measured)


def test_unreachable_or_invalid_target_is_one_line_error():
    rng = np.random.default_rng(4)
    with pytest.raises(UserError, match="no reproducible signal") as e:
        fit_curve(rng.normal(size=(10, 300, 20)))  # no signal
    assert "\n" not in str(e.value)
    curve = fit_curve(_scores(rng, 10, t=20)[1])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(UserError, match="must be in"):
            curve.models_for(bad)
    with pytest.raises(UserError, match="above what this estimator reaches"):
        curve.models_for(1 - 1e-9)
    with pytest.raises(UserError, match="at least 3 pilot models"):
        fit_curve(_scores(rng, 2)[1])
