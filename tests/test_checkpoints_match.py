"""Kept checkpoints reload to the same outputs; the fit matching of two algorithms (``match``) on
synthetic loss curves, both methods; summary.json's training-loss entries for every study."""
import json

import numpy as np
import pytest
import torch
import yaml

from datamodels.base.errors import UserError
from datamodels.runs.checkpoints import pick_checkpoint, store_at_checkpoint
from datamodels.runs.launchers import fill_store
from datamodels.store.store import Store
from datamodels.training.fit import HIT_MAX, REACHED, FitTracker
from datamodels.training.recipe import recipe_from_dict
from modeldiff.studies.config import load_study
from modeldiff.studies.match import relative_difference
from tests.helpers_train import cli, the_error_line

RECIPE = {"model": {"arch": "digits_cnn", "width": 4}, "precision": "float64", "batch_size": 64,
          "optim": {"lr": 0.05, "schedule": "constant"}}


def _store(path, digits, **kw):
    recipe = recipe_from_dict({**RECIPE, **kw})
    store = Store.create_or_resume(path, recipe, digits, n_models=3, subset_fraction=0.4, seed=1)
    fill_store(store, ensemble_size=3)
    return Store.open(path, digits)


def _same_outputs(a: Store, b: Store, rows):
    for name in ("test_logits", "test_margins", "train_margins", "accuracy"):
        np.testing.assert_allclose(np.asarray(a.arrays[name][rows]), np.asarray(b.arrays[name][rows]), rtol=0,
                                   atol=1e-5)


def test_checkpoints_reload_to_the_same_outputs(tmp_path, digits):
    parent = _store(tmp_path / "p", digits, epochs=3, keep_checkpoints=[2, 3])
    last = store_at_checkpoint(parent, tmp_path / "at3", "epoch3", digits)
    _same_outputs(parent, last, [0, 1, 2])  # the last epoch's checkpoint is the trained model
    np.testing.assert_allclose(last.fit_values("train_loss"), parent.fit_values("train_loss"), rtol=0, atol=1e-6)
    # epoch 2 of a 3-epoch run (constant rate) is the model a 2-epoch run trains
    two = _store(tmp_path / "two", digits, epochs=2)
    at2 = store_at_checkpoint(parent, tmp_path / "at2", "epoch2", digits)
    _same_outputs(two, at2, [0, 1, 2])
    assert (at2.fit_values("epochs_run") == 2).all()
    assert np.abs(np.asarray(at2.test_logits) - np.asarray(last.test_logits)).max() > 1e-3  # really another fit
    with pytest.raises(UserError, match="not trained") as err:
        fill_store(Store.open(tmp_path / "at2"))
    assert "\n" not in str(err.value)


def test_checkpoint_command_takes_a_loss_level_and_refuses_unknown_tags(tmp_path, digits):
    parent = _store(tmp_path / "p", digits, epochs=3, keep_checkpoints=["all"])
    level = float(np.nanmax(parent.fit_values("loss_curve")[:, 1])) + 1e-5  # every model is below it by epoch 2
    run = cli("checkpoint", tmp_path / "p", "--at", f"train_loss:{level}", "--out", tmp_path / "c")
    assert run.returncode == 0, run.stderr
    got = Store.open(tmp_path / "c")
    assert (got.fit_values("epochs_run") <= 2).all() and (got.fit_values("train_loss") <= level + 1e-6).all()
    run = cli("checkpoint", tmp_path / "p", "--at", "epoch9", "--out", tmp_path / "d")
    assert run.returncode == 2 and "keeps no checkpoint 'epoch9'" in the_error_line(run.stderr)


def test_pick_checkpoint_on_synthetic_curves():
    epochs = np.array([1, 2, 3, 4, np.nan])
    losses = np.array([2.0, 0.9, 0.52, 0.41, np.nan])
    assert pick_checkpoint(epochs, losses, 0.5) == 3  # first at or below (as until stops)
    assert pick_checkpoint(epochs, losses, 0.5, rule="closest") == 2  # 0.52 is nearer than 0.41
    assert pick_checkpoint(epochs, losses, 0.1) is None
    assert pick_checkpoint(epochs, losses, 0.1, rule="closest") == 3
    assert pick_checkpoint(epochs[::-1], losses[::-1], 1.0) == 3  # order of the records does not matter


