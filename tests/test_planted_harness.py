"""The planted harness's own logic, on constructed records (no training): where a search finding
sits against the plant, the twin rule (a finding counts only with the plant and not in the twin), the
grid's draws and rates, and the paste augmentation that makes the pattern uninformative for B."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from case_studies.planted import match as M
from case_studies.planted.grid import draw_variants, rates, variant_record
from case_studies.planted.metrics import reliance
from datamodels.base.errors import UserError
from datamodels.data.patterns import PATTERNS, write_pattern
from datamodels.training.augment import apply_augment, draw_epoch
from datamodels.training.recipe import recipe_from_dict

HW = (8, 8)
PLANT = (5, 8, 5, 8)  # a 3x3 plant in the bottom-right corner


def rec(cls, **params):
    return {"target_class": cls, "params": params}


def test_a_patch_over_the_plant_towards_its_class_matches():
    assert M.match(rec(3, pattern="texture", size=4, loc=[4, 4]), PLANT, 3, HW)["match"]   # covers all 9 plant pixels
    assert M.match(rec(3, region=[5, 8, 5, 8]), PLANT, 3, HW)["match"]
    assert not M.match(rec(7, pattern="texture", size=4, loc=[4, 4]), PLANT, 3, HW)["match"]  # wrong class
    assert not M.match(rec(3, pattern="solid", size=2, loc=[0, 0]), PLANT, 3, HW)["match"]    # elsewhere
    assert not M.match(rec(3, pattern="solid", size=2, loc="random"), PLANT, 3, HW)["match"]  # no fixed place
    assert not M.match(rec(3, sigma=1.0), PLANT, 3, HW)["match"]                              # global (blur)
    m = M.match(rec(3, pattern="solid", size=1, loc=[7, 7]), PLANT, 3, HW)   # 1 of 9 plant pixels: too little
    assert m["kind"] and m["class"] and not m["place"]
    # the whole image covers the plant but the plant is 9/64 of it (< 25 %): not "at the place"
    assert not M.match(rec(3, pattern="solid", size=8, loc=[0, 0]), PLANT, 3, HW)["match"]
    assert M.record_region(rec(3, pattern="tensor(1, 2, 4)", loc="center"), HW) == (3, 5, 2, 6)


def test_direction_matches_ranks_the_first_match():
    d = {"confirmed": [rec(1, size=2, loc=[0, 0]), rec(3, size=2, loc=[0, 0]), rec(3, size=3, loc=[5, 5])]}
    got = M.direction_matches(d, PLANT, 3, HW)
    assert got["rank"] == 3 and got["top"] and not got["headline"] and got["n_confirmed"] == 3
    assert M.direction_matches({"confirmed": []}, PLANT, 3, HW) == {"headline": False, "top": False, "rank": None,
                                                                    "n_confirmed": 0, "records": []}
    deep = {"confirmed": [rec(1, size=2, loc=[0, 0])] * 3 + [rec(3, region=list(PLANT))]}
    assert M.direction_matches(deep, PLANT, 3, HW)["rank"] == 4 and not M.direction_matches(deep, PLANT, 3, HW)["top"]


def test_a_finding_counts_only_if_the_twin_does_not_confirm_it():
    planted = {"confirmed": [rec(3, region=list(PLANT))]}
    twin_same = {"confirmed": [rec(0, size=2, loc=[0, 0]), rec(0, size=2, loc=[0, 6]), rec(1, size=2, loc=[6, 0]),
                               rec(3, size=3, loc=[5, 5])]}  # at the plant's (place, class), ranked 4th: still blocks
    twin_other = {"confirmed": [rec(4, size=3, loc=[5, 5]), rec(3, size=2, loc=[0, 0])]}
    found = M.direction_matches(planted, PLANT, 3, HW)
    assert M.twin_confirms_place(twin_same, PLANT, 3, HW)
    assert not M.twin_confirms_place(twin_other, PLANT, 3, HW)  # same place other class / same class other place
    assert M.counted(found, M.twin_confirms_place(twin_same, PLANT, 3, HW)) == {"headline": False, "top": False}
    assert M.counted(found, M.twin_confirms_place(twin_other, PLANT, 3, HW)) == {"headline": True, "top": True}
    missed = M.direction_matches({"confirmed": [rec(4, region=list(PLANT))]}, PLANT, 3, HW)
    assert M.counted(missed, False) == {"headline": False, "top": False}


def _effect(mean, lo, hi):
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def _summary(a, b, found, twin_found, p100=0.3, chance=0.05):
    prec = {25: 0.0, 50: 0.0, 100: p100}
    planted = {"reliance": reliance({"log_odds": {"a": a, "b": b}, "a": a, "b": b}), "chance": chance,
               "search": found, "precision_a_minus_b": prec, "precision_b_minus_a": {100: 0.0},
               "precision_b_own": {100: 0.2}, "precision_a_own": {100: 0.0}}
    return {"planted": planted, "directions": {"a_minus_b": {"headline": "h"}},
            "twin": {"confirms_at_plant": twin_found, "search": None, "precision_a_minus_b": {100: 0.0}}}


def test_grid_records_and_rates_apply_the_twin_rule_and_count_only_variants_where_a_relies():
    v = {"variant": 0, "target_class": 3, "region": list(PLANT), "pattern": "checker", "amplitude": 1.0, "fraction": 0.5}
    hit = M.direction_matches({"confirmed": [rec(3, region=list(PLANT))]}, PLANT, 3, HW)
    miss = M.direction_matches({"confirmed": []}, PLANT, 3, HW)
    strong, weak = _effect(3.0, 2.5, 3.5), _effect(0.2, 0.1, 0.3)
    records = [variant_record(v, _summary(strong, weak, hit, False)),              # counted
               variant_record(v, _summary(strong, weak, hit, True)),               # found, but the twin has it too
               variant_record(v, _summary(strong, _effect(2.0, 1.5, 2.5), miss, False)),  # missed; B relies too
               variant_record(v, _summary(_effect(0.1, -0.2, 0.4), weak, hit, False))]    # A does not rely: left out
    assert [r["counted_top3"] for r in records] == [True, False, False, True]
    assert [r["b_third"] for r in records] == [True, True, False, False]
    rt = rates(records)
    assert rt["variants"] == 4 and rt["a_relies"] == 3
    assert rt["counted_top3"] == pytest.approx(1 / 3) and rt["planted_top3_any"] == pytest.approx(2 / 3)
    assert rt["twin_at_place"] == pytest.approx(1 / 3) and rt["b_third"] == pytest.approx(2 / 3)
    assert rt["precision_top_3x"] == 1.0 and rt["precision_b_own_2x"] == 0.0  # 0.2 > 2 x 0.05
    # a variant whose twin shows the same paste effect on A (pasting alone moves A) is left out too
    echo = _summary(strong, weak, hit, False)
    echo["twin"]["reliance"] = {"a": _effect(3.1, 2.6, 3.6), "b": weak}
    r = variant_record(v, echo)
    assert r["a_relies"] and not r["a_relies_beyond_twin"]
    assert rates(records + [r])["a_relies"] == 3 and rates(records + [r])["a_relies_in_planted_run"] == 4


def test_grid_draws_are_seeded_and_fit_the_image():
    a, b = draw_variants(12, seed=5), draw_variants(12, seed=5)
    assert a == b and draw_variants(3, seed=5) == a[:3] and draw_variants(12, seed=6) != a
    for v in a:
        r0, r1, c0, c1 = v["region"]
        assert 0 <= r0 < r1 <= 8 and 0 <= c0 < c1 <= 8 and v["pattern"] in PATTERNS
    assert len({(v["target_class"], tuple(v["region"]), v["pattern"]) for v in a}) > 6  # the draws vary


def test_paste_augmentation_is_label_independent_and_writes_the_pattern():
    """B's ``augment.paste`` pastes on a random share of inputs drawn without the labels: the share per
    class is the same (within binomial noise), pasted inputs carry exactly the pattern, others are untouched."""
    share = 0.5
    r = recipe_from_dict({"augment": {"paste": {"share": share, "region": [5, 8, 5, 8], "pattern": "ring"}}})
    m = 6000
    y = torch.arange(m) % 10
    x = torch.rand(m, 1, 8, 8)
    draw = draw_epoch(torch.Generator().manual_seed(0), m, r.augment, HW)
    out = apply_augment(x, r.augment, draw.flip, draw.shift, draw.cutout_at, draw.paste)
    per_class = np.array([draw.paste[y == c].float().mean().item() for c in range(10)])
    sd = np.sqrt(share * (1 - share) / (m / 10))
    assert np.all(np.abs(per_class - share) < 5 * sd), per_class
    assert torch.equal(out[draw.paste], write_pattern(x[draw.paste], (5, 8, 5, 8), "ring", 1.0))
    assert torch.equal(out[~draw.paste], x[~draw.paste])
    # the other augmentation draws are the same with and without paste (recipes without it keep their streams)
    plain = draw_epoch(torch.Generator().manual_seed(0), m, recipe_from_dict({}).augment, HW)
    assert plain.paste is None and torch.equal(plain.order, draw.order) and torch.equal(plain.shift, draw.shift)


@pytest.mark.parametrize("bad, word", [({"share": 1.5, "region": [0, 2, 0, 2]}, "share"),
                                       ({"share": 0.5}, "region"), ({"pattern": "star"}, "pattern"),
                                       ({"amplitude": 0.0}, "amplitude")])
def test_bad_paste_settings_are_named(bad, word):
    with pytest.raises(UserError, match=word):
        recipe_from_dict({"augment": {"paste": bad}})


def test_reliance_uses_log_odds_and_a_conservative_third():
    a, b = _effect(3.0, 2.4, 3.6), _effect(0.7, 0.5, 0.9)
    r = reliance({"log_odds": {"a": a, "b": b}, "a": _effect(0.1, 0.0, 0.2), "b": _effect(0.0, 0.0, 0.0)})
    assert r["unit"] == "log-odds" and r["a_relies"] and r["b_over_a"] == pytest.approx(0.7 / 3.0)
    assert not r["b_third"]  # 0.7 < 3.0 / 3 but B's upper bound 0.9 > A's lower bound 2.4 / 3
    assert reliance({"log_odds": {"a": a, "b": _effect(0.5, 0.3, 0.7)}})["b_third"]


def test_counterfactual_transforms_do_not_join_the_search(monkeypatch):
    import modeldiff.counterfactual.search as S
    from modeldiff.studies.config import load_study
    from modeldiff.studies.pipeline import load_study_data, run_search

    cfg = load_study("planted")
    data = load_study_data(cfg)
    seen = {}
    monkeypatch.setattr(S, "store_halves", lambda *a, **k: None)
    monkeypatch.setattr(S, "search", lambda halves, cands, *a, **k: seen.__setitem__("c", [repr(t) for t, _ in cands]))
    dirs = [SimpleNamespace(name=n, fit=None) for n in ("a_minus_b", "b_minus_a")]
    run_search(cfg, (None, None), data, dirs, "cpu")
    base = seen["c"]
    cfg.counterfactual.transforms = ["blur:sigma=0.7"]
    run_search(cfg, (None, None), data, dirs, "cpu")
    assert seen["c"] == base and not any("0.7" in c for c in base)      # tested, not searched
    cfg.search.transforms = ["blur:sigma=0.7"]
    run_search(cfg, (None, None), data, dirs, "cpu")
    assert len(seen["c"]) == len(base) + 1                                # searched when listed for the search
    cfg.search.exclude = ["blur:sigma=0.7", base[0]]                      # a spec and a library candidate's repr
    run_search(cfg, (None, None), data, dirs, "cpu")
    assert seen["c"] == base[1:]
