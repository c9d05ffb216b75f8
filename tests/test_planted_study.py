"""Ground truth: the planted study on digits (construction, controls, the search's headline).

* planted images are correctly labelled images of their own class; precision at the positive end;
* the controls (top B−A component, B's own top component) at most 2x chance;
* pasting the planted feature onto clean test images of other classes raises Pr(planted class)
  for A's models with a 95 % CI excluding 0 (A relies on it), and not for B's;
* the search's A−B headline is a generic patch over the planted region towards the planted class
  (the plant's own transform is not a candidate), with B's effect CI containing 0 or <= A's / 3.
Not asserted, because it does not hold (see the comment above the study test): precision@100 of
the top A−B component >= 0.8 of the best possible.
"""
import json

import numpy as np
import pytest
import torch

from case_studies.planted.plant import plant, write_patch
from case_studies.planted.study import planted_recipes, precision_at, run_planted
from datamodels.base.errors import UserError
from datamodels.data.dataset import load_dataset
from modeldiff.studies.config import load_study


# What holds, and is asserted here on the shipped study (TRAK, CNN): the controls (B−A and B's own
# top component at most 2x chance), A's reliance on the planted feature (paste effect CI > 0), and the
# search's A−B headline (a generic patch at the planted place towards the planted class; B's effect
# CI containing 0 or <= A's / 3; the plant's own transform is not a candidate). What does NOT hold,
# and is therefore not asserted (the control is not loosened, the claim is dropped): precision@100 of
# the top A−B component >= 0.8 of the best possible. With correctly labelled planted images no
# ranking recovers the planted set (A−B, B−A, A's own and B's own all at or below chance at
# amplitudes 0.1, 0.4, 1.0; benchmarks/RESULTS.md, "Planted ground truth with controls"); the full
# acceptance, precision included, is benchmarks/planted_grid.py.
@pytest.mark.slow
def test_planted_controls_hold_and_search_finds_the_feature(tmp_path):
    cfg = load_study("planted")
    summary = run_planted(cfg, tmp_path)["planted"]
    assert set(summary["precision_a_minus_b"]) == {25, 50, 100}
    chance = summary["chance"]
    assert 0 < chance < 0.2
    assert summary["precision_b_minus_a"][100] <= 2 * chance, summary
    assert summary["precision_b_own"][100] <= 2 * chance, summary
    a = summary["paste_effect"]["a"]
    assert a["ci_low"] > 0, a                                  # A relies on the planted feature
    b = summary["paste_effect"]["b"]
    assert b["ci_low"] <= 0 <= b["ci_high"] or b["mean"] <= a["mean"] / 3, b  # B cannot see it
    h = summary["search_headline"]
    assert h["at_plant"] and h["b_small"], h                   # a generic patch at the planted place
    saved = json.loads((tmp_path / "summary_trak.json").read_text())
    tested = " ".join(r["transform"] for r in saved["directions"]["a_minus_b"]["search_tested"])
    assert "paste" not in tested
    sig = summary["signal"]  # the planted direction's share of the residual variance (top component's: the most)
    assert 0 <= sig["planted_variance"] <= 1.01 * sig["top_variance"] and 0 <= sig["cosine"] <= 1, sig


def test_plant_construction():
    data = load_dataset("digits")
    p = plant(data, target_class=4, fraction=0.6, region=(5, 7, 1, 3), pattern="checker", amplitude=0.1,
              test_copies=True, seed=3)
    n_test, n_others = len(data.y_test), int((data.y_test != 4).sum())
    assert p.data.x_test.shape[0] == n_test + n_others and p.n_clean_test == n_test
    assert (p.data.y_test[n_test:] == data.y_test[data.y_test != 4]).all()
    assert (p.data.y_train == data.y_train).all()                      # labels never change
    assert np.isin(p.planted_train, np.flatnonzero(data.y_train.numpy() == 4)).all()
    assert len(p.planted_train) == round(0.6 * int((data.y_train == 4).sum()))
    untouched = np.setdiff1d(np.arange(len(data.y_train)), p.planted_train)
    assert torch.equal(p.data.x_train[untouched], data.x_train[untouched])
    # planted images are their own (correctly labelled) images: unchanged outside the region
    x = p.data.x_train[p.planted_train]
    outside = torch.ones(data.x_train.shape[1:], dtype=torch.bool)
    outside[:, 5:7, 1:3] = False
    assert torch.equal(x[:, outside], data.x_train[p.planted_train][:, outside])
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    on, off = x[:, 0, 5:7, 1:3][:, checker == 1], x[:, 0, 5:7, 1:3][:, checker == 0]
    assert (on >= 0.2 - 1e-6).all() and (off <= 0.8 + 1e-6).all()  # weight min(1, 0.1 / 0.5) = 0.2
    assert torch.allclose(p.transform()(data.x_test[:3]), write_patch(data.x_test[:3], (5, 7, 1, 3), "checker", 0.1))


def test_plant_hardest_and_test_fraction():
    """``select: hardest`` plants the target class's lowest-margin images (cross-validated reference
    model); ``test_fraction`` sets the test split's share independently of the training split's."""
    from case_studies.planted.plant import hardness

    data = load_dataset("digits")
    p = plant(data, target_class=3, fraction=0.1, select="hardest", test_fraction=1.0)
    members = np.flatnonzero(data.y_train.numpy() == 3)
    margins = hardness(data)["train"][members]
    assert len(p.planted_train) == round(0.1 * len(members))
    assert np.isin(p.planted_train, members).all()
    chosen = hardness(data)["train"][p.planted_train]
    assert chosen.max() <= np.sort(margins)[len(p.planted_train) - 1] + 1e-12  # exactly the hardest ones
    assert set(p.planted_test) == set(np.flatnonzero(data.y_test.numpy() == 3).tolist())
    with pytest.raises(UserError, match="select"):
        plant(data, select="easiest")
    with pytest.raises(UserError, match="test_fraction"):
        plant(data, test_fraction=0.0)


def test_blind_recipe_follows_the_plant_region():
    cfg = load_study("planted")
    cfg.plant["region"] = [6, 8, 6, 8]
    p = plant(load_dataset("digits"), **cfg.plant)
    a, b = planted_recipes(cfg, p)
    assert a.model.blind_region is None and list(b.model.blind_region) == [6, 8, 6, 8]


@pytest.mark.parametrize("bad, word", [({"region": [7, 9, 0, 2]}, "region"), ({"amplitude": 0.0}, "amplitude"),
                                       ({"fraction": 1.5}, "fraction"), ({"target_class": 10}, "target_class")])
def test_bad_plant_arguments_are_named(bad, word):
    with pytest.raises(UserError, match=word):
        plant(load_dataset("digits"), **bad)


def test_precision_at_uses_the_positive_end():
    w = np.array([0.1, -5.0, 3.0, 0.0, 2.0])
    assert precision_at(w, [1, 2], ks=(1, 2, 4)) == {1: 1.0, 2: 0.5, 4: 0.25}
    assert precision_at(-w, [1], ks=(1,)) == {1: 1.0}


def test_unknown_plant_key_is_named(tmp_path):
    cfg = load_study("planted")
    cfg.plant["colour"] = "red"
    with pytest.raises(UserError, match="colour"):
        run_planted(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
