"""The discovery ranking on simulated per-model effects: a large, model-variable reliance outranks a
small consistent reaction, class-specificity demotes a transform that pushes every class; practical size."""
import numpy as np
import pytest

from modeldiff.counterfactual.ranking import flip_share, practical_size, rank_candidates, specific

K, M = 10, 16


def effects(seed, cls=None, mean=0.0, sd=0.0, every=0.0, noise=0.05):
    """Per-model log-odds effects ``[M, K]``: ``mean ± sd`` towards ``cls``, ``every`` towards all classes."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, noise, size=(M, K)) + every
    if cls is not None:
        e[:, cls] += mean + sd * rng.standard_normal(M)
    return e


def disc_small_vs_large(seed):
    small = (effects(seed, 1, 0.1, 0.01, noise=0.01), effects(seed + 1, noise=0.01))  # t ≈ 30, 0.1 log-odds
    large = (effects(seed + 2, 2, 2.0, 1.5), effects(seed + 3))                          # t ≈ 5, 2 log-odds
    return [small, large]


@pytest.mark.parametrize("seed", range(5))
def test_large_variable_reliance_outranks_small_consistent_reaction(seed):
    disc = disc_small_vs_large(10 * seed)
    allowed = [np.arange(K)] * 2
    by_effect = rank_candidates(disc, allowed, flip=False, ranking="effect")
    by_t = rank_candidates(disc, allowed, flip=False, ranking="t")
    assert [r["index"] for r in by_effect] == [1, 0] and by_effect[0]["target_class"] == 2
    assert by_effect[0]["lcb_diff"] > 0
    assert by_t[0]["index"] == 0   # what the t-ranking did: the consistent nudge first
    assert by_t[0]["t"] > by_t[1]["t"]


@pytest.mark.parametrize("seed", range(5))
def test_class_specificity_demotes_a_transform_that_pushes_every_class(seed):
    everywhere = (effects(seed, 4, 0.3, 0.1, every=3.0), effects(seed + 1))  # +3 log-odds towards every class
    specific_one = (effects(seed + 2, 6, 1.0, 0.3), effects(seed + 3))
    disc = [everywhere, specific_one]
    ranked = rank_candidates(disc, [np.arange(K)] * 2, flip=False, ranking="effect")
    assert ranked[0]["index"] == 1 and ranked[0]["target_class"] == 6
    assert ranked[1]["specificity"] < 0.6 < ranked[0]["specificity"]
    assert rank_candidates(disc, [np.arange(K)] * 2, flip=False, ranking="t")[0]["index"] == 0


def test_direction_flip_and_allowed_class():
    a, b = effects(0, 3, 2.0, 0.3), effects(1)
    ab = rank_candidates([(a, b)], [np.arange(K)], flip=False)[0]
    ba = rank_candidates([(a, b)], [np.arange(K)], flip=True)[0]
    assert ab["target_class"] == 3 and ab["score"] > 1.0 and ba["score"] < 0
    only = rank_candidates([(a, b)], [np.array([5])], flip=False)[0]
    assert only["target_class"] == 5
    with pytest.raises(ValueError, match="unknown search ranking"):
        rank_candidates([(a, b)], [np.arange(K)], flip=False, ranking="z")


def test_pairs_rank_a_transforms_second_class_beside_other_transforms():
    """A transform at a place where the models react strongly towards class 1 and, a shortcut, less
    towards class 4: ranked per transform only its class 1 is ever confirmed; ranked as pairs its
    class 4 is ranked too, above a weaker transform's best class, and below its own class 1."""
    e = effects(0, 1, 3.0, 0.3)
    e[:, 4] += 1.5 + 0.3 * np.random.default_rng(9).standard_normal(M)
    two_classes = (e, effects(1))
    weaker = (effects(2, 7, 0.5, 0.3), effects(3))
    disc, allowed = [two_classes, weaker], [np.arange(K)] * 2
    single = rank_candidates(disc, allowed, flip=False)
    assert [(r["index"], r["target_class"]) for r in single] == [(0, 1), (1, 7)]
    pairs = rank_candidates(disc, allowed, flip=False, per_transform=2)
    assert [(r["index"], r["target_class"]) for r in pairs[:3]] == [(0, 1), (0, 4), (1, 7)]
    assert len(pairs) == 4 and pairs[1]["score"] > pairs[2]["score"]
    only = rank_candidates(disc, [np.array([5]), np.arange(K)], flip=False, per_transform=3)
    assert [r["index"] for r in only].count(0) == 1  # a transform with one allowed class is ranked once


