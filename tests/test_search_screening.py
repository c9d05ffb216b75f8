"""The search's screening pass (modeldiff.counterfactual.screen) on simulated models: the planted
reaction survives it and is confirmed, the discovery effects of kept candidates equal the unscreened
ones, screened-out candidates rank last and are never confirmed, and bad settings fail in one line."""
import numpy as np
import pytest

from datamodels.base.errors import UserError
from modeldiff.counterfactual.ranking import rank_candidates, ranking_ratio
from modeldiff.counterfactual.screen import allowed_classes, kept_indices
from modeldiff.counterfactual.search import Halves, SearchSettings, discover, search
from tests.test_search import K, candidates, make_halves


def screened(halves: Halves, n_screen: int = 3) -> Halves:
    """The same halves with screening predictors over the first ``n_screen`` discovery models."""
    def first(predict):
        return lambda x: predict(x)[:n_screen]
    return Halves(halves.predict_a, halves.predict_b, halves.x, halves.y,
                  (first(halves.predict_a[0]), first(halves.predict_b[0])))


def test_planted_reaction_survives_screening_and_kept_effects_equal_the_full_pass():
    plain = make_halves(0, 3.0, 0.0)
    cands = candidates()
    keep = 8
    full = discover(plain, cands)
    disc = discover(screened(plain), cands, keep=keep, ratio=ranking_ratio(SearchSettings().ranking))  # as search()
    assert len(disc) == len(cands) and 0 < len(disc.screened_out) <= len(cands) - keep
    for i in set(range(len(cands))) - disc.screened_out:
        assert np.array_equal(disc[i][0], full[i][0]) and np.array_equal(disc[i][1], full[i][1])
    for i in disc.screened_out:
        assert disc[i][0].shape[0] == 3  # the screening models' effects only
    res = search(screened(plain), cands, SearchSettings(n_confirm=4, n_resamples=200, screen_keep=keep))
    top = res["a_minus_b"].confirmed[0]
    assert top["target_class"] == 0 and top["params"]["loc"] == [0, 0]
    ranking = res["a_minus_b"].ranking
    flags = [r["screened_out"] for r in ranking]
    assert flags == sorted(flags)  # every kept candidate ranks before every screened-out one
    assert {r["index"] for r in ranking if r["screened_out"]} == set(disc.screened_out)
    assert res["a_minus_b"].to_dict()["screening"] == {"models": 3, "keep": keep, "screened_out": len(disc.screened_out)}
    tested = {r["transform"] for r in res["a_minus_b"].tested}
    assert not tested & {repr(cands[i][0]) for i in disc.screened_out}


def test_no_screening_when_the_library_is_small_or_screening_is_off():
    plain = make_halves(1, 3.0, 0.0)
    cands = candidates()
    assert not discover(screened(plain), cands, keep=len(cands)).screened_out
    assert not discover(screened(plain), cands, keep=0).screened_out
    assert not discover(plain, cands, keep=4).screened_out  # no screening predictors: one full pass


def test_kept_indices_take_the_best_of_each_direction():
    rng = np.random.default_rng(0)
    m = 4
    effects = [(rng.normal(0, 0.01, (m, K)), rng.normal(0, 0.01, (m, K))) for _ in range(20)]
    effects[7][0][:, 2] += 3.0   # A reacts towards class 2: best A−B
    effects[12][1][:, 1] += 3.0  # B reacts towards class 1: best B−A
    effects[3][0][:, :] += 5.0   # pushes every class alike: not class-specific
    kept = kept_indices(effects, allowed_classes([(None, None)] * 20, K), keep=1)
    assert kept.tolist() == [7, 12]
    ranked = rank_candidates(effects, allowed_classes([(None, None)] * 20, K), flip=False, screened_out={7})
    assert ranked[-1]["index"] == 7 and ranked[-1]["screened_out"] and not ranked[0]["screened_out"]


@pytest.mark.parametrize("kw, message", [({"screen_keep": 2, "n_confirm": 5}, "screen_keep \\(2\\) must be at least"),
                                         ({"screen_keep": -1}, "screen_keep must be an integer >= 0")])
def test_bad_screening_settings_fail_in_one_line(kw, message):
    with pytest.raises(UserError, match=message):
        SearchSettings(**kw)