def test_until_tracker_on_synthetic_curves():
    """train_slower's stopping rule: each model stops at its first epoch end at or below the target,
    keeps the weights it had then, and a model that never gets there is flagged."""
    recipe = recipe_from_dict({"until": {"train_loss": 0.5, "max_epochs": 4}, "keep_checkpoints": [{"train_loss": 1.0}]})
    curves = torch.tensor([[1.2, 0.8, 0.45, 0.3], [0.9, 0.5, 0.2, 0.1], [2.0, 1.5, 1.1, 0.7]], dtype=torch.float64)
    tracker = FitTracker(recipe, 3, steps_per_epoch=10)
    for epoch in range(4):
        done = tracker.after_epoch(epoch, curves[:, epoch], torch.zeros(3), lambda i, e=epoch: {"at": e})
        assert not done
    assert tracker.epochs_run.tolist() == [3, 2, 4] and tracker.steps_run.tolist() == [30, 20, 40]
    assert tracker.status().tolist() == [REACHED, REACHED, HIT_MAX]
    assert {i: s["at"] for i, s in tracker.snapshots.items()} == {0: 2, 1: 1}
    assert tracker.final_loss()[0].tolist() == [0.45, 0.5, 0.7]
    assert {i: v[1] for i, v in tracker.checkpoints["train_loss1"].items()} == {0: 2, 1: 1, 2: 4}


def test_relative_difference_and_its_band():
    rng = np.random.default_rng(0)
    faster = rng.normal(0.30, 0.01, 40)
    near = relative_difference(faster * 1.01, faster)
    far = relative_difference(faster * 1.12, faster)
    assert near["within"] and near["ci_low"] < 0.01 < near["ci_high"]
    assert not far["within"] and far["ci_low"] > 0.05



def test_the_statement_names_a_spread_too_wide_for_the_band():
    """The kept (not retrained) side's own losses spread so widely that no matching of the means can show
    5 % with these models: the statement says so, and says what would."""
    from modeldiff.studies.match import match_statement
    rng = np.random.default_rng(1)
    wide = rng.lognormal(np.log(0.006), 0.45, 64)  # the kept faster side: 45 % spread across models
    matched = rng.normal(wide.mean(), 0.0001, 64)  # the retrained slower side, on its target
    info = {"by": "train_loss", "method": "train_slower", "slower": "b", "faster": "a",
            "train_loss_after": {"a": float(wide.mean()), "b": float(matched.mean())},
            "relative_difference": relative_difference(matched, wide)}
    assert info["relative_difference"]["spread"]["faster"] > 0.05
    assert "a's own losses spread" in match_statement(info) and "NOT" in match_statement(info)
    info["relative_difference"] = relative_difference(matched, matched * 1.001)
    assert "spread" not in match_statement(info)


def _write_study(folder, **extra):
    algo = lambda lr, b: {"recipe": {"model": {"arch": "digits_cnn", "width": 4}, "optim": {"lr": lr},  # noqa: E731
                                     "batch_size": b, "epochs": 2}}
    study = {"name": "tiny", "algorithm_a": {**algo(0.1, 16), "label": "high"},
             "algorithm_b": {**algo(0.02, 128), "label": "low"}, "models": 4, "ensemble_size": 4,
             "attribution": {"method": "trak", "models": 4, "proj_dim": 64}, "calibration": {"enabled": False},
             "search": {"enabled": False}, "counterfactual": {"auto_candidates": 1, "n_test": 40, "bootstrap": 100},
             **extra}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.parametrize("method,checks,stop_at", [(None, 1, "first"), ("train_slower", 1, "first"),
                                                   ("stop_faster", 1, "first"), ("train_slower", 4, "first"),
                                                   ("stop_faster", 4, "closest")])
