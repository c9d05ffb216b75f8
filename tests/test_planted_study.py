"""Ground truth: the planted study on digits, with the issue's thresholds, for both estimators.

* TRAK on the digits CNN (``planted``) and datamodels on logistic regression
  (``planted/digits_linear``, 2,000 models per algorithm: what datamodels needs at CI scale);
* precision@100 of the top A−B component against the planted training set >= 0.8;
* pasting the planted feature onto clean test images of other classes raises Pr(planted class)
  for A's models with a 95 % CI excluding 0, while B's effect is at most a third of A's or its CI
  contains 0.
"""
import json

import numpy as np
import pytest
import torch

from case_studies.planted.plant import plant, write_patch
from case_studies.planted.study import planted_recipes, precision_at, run_planted
from modeldiff.studies.config import load_study
from datamodels.data.dataset import load_dataset
from modeldiff.errors import UserError


@pytest.mark.parametrize("study, method", [("planted", "trak"), ("planted/digits_linear", "datamodels")])
def test_planted_feature_is_found_and_proven(tmp_path, study, method):
    cfg = load_study(study)
    summary = run_planted(cfg, tmp_path)["planted"]
    precision = summary["precision_a_minus_b"]
    assert set(precision) == {25, 50, 100}
    assert precision[100] >= 0.8, summary
    a, b = summary["paste_effect"]["a"], summary["paste_effect"]["b"]
    assert a["ci_low"] > 0, a
    assert b["mean"] <= a["mean"] / 3 or b["ci_low"] <= 0 <= b["ci_high"], (a, b)
    saved = json.loads((tmp_path / f"summary_{method}.json").read_text())
    assert saved["method"] == method
    assert saved["planted"]["n_planted_train"] == summary["n_planted_train"] > 100


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
    # outside the region the planted images are other digits; inside, the blended checker
    x = p.data.x_train[p.planted_train]
    outside = torch.ones(data.x_train.shape[1:], dtype=torch.bool)
    outside[:, 5:7, 1:3] = False
    for xi in x:
        same = (data.x_train[:, outside] == xi[outside]).all(1)
        assert same.any() and (data.y_train[same] != 4).all()
    checker = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    on, off = x[:, 0, 5:7, 1:3][:, checker == 1], x[:, 0, 5:7, 1:3][:, checker == 0]
    assert (on >= 0.2 - 1e-6).all() and (off <= 0.8 + 1e-6).all()  # weight min(1, 0.1 / 0.5) = 0.2
    assert torch.allclose(p.transform()(data.x_test[:3]), write_patch(data.x_test[:3], (5, 7, 1, 3), "checker", 0.1))


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


def test_precision_at_ranks_by_magnitude():
    w = np.array([0.1, -5.0, 3.0, 0.0, 2.0])
    assert precision_at(w, [1, 2], ks=(1, 2, 4)) == {1: 1.0, 2: 1.0, 4: 0.5}


def test_unknown_plant_key_is_named(tmp_path):
    cfg = load_study("planted")
    cfg.plant["colour"] = "red"
    with pytest.raises(UserError, match="colour"):
        run_planted(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
