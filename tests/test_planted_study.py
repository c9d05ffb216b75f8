"""Ground truth: the planted study on digits (construction, B's paste augmentation, controls, twin).

* planted images are correctly labelled images of their own class; the patterns are the grid's shapes;
* B sees every pixel: its recipe pastes the plant's pattern on a label-independent share of its
  inputs (no blind region anywhere), and the runner sets that augmentation to exactly the plant;
* the study measures A's and B's reliance on the plant (log-odds effect of pasting it on clean test
  images of other classes, with CIs) and runs the no-plant twin beside it.
What the construction guarantees is not asserted as a finding (an A−B headline at the plant is a
measurement reported by the grid, benchmarks/planted_grid.py, not a property of the code).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from case_studies.planted.metrics import precision_at
from case_studies.planted.plant import plant, write_patch
from case_studies.planted.study import planted_recipes, run_planted
from datamodels.base.errors import UserError
from datamodels.data.dataset import load_dataset
from datamodels.data.patterns import PATTERNS, pattern_values
from datamodels.training.augment import apply_augment
from modeldiff.studies.config import load_study


@pytest.mark.slow
def test_planted_study_measures_reliance_and_runs_its_twin(tmp_path):
    """The shipped study at a small size (8 models): the paste test runs on clean other-class rows for
    both algorithms in the planted run and the twin, and both are recorded side by side. Asserted: A
    relies on the plant (CI above 0, a property of the data and A's recipe), B's reliance is measured
    with a CI, the twin's training set carries no plant, and the report shows the twin section."""
    cfg = load_study("planted")
    cfg.with_models(8)
    cfg.search.families, cfg.search.n_inputs, cfg.search.n_resamples = ["patch"], 60, 200
    cfg.calibration.splits, cfg.calibration.groups = 5, 4
    cfg.counterfactual.n_test, cfg.counterfactual.bootstrap = 100, 200
    summary = run_planted(cfg, tmp_path, **{**cfg.runner["kwargs"], "exposure_twin": True})
    p, t, e = summary["planted"], summary["twin"], summary["twin_exposure"]
    r = p["reliance"]
    assert r["unit"] == "log-odds" and r["a"]["ci_low"] > 0, r           # A relies on the planted feature
    assert r["b"]["ci_low"] <= r["b"]["mean"] <= r["b"]["ci_high"]       # B's reliance measured, with its CI
    assert 0 < p["chance"] < 0.2 and set(p["precision_a_minus_b"]) == {25, 50, 100}
    assert t["reliance"]["a"]["ci_low"] <= t["reliance"]["a"]["mean"] <= t["reliance"]["a"]["ci_high"]
    twin = json.loads((tmp_path / "twin" / "summary.json").read_text())
    assert twin["dataset"] == "digits" and summary["dataset"] == "digits-planted"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["twin"]["confirms_at_plant"] == t["confirms_at_plant"]
    tested = " ".join(r["transform"] for r in saved["directions"]["a_minus_b"]["search_tested"])
    assert "paste planted" not in tested                                  # the plant's own transform is never searched
    report = (tmp_path / "report_a_minus_b" / "report.html").read_text()
    assert "no-plant twin" in report and "exposure-matched twin" in report
    # the exposure-matched twin: as many pattern-carrying training images as the plant, judged the same way
    assert e["n_exposed_train"] == p["n_planted_train"] and (tmp_path / "twin_exposure" / "summary.json").is_file()
    assert saved["twin_exposure"]["confirms_at_plant"] == e["confirms_at_plant"]
    assert p["search"] is not None                                      # the search ran: its finding is judged
    assert p["counted_exposure"]["top"] == (p["search"]["top"] and not e["confirms_at_plant"])
    assert p["counted"]["top"] == (p["search"]["top"] and not t["confirms_at_plant"])


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


def test_background_share_is_in_both_worlds_and_label_independent():
    """``background``: the same label-independent training images carry the pattern in the planted
    data and its twin; the two differ only on the planted images (the label correlation)."""
    data = load_dataset("digits")
    p = plant(data, target_class=6, fraction=0.5, region=(5, 8, 5, 8), pattern="ring", amplitude=0.75, seed=2,
              background=0.1)
    n = len(data.y_train)
    back = p.background_train
    assert len(back) == round(0.1 * n) and len(np.unique(back)) == len(back)
    counts = np.bincount(data.y_train.numpy()[back], minlength=10)
    assert (counts > 0).all()                                          # every class carries it
    twin = p.twin
    assert torch.equal(twin.y_train, data.y_train) and torch.equal(twin.x_test, data.x_test)
    assert torch.equal(twin.x_train[back], write_patch(data.x_train[back], (5, 8, 5, 8), "ring", 0.75))
    rest = np.setdiff1d(np.arange(n), back)
    assert torch.equal(twin.x_train[rest], data.x_train[rest])
    differ = np.flatnonzero((p.data.x_train != twin.x_train).flatten(1).any(1).numpy())
    assert set(differ) == set(np.setdiff1d(p.planted_train, back))     # planted and twin differ only by the plant
    both = np.intersect1d(p.planted_train, back)                       # written once where both choose an image
    assert torch.equal(p.data.x_train[both], twin.x_train[both])
    none = plant(data, target_class=6, fraction=0.5, region=(5, 8, 5, 8), pattern="ring", seed=2)
    assert none.twin is data and len(none.background_train) == 0
    with pytest.raises(UserError, match="plant.background must be in"):
        plant(data, background=1.0)


def test_exposure_matched_twin_carries_the_pattern_as_often_as_the_plant_from_every_class():
    from case_studies.planted.study import exposure_matched

    data = load_dataset("digits")
    args = {"target_class": 4, "region": (1, 4, 3, 6), "pattern": "cross", "amplitude": 0.5, "fraction": 0.5}
    planted = plant(data, **args)
    exposed = exposure_matched(data, args, planted)
    back = exposed.background_train
    assert len(back) == len(planted.planted_train)
    assert len(np.unique(data.y_train[back].numpy())) == 10          # drawn from every class, not the planted one
    assert torch.equal(exposed.twin.y_train, data.y_train)           # labels untouched
    assert torch.equal(exposed.twin.x_train[back], write_patch(data.x_train[back], (1, 4, 3, 6), "cross", 0.5))
    rest = np.setdiff1d(np.arange(len(data.y_train)), back)
    assert torch.equal(exposed.twin.x_train[rest], data.x_train[rest])
    with pytest.raises(UserError, match="share below 1"):
        exposure_matched(data, {**args, "background": 0.95}, planted)


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


def test_b_pastes_exactly_the_plant_and_nobody_is_blind():
    cfg = load_study("planted")
    p = plant(load_dataset("digits"), target_class=3, region=(5, 8, 5, 8), pattern="ring", amplitude=0.5)
    a, b = planted_recipes(cfg, p)
    assert a.model.blind_region is None and b.model.blind_region is None
    assert a.augment.paste.share == 0 and b.augment.paste.share == 0.5
    assert (b.augment.paste.region, b.augment.paste.pattern, b.augment.paste.amplitude) == ([5, 8, 5, 8], "ring", 0.5)
    cfg.algorithm_b.recipe = cfg.algorithm_a.recipe  # a B without the paste augmentation is refused
    with pytest.raises(UserError, match="must paste"):
        planted_recipes(cfg, p)


def test_an_occluding_a_gets_the_plants_place_and_weight_and_never_the_pattern(tmp_path):
    """``augment.paste.erase``: A may occlude the plant's place as B's paste does, without the pattern."""
    cfg = load_study("planted")
    p = plant(load_dataset("digits"), target_class=3, region=(5, 8, 5, 8), pattern="ring", amplitude=0.5)
    occluding = tmp_path / "occludes.yaml"
    occluding.write_text((Path(cfg.folder) / "sees_all_digits.yaml").read_text()
                         + "augment: {paste: {share: 0.5, region: [0, 2, 0, 2], erase: true}}\n")
    cfg.algorithm_a.recipe = str(occluding)
    a, b = planted_recipes(cfg, p)
    assert a.augment.paste.share == b.augment.paste.share == 0.5                  # the same occlusion...
    assert a.augment.paste.erase and not b.augment.paste.erase                   # ...only B's writes the pattern
    for r in (a, b):
        assert (r.augment.paste.region, r.augment.paste.pattern, r.augment.paste.amplitude) == ([5, 8, 5, 8], "ring", 0.5)
    x = load_dataset("digits").x_train[:4]
    on = torch.ones(4, dtype=torch.bool)
    none = torch.zeros(4, 2, dtype=torch.long)
    occluded = apply_augment(x, a.augment, ~on, none, none, on)
    pasted = apply_augment(x, b.augment, ~on, none, none, on)
    w = 0.5 / float(PATTERNS["ring"](3, 3).mean())
    assert torch.allclose(occluded[:, :, 5:8, 5:8], (1 - w) * x[:, :, 5:8, 5:8])
    expected = torch.zeros_like(x)
    expected[:, :, 5:8, 5:8] = w * pattern_values((5, 8, 5, 8), "ring", 1)
    assert torch.allclose(pasted - occluded, expected)                           # the pattern, and nothing else
    cfg.algorithm_b.recipe = str(occluding)  # a B that only occludes is refused
    with pytest.raises(UserError, match="must paste the pattern itself"):
        planted_recipes(cfg, p)


def test_pattern_shapes():
    region = (0, 3, 0, 3)
    v = {name: pattern_values(region, name, 1)[0] for name in PATTERNS}
    assert v["solid"].sum() == 9 and v["checker"].sum() == 4 and v["ring"].sum() == 8 and v["ring"][1, 1] == 0
    assert v["bar"][1].sum() == 3 and v["bar"].sum() == 3 and v["vbar"][:, 1].sum() == 3
    assert v["cross"].sum() == 5 and v["diagonal"].trace() == 3
    x = torch.rand(4, 1, 8, 8)
    once = write_patch(x, region, "ring", 1.0)
    assert torch.equal(write_patch(once, region, "ring", 1.0), once)  # at full weight writing twice = once


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
    with pytest.raises(UserError, match="colour"):
        run_planted(cfg, tmp_path / "out", plant={"colour": "red"})
    assert not (tmp_path / "out").exists()
