"""`planted_signal`: the share of the A−B residual variance along the planted set, checked against an
independent SVD of ModelDiff's residuals on synthetic attributions with a planted direction of known
strength."""
import numpy as np

from case_studies.planted.metrics import planted_signal
from modeldiff.diff.residual_pca import ModelDiff


def _scores(strength: float, seed: int = 0, n_test: int = 120, n_train: int = 300):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n_test, n_train))
    a = b + 0.3 * rng.normal(size=(n_test, n_train))  # A = B + A's own noise
    planted = rng.choice(n_train, 20, replace=False)
    rows = rng.random(n_test) < 0.5
    a[np.ix_(rows, planted)] += strength  # the rows that carry the feature lean on the planted set
    return a, b, planted


def test_strong_plant_is_the_top_component_weak_one_is_not():
    a, b, planted = _scores(strength=3.0)
    top = ModelDiff(n_components=1, solver="full").fit(a, b).components_[0]
    s = planted_signal(a, b, planted, top)
    assert s["cosine"] > 0.95 and 0.9 < s["share"] <= 1.0 + 1e-9, s
    a, b, planted = _scores(strength=0.0)  # no plant: a direction like any other
    top = ModelDiff(n_components=1, solver="full").fit(a, b).components_[0]
    s = planted_signal(a, b, planted, top)
    assert s["share"] < 0.2 and s["cosine"] < 0.5, s


def test_variances_match_an_independent_svd():
    a, b, planted = _scores(strength=0.5, seed=3)
    an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    r = an - np.sum(an * bn, 1, keepdims=True) * bn
    r = r - r.mean(0)
    _, sv, vt = np.linalg.svd(r, full_matrices=False)
    s = planted_signal(a, b, planted, vt[0])
    np.testing.assert_allclose(s["top_variance"], sv[0] ** 2 / len(r), rtol=1e-10)
    v = np.zeros(a.shape[1])
    v[planted] = 1 / np.sqrt(len(planted))
    np.testing.assert_allclose(s["planted_variance"], np.mean((r @ v) ** 2), rtol=1e-10)
    assert s["share"] <= 1 + 1e-9  # the top singular direction has the most variance of any
