"""Counterfactual statistics on simulated model outputs whose true effects are known."""
import numpy as np
import pytest
import torch

from modeldiff.counterfactual.effect_stats import compare_effects, estimate_effect
from modeldiff.counterfactual.effects import counterfactual_effects, model_effects, patch_size_sweep, select_inputs
from modeldiff.counterfactual.transforms import PatchPaste

H = W = 6
REF_PIXELS = 4   # a 2x2 white patch has exactly each model's effect


class SimulatedModels:
    """Pr(target | x) = base(x) + effect[m] · (white pixels of x) / REF_PIXELS; 3 classes.

    ``base`` reads only the bottom-right pixel, which patches at (0, 0) never touch, so a
    model's true effect of a white s×s patch is ``effect[m] · s² / REF_PIXELS``.
    """

    def __init__(self, effects, target=0):
        self.effects = torch.as_tensor(effects, dtype=torch.float64)
        self.target = target

    def __call__(self, x):
        white = (x[:, 0] >= 0.999).flatten(1).double().sum(1) / REF_PIXELS     # [n]
        base = 0.3 + 0.1 * x[:, 0, -1, -1].double()                             # [n]
        p = base[None, :] + self.effects[:, None] * white[None, :]              # [M, n]
        out = ((1 - p) / 2)[..., None].repeat(1, 1, 3)
        out[..., self.target] = p
        return out


def inputs(n=24, seed=0):
    return 0.9 * torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(seed))


PATCH = PatchPaste(pattern="solid", size=2, loc=(0, 0), color=(1.0,))


def test_per_model_effects_are_exact_on_the_simulation():
    effects = np.array([0.1, -0.05, 0.2])
    got, control = model_effects(SimulatedModels(effects), inputs(), PATCH, target_class=0)
    np.testing.assert_allclose(got, effects, atol=1e-12)
    assert control.shape == (3, 24)


def test_ci_coverage_over_repetitions():
    """Nominal 95% CIs must cover the true mean effects in >= 90% of 200 simulated studies."""
    rng = np.random.default_rng(0)
    x = inputs()
    mu_a, mu_b = 0.12, 0.0
    covered = {"a": 0, "b": 0, "diff": 0}
    reps = 200
    for rep in range(reps):
        eff_a = mu_a - 0.06 + rng.gamma(shape=6.0, scale=0.01, size=40)      # mildly skewed, mean mu_a
        eff_b = rng.normal(mu_b, 0.05, size=25)
        r = counterfactual_effects(SimulatedModels(eff_a), SimulatedModels(eff_b), x, PATCH, 0,
                                   n_resamples=1999, seed=rep)
        c = r.comparison
        covered["a"] += c.a.covers(mu_a)
        covered["b"] += c.b.covers(mu_b)           # a zero effect: the CI contains 0
        covered["diff"] += c.diff.covers(mu_a - mu_b)
    for key, count in covered.items():
        assert count / reps >= 0.90, (key, count)


def test_exact_zero_effect_and_a_clear_difference():
    x = inputs()
    rng = np.random.default_rng(1)
    r = counterfactual_effects(SimulatedModels(rng.normal(0.15, 0.03, 20)), SimulatedModels(np.zeros(20)),
                               x, PATCH, 0, n_resamples=1999)
    c = r.comparison
    assert c.b.ci_low == 0.0 == c.b.ci_high and c.b.p_value == 1.0
    assert c.a.ci_low > 0.1 and c.diff.ci_low > 0.1 and c.diff.p_value < 1e-6
    assert r.to_dict()["diff"]["mean"] == pytest.approx(c.diff.mean)


def test_welch_p_values_are_calibrated_under_the_null():
    rng = np.random.default_rng(2)
    p = [compare_effects(rng.normal(0.1, 0.05, 15), rng.normal(0.1, 0.02, 40), n_resamples=999, seed=i).diff.p_value
         for i in range(200)]
    assert np.mean(np.array(p) < 0.05) <= 0.10


def test_same_seed_same_interval_and_single_model_has_no_interval():
    values = np.random.default_rng(3).normal(size=12)
    assert estimate_effect(values, seed=5) == estimate_effect(values, seed=5)
    one = estimate_effect([0.2])
    assert one.mean == 0.2 and np.isnan(one.ci_low) and np.isnan(one.p_value)
    with pytest.raises(ValueError, match="non-finite effects"):
        estimate_effect([0.1, np.nan])


def test_patch_size_sweep_table():
    rng = np.random.default_rng(4)
    eff_a, eff_b = rng.normal(0.04, 0.01, 20), rng.normal(0.0, 0.01, 20)
    sweep = patch_size_sweep(SimulatedModels(eff_a), SimulatedModels(eff_b), inputs(), PATCH, 0,
                             sizes=[1, 2, 3], n_resamples=999)
    rows = sweep.table()
    assert [row["size"] for row in rows] == [1, 2, 3]
    for row in rows:
        truth = eff_a.mean() * row["size"] ** 2 / REF_PIXELS
        assert row["effect_a"] == pytest.approx(truth, abs=1e-12)
        assert row["ci_a"][0] <= truth <= row["ci_a"][1]
    assert rows[0]["effect_a"] < rows[1]["effect_a"] < rows[2]["effect_a"]
    with pytest.raises(ValueError, match="no size parameter"):
        from modeldiff.counterfactual.transforms import Grayscale
        patch_size_sweep(SimulatedModels(eff_a), SimulatedModels(eff_b), inputs(), Grayscale(), 0, [1])


def test_predictor_output_is_checked_and_inputs_selected():
    x = inputs()
    with pytest.raises(ValueError, match=r"expected \[n_models, 24, K\]"):
        counterfactual_effects(lambda x: torch.zeros(3, 5), SimulatedModels([0.0]), x, PATCH, 0)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        counterfactual_effects(lambda x: torch.full((2, len(x), 3), 2.0), SimulatedModels([0.0]), x, PATCH, 0)
    with pytest.raises(ValueError, match="target class 7 is out of range for 3 classes"):
        counterfactual_effects(SimulatedModels([0.1]), SimulatedModels([0.0]), x, PATCH, 7)
    labels = np.array([0, 1, 2, 1, 0])
    assert select_inputs(labels, target_class=0).tolist() == [1, 2, 3]
    assert select_inputs(labels, target_class=0, source_classes=[2]).tolist() == [2]


def test_difference_ci_excludes_zero_exactly_when_p_is_below_5_percent():
    rng = np.random.default_rng(5)
    agree = []
    for _ in range(100):
        d = compare_effects(rng.normal(rng.uniform(0, 0.05), 0.05, 12), rng.normal(0, 0.05, 15), n_resamples=999).diff
        agree.append((d.p_value < 0.05) == (not d.covers(0.0)))
    assert all(agree)