def test_classes_per_transform_is_checked():
    from datamodels.base.errors import UserError
    from modeldiff.counterfactual.search import SearchSettings

    with pytest.raises(UserError, match="classes_per_transform must be an integer >= 1"):
        SearchSettings(classes_per_transform=0)


def test_specific_removes_a_shift_common_to_every_class():
    e = np.random.default_rng(0).normal(size=(M, K))
    np.testing.assert_allclose(specific(e + 5.0), specific(e), atol=1e-12)


def test_flip_share_and_negligible_effect():
    control = np.zeros((2, 4, 3))
    control[:, :, 0] = 1.0                      # every input predicted 0
    treated = control.copy()
    treated[0, 1] = [0.0, 0.0, 1.0]             # model 0: input 1 flips to class 2
    y = np.array([0, 1, 1, 2])                  # input 3 is of class 2: not counted
    np.testing.assert_allclose(flip_share(control, treated, y, 2), [1 / 3, 0.0])
    tiny = practical_size(np.full(8, 0.003), np.zeros(8), np.zeros(8), np.zeros(8))
    large = practical_size(np.full(8, 0.2), np.zeros(8), np.full(8, 0.1), np.zeros(8))
    assert tiny["negligible"] and not large["negligible"]
    assert large["probability_diff"] == pytest.approx(0.2) and large["flips_diff"] == pytest.approx(0.1)


def test_cli_choices_are_the_library_rankings():
    from modeldiff.cli.search import RANKINGS as CLI_RANKINGS
    from modeldiff.counterfactual.ranking import RANKINGS

    assert CLI_RANKINGS == RANKINGS


@pytest.mark.parametrize("negligible", [True, False])
def test_verdict_says_when_a_confirmed_effect_is_negligible_in_probability(negligible):
    from modeldiff.report.verdict import confirmed_text

    e = {"mean": 0.9, "ci_low": 0.5, "ci_high": 1.2}
    rec = {"label": "shift(dx=0, dy=-1)", "transform": "Shift(0, -1)", "target_name": "1", "p_adjusted": 0.001,
           "effects": {"log-odds": {"a": e, "b": e}, "probability": {"a": {"mean": 0.003}, "b": {"mean": 0.0}}},
           "practical": practical_size(np.full(4, 0.003 if negligible else 0.2), np.zeros(4), np.zeros(4), np.zeros(4))}
    assert ("negligible in probability" in confirmed_text(rec, "A", "B")) == negligible


def test_summary_keeps_the_whole_discovery_ranking():
    from types import SimpleNamespace

    from modeldiff.counterfactual.search import DirectionSearch
    from modeldiff.studies.run import direction_summary

    ranking = [{"index": i, "rank": i + 1, "score": 1.0 - i, "label": f"c{i}"} for i in range(7)]
    searched = DirectionSearch("a_minus_b", [], [], 70, ranking=ranking, ranking_rule="effect")
    fit = SimpleNamespace(explained_variance_a_=np.ones(2), explained_variance_b_=np.ones(2))
    d = SimpleNamespace(name="a_minus_b", fit=fit, counterfactuals=[], subpops=[])
    out = direction_summary(d, None, None, searched)
    assert out["search_ranking"] == ranking and out["search_ranking_rule"] == "effect"
