"""The controls of the paper-direction test, on simulated models and effects with known answers."""
import numpy as np
import pytest
import torch
from scipy.special import softmax

from case_studies.sgd_noise import paper_controls as pc


def _labels(z, rng):
    p = softmax(z, -1)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])


def test_fitted_temperature_undoes_a_known_logit_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (2000, 10))
    y = _labels(z, rng)  # labels drawn from softmax(z): z is calibrated
    t = pc.fit_temperature(np.stack([3.0 * z, 0.5 * z, z]), y)
    assert t == pytest.approx([3.0, 0.5, 1.0], rel=0.1)
    ece = pc.calibration_error(np.stack([3.0 * z, z]), y)
    assert ece[0] > 2 * ece[1]  # the over-confident copy is the worse calibrated


def test_rescale_is_softmax_of_logits_over_temperature():
    z = torch.randn(3, 5, 4, dtype=torch.float64)
    t = np.array([0.5, 1.0, 4.0])
    got = pc.rescale(torch.softmax(z, -1), t)
    assert torch.allclose(got, torch.softmax(z / torch.as_tensor(t).view(-1, 1, 1), -1), atol=1e-12)


def test_temperature_control_removes_a_pure_confidence_difference():
    """Low noise = the high-noise models with logits twice as large: its log-odds effects are larger, but
    at each model's fitted temperature the two are the same models."""
    g = torch.Generator().manual_seed(0)
    z_clean = torch.randn(6, 50, 4, generator=g, dtype=torch.float64)
    z_treated = z_clean + torch.tensor([0.0, 0.0, 0.8, 0.0], dtype=torch.float64)  # pushes every model to class 2
    high = pc.effects(torch.softmax(z_clean, -1), torch.softmax(z_treated, -1), 2)
    low = pc.effects(torch.softmax(2 * z_clean, -1), torch.softmax(2 * z_treated, -1), 2)
    assert (low > 1.5 * high).all()
    low_t = pc.effects(torch.softmax(2 * z_clean, -1), torch.softmax(2 * z_treated, -1), 2, np.full(6, 2.0))
    assert low_t == pytest.approx(high, abs=1e-9)


def _sim(rng, mean, m=16, sd=0.1):
    return rng.normal(mean, sd, m)


def test_occluder_control_separates_pattern_reliance_from_occlusion_sensitivity():
    rng = np.random.default_rng(1)
    sizes = (4, 8)
    grey_low = {("solid", "dog", s): _sim(rng, 0.5) for s in sizes}
    grey_high = {("solid", "dog", s): _sim(rng, 0.1) for s in sizes}
    # occlusion only: the texture moves each model exactly as much as the grey patch does
    occl_low = {("texture", "dog", s): grey_low[("solid", "dog", s)] + _sim(rng, 0.0, sd=0.01) for s in sizes}
    occl_high = {("texture", "dog", s): grey_high[("solid", "dog", s)] + _sim(rng, 0.0, sd=0.01) for s in sizes}
    assert pc.verdicts(pc.test_rows(occl_low, occl_high))[0] == {"texture": True}
    spec = pc.test_rows(pc.specific_effects(occl_low, grey_low), pc.specific_effects(occl_high, grey_high))
    assert pc.verdicts(spec)[0] == {"texture": False}
    # a pattern reliance on top of the same occlusion survives
    rel_low = {k: v + 0.6 for k, v in occl_low.items()}
    spec = pc.test_rows(pc.specific_effects(rel_low, grey_low), pc.specific_effects(occl_high, grey_high))
    assert pc.verdicts(spec)[0] == {"texture": True}


def test_null_control_splits_one_algorithm_and_finds_nothing_in_identical_halves():
    first, second = pc.halves(11, seed=3)
    assert len(first) == 5 and len(second) == 6 and not set(first) & set(second)
    assert sorted([*first, *second]) == list(range(11))
    rng = np.random.default_rng(2)
    same = {("texture", "dog", s): _sim(rng, 0.3, m=24) for s in (2, 4, 6)}
    out = pc.null_control({"low": same, "high": same})
    assert out["low"]["significant"] == 0 and out["high"]["significant"] == 0
    assert len(out["low"]["tests"]) == 3 and all(r["n_low"] == 12 for r in out["low"]["tests"])


def test_held_out_control_confirms_only_on_the_second_halves():
    rng = np.random.default_rng(4)
    low = {("window", "truck", s): _sim(rng, 1.0 if s == 8 else 0.0, m=24) for s in (4, 8)}
    high = {("window", "truck", s): _sim(rng, 0.0, m=24) for s in (4, 8)}
    out = pc.held_out_control(low, high)
    assert [(r["size"], r["sign_on_first_halves"]) for r in out["tests"]] == [(8, 1.0)]
    assert out["tests"][0]["n_low"] == 12 and out["replicates"] == {"window": True}
    out = pc.held_out_control(high, low)  # the opposite direction is confirmed as opposite
    assert out["opposite"] == {"window": True} and out["replicates"] == {"window": False}