def test_summary_reports_training_losses_and_the_matching(tmp_path, method, checks, stop_at):
    extra = {} if method is None else {"match": {"by": "train_loss", "method": method, "checks_per_epoch": checks,
                                                 "stop_at": stop_at,
                                                 **({"max_epochs": 12} if method == "train_slower" else {})}}
    run = cli("study", _write_study(tmp_path, **extra), "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for tag in "ab":
        entry = summary["algorithms"][tag]["train_loss"]
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"] and entry["mean"] > 0
        assert summary["algorithms"][tag]["test_loss"]["mean"] > 0
    assert "training loss" in run.stdout
    if method is None:
        assert "match" not in summary
        return
    m = summary["match"]
    assert m["method"] == method and m["slower"] == "b" and m["statement"] in run.stdout
    assert ("within 5 %" in m["statement"]) and isinstance(m["within_5_percent"], bool)
    if method == "train_slower":  # the retrained models: how many met the target, how many reached max_epochs
        until = summary["algorithms"][m["slower"]]["until"]
        assert until["max_epochs"] == 12 and until["train_loss"] == pytest.approx(m["target_loss"])
        assert until["met"] + until["hit_max_epochs"] == summary["algorithms"][m["slower"]]["models"]
    moved = m["slower"] if method == "train_slower" else m["faster"]
    assert (tmp_path / "out" / f"store_{moved}_matched").is_dir() and m["checks_per_epoch"] == checks
    assert m["stop_at"] == stop_at
    if checks > 1:  # the moved algorithm trained again until the target, checked inside epochs
        until = summary["algorithms"][moved]["until"]
        assert until["train_loss"] == pytest.approx(m["target_loss"])
        assert until["met"] + until["hit_max_epochs"] == summary["algorithms"][moved]["models"]
        steps = Store.open(tmp_path / "out" / f"store_{moved}_matched").fit_values("steps_run")
        epochs = Store.open(tmp_path / "out" / f"store_{moved}_matched").fit_values("epochs_run")
        assert (steps > 0).all() and (epochs <= (12 if method == "train_slower" else 2)).all()
    after = {t: summary["algorithms"][t]["train_loss"]["mean"] for t in "ab"}
    assert after == pytest.approx(m["train_loss_after"])
    gap = lambda d: abs(d["a"] - d["b"])  # noqa: E731
    assert gap(m["train_loss_after"]) < gap(m["train_loss_before"])  # the matching closed part of the gap
    report = (tmp_path / "out" / "report_a_minus_b" / "report.html").read_text()
    assert "training loss" in report and "matched by train_loss" in report


@pytest.mark.parametrize("match,words", [
    ({"by": "accuracy"}, "match.by must be train_loss"),
    ({"by": "train_loss", "method": "both"}, "match.method must be one of train_slower, stop_faster"),
    ({"by": "train_loss", "tolerance": 0.1}, "unknown study key 'match.tolerance'"),
    ({"by": "train_loss", "max_epochs": 0}, "match.max_epochs must be an integer >= 1"),
    ({"max_epochs": 10}, "match.by is not"),
    ({"checks_per_epoch": 4}, "match.checks_per_epoch is set but match.by is not"),
    ({"by": "train_loss", "checks_per_epoch": 0}, "match.checks_per_epoch must be an integer >= 1"),
    ({"by": "train_loss", "method": "stop_faster", "max_epochs": 10}, "match.max_epochs is for train_slower"),
    ({"by": "train_loss", "stop_at": "last"}, "match.stop_at must be one of first, closest, nearest"),
    ({"by": "train_loss", "method": "stop_faster", "stop_at": "closest"}, "match.stop_at applies to retrained models"),
    ({"stop_at": "closest"}, "match.stop_at is set but match.by is not"),
])
def test_bad_match_options_are_refused_in_one_line(tmp_path, match, words):
    path = _write_study(tmp_path, match=match)
    with pytest.raises(UserError, match=words) as err:
        load_study(str(path))
    assert "\n" not in str(err.value)
