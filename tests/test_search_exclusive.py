"""The "exclusive" ranking: a feature A relies on and B does not outranks a reaction both algorithms
have (A more strongly), B's negative effects are never multiplied, the screening and the ordering of
the confirmed findings follow the same rule, and a search on simulated models puts the exclusive
feature first where the "effect" ranking puts the shared one first."""
import numpy as np
import pytest
import torch

from modeldiff.counterfactual.ranking import EXCLUSIVE_RATIO, effect_scores, rank_candidates, ranking_ratio, scores
from modeldiff.counterfactual.screen import kept_indices, screen_scores
from modeldiff.counterfactual.search import Halves, SearchSettings, judge, search

K, M = 10, 24


def effects(seed, cls=None, mean=0.0, sd=0.3, noise=0.05):
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, noise, size=(M, K))
    if cls is not None:
        e[:, cls] += mean + sd * rng.standard_normal(M)
    return e


def shared_and_exclusive(seed):
    """Candidate 0: both algorithms react towards class 1, A more (+4 vs +2.2); candidate 1: only A
    reacts, towards class 7 (+1.5 vs 0)."""
    shared = (effects(seed, 1, 4.0), effects(seed + 1, 1, 2.2))
    exclusive = (effects(seed + 2, 7, 1.5), effects(seed + 3))
    return [shared, exclusive]


@pytest.mark.parametrize("seed", range(5))
def test_exclusive_feature_outranks_a_shared_larger_difference(seed):
    disc = shared_and_exclusive(10 * seed)
    allowed = [np.arange(K)] * 2
    by_effect = rank_candidates(disc, allowed, flip=False, ranking="effect")
    by_exclusive = rank_candidates(disc, allowed, flip=False, ranking="exclusive")
    assert (by_effect[0]["index"], by_effect[0]["target_class"]) == (0, 1)
    assert (by_exclusive[0]["index"], by_exclusive[0]["target_class"]) == (1, 7)
    # the exclusive score never exceeds the effect score: it only adds a bound
    for a, b in disc:
        assert np.all(scores(a, b, "exclusive") <= scores(a, b, "effect") + 1e-12)


def test_the_ratio_bound_is_the_welch_bound_of_a_minus_three_b():
    from scipy import stats

    a, b = effects(0, 3, 2.0), effects(1, 3, 0.4)
    sa = a - (a.sum(1, keepdims=True) - a) / (K - 1)
    sb = b - (b.sum(1, keepdims=True) - b) / (K - 1)
    x, y = sa[:, 3], EXCLUSIVE_RATIO * sb[:, 3]
    va, vb = x.var(ddof=1) / M, y.var(ddof=1) / M
    df = (va + vb) ** 2 / (va ** 2 / (M - 1) + vb ** 2 / (M - 1))
    want = x.mean() - y.mean() - stats.t.ppf(0.95, df) * np.sqrt(va + vb)
    got = effect_scores(a, b, ratio=EXCLUSIVE_RATIO)
    assert got["score"][3] == pytest.approx(min(want, got["lcb_diff"][3], got["lcb_first"][3]), rel=1e-9)
    assert got["score"][3] == pytest.approx(want, rel=1e-9)  # B reacts: the ratio bound is the binding one


def test_a_negative_effect_of_b_is_not_multiplied():
    a, b = effects(2, 5, 1.0), effects(3, 5, -2.0)
    ex, ef = scores(a, b, "exclusive")[5], scores(a, b, "effect")[5]
    assert ex == pytest.approx(ef)  # bounded by A's own effect, not inflated by 3x B's negative one
    assert ranking_ratio("effect") == ranking_ratio("t") == 1.0 and ranking_ratio("exclusive") == EXCLUSIVE_RATIO
    with pytest.raises(ValueError, match="unknown search ranking"):
        ranking_ratio("ratio")


def test_screening_keeps_by_the_same_rule():
    disc = shared_and_exclusive(0) + [(effects(s), effects(s + 1)) for s in range(20, 40, 2)]
    allowed = [np.arange(K)] * len(disc)
    plain, ratio = screen_scores(disc, allowed), screen_scores(disc, allowed, EXCLUSIVE_RATIO)
    assert plain[0, 0] > plain[1, 0] and ratio[1, 0] > ratio[0, 0]
    assert np.all(ratio <= plain + 1e-12)
    assert 1 in kept_indices(disc, allowed, 1, EXCLUSIVE_RATIO) and 0 in kept_indices(disc, allowed, 1)


def test_judge_orders_by_the_confirmation_score_when_told():
    def rec(p, diff, score):
        return {"p_value": p, "confirmation_score": score,
                "effects": {"log-odds": {"a": {"ci_low": 0.5}, "diff": {"mean": diff}}}}

    tested = {"a_minus_b": [rec(1e-6, 2.0, 0.3), rec(1e-5, 0.8, 0.7)], "b_minus_a": []}
    assert [r["confirmation_score"] for r in judge(tested, 0.05)["a_minus_b"]] == [0.3, 0.7]
    assert [r["confirmation_score"] for r in judge(tested, 0.05, "confirmation_score")["a_minus_b"]] == [0.7, 0.3]
    with pytest.raises(ValueError, match="order"):
        judge(tested, 0.05, "t")


H = 8


def _models(seed, n, shared_w, own_w):
    """Softmax-linear models on 8x8 images: a bright pixel (0, 0) pushes class 1 by ``shared_w``, a
    bright pixel (7, 7) pushes class 2 by ``own_w``."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, 4, H * H, generator=g, dtype=torch.float64) * 0.2
    w[:, 1, 0] += shared_w + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
    w[:, 2, H * H - 1] += own_w + 0.4 * torch.randn(n, generator=g, dtype=torch.float64)

    def predict(x):
        return torch.einsum("mkp,np->mnk", w, x.double().flatten(1)).softmax(-1)
    return predict


def test_search_headline_is_the_exclusive_feature():
    from modeldiff.counterfactual.library import generic_candidates

    g = torch.Generator().manual_seed(7)
    x = torch.rand(240, 1, H, H, generator=g) * 0.3
    y = torch.randint(0, 4, (240,), generator=g).numpy()
    halves = Halves((_models(0, 16, 6.0, 2.0), _models(1, 16, 6.0, 2.0)),
                    (_models(2, 16, 3.5, 0.0), _models(3, 16, 3.5, 0.0)), (x[:120], x[120:]), (y[:120], y[120:]))
    cands = [(t, None) for t in generic_candidates((1, H, H), families=("patch",))]
    heads = {}
    for ranking in ("effect", "exclusive"):
        res = search(halves, cands, SearchSettings(n_confirm=4, n_resamples=200, ranking=ranking))
        top = res["a_minus_b"].confirmed[0]
        heads[ranking] = (top["target_class"], top["params"]["loc"])
        assert "confirmation_score" in top
    assert heads["effect"] == (1, [0, 0])       # the shared reaction, larger in A
    assert heads["exclusive"][0] == 2 and heads["exclusive"][1] in ([5, 5], [6, 6], [7, 7])  # a patch over (7, 7)
