"""Training to a fit: ``until`` stops each model at the first epoch end where its own training loss
meets the target, with every backend (float64, tiny models); models that reach ``max_epochs`` first
are counted; bad ``until`` / ``keep_checkpoints`` options are refused in one line."""
import numpy as np
import pytest
import torch

from datamodels.base.errors import UserError
from datamodels.runs.launchers import fill_store
from datamodels.store.store import Store, draw_masks_and_seeds
from datamodels.training.backends import train_models
from datamodels.training.fit import HIT_MAX, REACHED, subset_fit
from datamodels.training.losses import make_loss
from datamodels.training.model_factory import DataSpec, build_module
from datamodels.training.recipe import recipe_from_dict
from tests.helpers_train import cli, the_error_line, write_recipe

SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
CNN = {"arch": "digits_cnn", "width": 4}
MLP = {"target": "tests.user_modules:mlp"}
TARGET = 0.4


@pytest.fixture(scope="module")
def split(digits):
    masks, seeds = draw_masks_and_seeds(seed=3, n_models=3, n_train=digits.n_train, fraction=0.3)
    return torch.from_numpy(masks), seeds.tolist()


def _recipe(model, trainer, **kw):
    return recipe_from_dict({"model": model, "optim": SGD, "precision": "float64", "batch_size": 40,
                             "trainer": trainer, "until": {"train_loss": TARGET, "max_epochs": 20}, **kw})


def _loss_of(state, recipe, digits, mask):
    """Eval-mode loss of a one-model state dict on its own subset, recomputed from scratch."""
    if recipe.model.builtin:
        from datamodels.training.models import build_model, stack_singles
        d = digits
        net = build_model(recipe.model, 1, d.num_classes, d.image_shape, d.mean, d.std)
        net.load_state_dict(stack_singles([state]))
        forward = net.double().eval()
    else:
        module = build_module(recipe.model, DataSpec.of(digits))
        module.load_state_dict(state)
        module = module.double().eval()
        forward = lambda x: module(x[0]).unsqueeze(0)  # noqa: E731
    rows = torch.nonzero(mask).flatten().unsqueeze(0)
    loss, _ = subset_fit(forward, digits.x_train.double(), digits.y_train, rows, make_loss(recipe))
    return float(loss[0])


@pytest.mark.parametrize("model,trainer", [(CNN, "ensemble"), (MLP, "vmap"), (MLP, "loop")])
def test_until_stops_at_the_first_epoch_meeting_the_target(digits, split, model, trainer):
    masks, seeds = split
    recipe = _recipe(model, trainer)
    res = train_models(recipe, digits, masks, seeds)
    fit = res.fit
    assert (fit.status == REACHED).all() and (fit.epochs_run < 20).all()
    for i in range(3):
        e = int(fit.epochs_run[i])
        assert fit.curve[i, e - 1] <= TARGET < fit.curve[i, e - 2]  # stopped at the first epoch end below
        assert torch.isnan(fit.curve[i, e:]).all()
        assert int(fit.steps_run[i]) == e * int(np.ceil(int(masks[i].sum()) / recipe.batch_size))
        # the weights returned are the ones that met the target, whatever the other members did afterwards
        assert _loss_of(res.state_dict(i), recipe, digits, masks[i]) == pytest.approx(float(fit.train_loss[i]),
                                                                                     abs=1e-6)


def test_an_ensemble_member_stops_as_the_model_trained_alone(digits, split):
    masks, seeds = split
    recipe = _recipe(CNN, "ensemble").replace(**{"until.train_loss": 0.3})
    together = train_models(recipe, digits, masks, seeds)
    assert len(set(together.fit.epochs_run.tolist())) > 1  # members stopped at different epochs
    for i in range(3):
        alone = train_models(recipe.replace(trainer="loop"), digits, masks[i:i + 1], seeds[i:i + 1])
        assert int(alone.fit.epochs_run[0]) == int(together.fit.epochs_run[i])
        torch.testing.assert_close(alone.test_logits[0], together.test_logits[i], rtol=0, atol=1e-4)


@pytest.mark.parametrize("model,trainer", [(CNN, "ensemble"), (MLP, "vmap"), (MLP, "loop")])
def test_checks_inside_epochs_stop_each_model_at_the_first_check_meeting_the_target(digits, split, model, trainer):
    masks, seeds = split
    k = 4
    recipe = _recipe(model, trainer).replace(**{"until.checks_per_epoch": k, "until.train_loss": 0.3})
    res = train_models(recipe, digits, masks, seeds)
    fit = res.fit
    spe = int(np.ceil(int(masks[0].sum()) / recipe.batch_size))
    at = [-(-j * spe // k) for j in range(1, k)]  # the steps into an epoch after which the fit is checked
    assert (fit.status == REACHED).all() and (fit.train_loss <= 0.3).all()
    inside = [i for i in range(3) if int(fit.steps_run[i]) % spe]
    assert inside, "no model stopped inside an epoch"
    for i in range(3):
        steps, e = int(fit.steps_run[i]), int(fit.epochs_run[i])
        assert (e - 1) * spe < steps <= e * spe and (steps % spe == 0 or steps % spe in at)
        assert _loss_of(res.state_dict(i), recipe, digits, masks[i]) == pytest.approx(float(fit.train_loss[i]),
                                                                                     abs=1e-6)
    # the same models checked at epoch ends only: the same trajectory, stopped no earlier
    coarse = train_models(recipe.replace(**{"until.checks_per_epoch": 1}), digits, masks, seeds).fit
    assert (fit.steps_run <= coarse.steps_run).all() and (fit.steps_run < coarse.steps_run).any()
    assert float(fit.train_loss.mean()) > float(coarse.train_loss.mean())  # closer to the target from below


def test_the_tracker_stops_a_model_at_the_first_inside_check_it_may_stop_at():
    """Synthetic curves: model 0 drops slowly (may not stop inside epoch 2: its last change, doubled,
    does not reach the target), model 1 drops fast (may)."""
    from datamodels.training.fit import FitTracker
    recipe = recipe_from_dict({"until": {"train_loss": 1.0, "max_epochs": 10, "checks_per_epoch": 4}})
    t = FitTracker(recipe, 2, steps_per_epoch=10)
    state = lambda i: {"w": torch.tensor(float(i))}  # noqa: E731
    acc = torch.zeros(2)
    assert t.checks_in_epoch(0) == {3, 5, 8} and t.inside.all()  # the first two epochs: always inside checks
    assert not t.after_check(0, 3, torch.tensor([3.0, 3.0]), acc, state)
    t.after_epoch(0, torch.tensor([2.0, 2.5]), acc, state)
    assert t.checks_in_epoch(1) == {3, 5, 8}
    t.after_epoch(1, torch.tensor([1.9, 1.6]), acc, state)
    assert t.checks_in_epoch(2) == {3, 5, 8} and t.inside.tolist() == [False, True]  # 1.9-0.2 > 1; 1.6-1.8 <= 1
    assert not t.after_check(2, 3, torch.tensor([0.5, 1.2]), acc, state)  # model 0 is below, but not allowed
    assert not t.after_check(2, 5, torch.tensor([0.5, 0.9]), acc, state)
    assert t.stopped.tolist() == [False, True] and int(t.steps_run[1]) == 25 and int(t.epochs_run[1]) == 3
    assert not t.after_check(2, 8, torch.tensor([0.5, 0.1]), acc, state)  # a stopped model stays where it stopped
    assert t.after_epoch(2, torch.tensor([0.8, 0.1]), acc, state)
    loss, _ = t.final_loss()
    assert loss.tolist() == pytest.approx([0.8, 0.9]) and t.steps_run.tolist() == [30, 25]
    assert set(t.snapshots) == {0, 1}


def test_stop_at_nearest_keeps_the_check_nearest_the_target_over_the_whole_run():
    from datamodels.training.fit import FitTracker
    recipe = recipe_from_dict({"until": {"train_loss": 1.0, "max_epochs": 2, "checks_per_epoch": 2,
                                         "stop_at": "nearest"}})
    t = FitTracker(recipe, 2, steps_per_epoch=10)
    state = lambda i: {"step": int(t.steps_seen)}  # noqa: E731
    acc = torch.zeros(2, dtype=torch.float64)
    losses = {5: [0.5, 3.0], 10: [1.3, 2.0], 15: [0.97, 1.6], 20: [0.2, 1.4]}  # model 0 jumps; model 1 never meets
    for epoch in range(2):
        assert t.checks_in_epoch(epoch) == {5} and t.inside.all()  # every epoch, every model
        t.steps_seen = epoch * 10 + 5
        assert not t.after_check(epoch, 5, torch.tensor(losses[t.steps_seen], dtype=torch.float64), acc, state)
        t.steps_seen = epoch * 10 + 10
        t.after_epoch(epoch, torch.tensor(losses[t.steps_seen], dtype=torch.float64), acc, state)
    assert t.steps_run.tolist() == [15, 20] and t.epochs_run.tolist() == [2, 2]
    assert t.snapshots == {0: {"step": 15}, 1: {"step": 20}}
    loss, _ = t.final_loss()
    assert loss.tolist() == pytest.approx([0.97, 1.4])
    assert t.status().tolist() == [REACHED, HIT_MAX]  # model 1 never met the target: counted


def test_stop_at_closest_takes_the_previous_check_when_it_is_nearer():
    from datamodels.training.fit import FitTracker
    recipe = recipe_from_dict({"until": {"train_loss": 1.0, "max_epochs": 10, "checks_per_epoch": 2,
                                         "stop_at": "closest"}})
    t = FitTracker(recipe, 2, steps_per_epoch=10)
    state = lambda i: {"step": int(t.steps_seen)}  # noqa: E731
    acc = torch.zeros(2, dtype=torch.float64)
    assert t.checks_in_epoch(0) == {5}
    t.steps_seen = 5
    t.after_check(0, 5, torch.tensor([1.05, 1.5], dtype=torch.float64), acc, state)
    t.steps_seen = 10
    assert t.after_epoch(0, torch.tensor([0.7, 0.98], dtype=torch.float64), acc, state) is True
    # model 0: 1.05 (0.05 above) is nearer than 0.7 (0.3 below): kept at step 5; model 1: 0.98 at step 10
    assert t.steps_run.tolist() == [5, 10] and t.snapshots[0] == {"step": 5} and t.snapshots[1] == {"step": 10}
    loss, _ = t.final_loss()
    assert loss.tolist() == pytest.approx([1.05, 0.98]) and (t.status() == REACHED).all()


@pytest.mark.parametrize("model,trainer", [(CNN, "ensemble"), (MLP, "vmap"), (MLP, "loop")])
def test_stop_at_closest_keeps_the_check_nearer_the_target(digits, split, model, trainer):
    masks, seeds = split
    first = _recipe(model, trainer).replace(**{"until.checks_per_epoch": 3, "until.train_loss": 0.3})
    closest = first.replace(**{"until.stop_at": "closest"})
    a, b = train_models(first, digits, masks, seeds), train_models(closest, digits, masks, seeds)
    spe = int(np.ceil(int(masks[0].sum()) / first.batch_size))
    for i in range(3):
        steps_a, steps_b = int(a.fit.steps_run[i]), int(b.fit.steps_run[i])
        loss_a, loss_b = float(a.fit.train_loss[i]), float(b.fit.train_loss[i])
        assert steps_b in (steps_a, max(s for s in _check_steps(spe, 3, steps_a) if s < steps_a))
        assert abs(loss_b - 0.3) <= abs(loss_a - 0.3) and (steps_b == steps_a) == (loss_b == loss_a)
        assert _loss_of(b.state_dict(i), closest, digits, masks[i]) == pytest.approx(loss_b, abs=1e-6)
        assert int(b.fit.status[i]) == REACHED
    assert (b.fit.train_loss > 0.3).any()  # some models kept above the target: the losses scatter around it
    nearest = train_models(first.replace(**{"until.stop_at": "nearest"}), digits, masks, seeds)  # the same schedule
    for i in range(3):  # every check the others saw is one of its checks: it can only be nearer the target
        loss_c = float(nearest.fit.train_loss[i])
        assert abs(loss_c - 0.3) <= abs(float(b.fit.train_loss[i]) - 0.3) + 1e-12
        assert _loss_of(nearest.state_dict(i), closest, digits, masks[i]) == pytest.approx(loss_c, abs=1e-6)
    assert (nearest.fit.status == REACHED).all() and (nearest.fit.epochs_run <= 20).all()


def _check_steps(spe: int, k: int, until: int) -> list[int]:
    """Every step count up to ``until`` at which a model may be checked (epoch ends and inside checks)."""
    inside = [-(-j * spe // k) for j in range(1, k)]
    return [e * spe + a for e in range(until // spe + 1) for a in [*inside, spe] if 0 < e * spe + a <= until]


def test_an_ensemble_member_stopping_inside_an_epoch_stops_as_the_model_trained_alone(digits, split):
    masks, seeds = split
    recipe = _recipe(CNN, "ensemble").replace(**{"until.train_loss": 0.3, "until.checks_per_epoch": 5,
                                                 "until.stop_at": "closest"})
    together = train_models(recipe, digits, masks, seeds)
    for i in range(3):
        alone = train_models(recipe.replace(trainer="loop"), digits, masks[i:i + 1], seeds[i:i + 1])
        assert int(alone.fit.steps_run[0]) == int(together.fit.steps_run[i])
        torch.testing.assert_close(alone.test_logits[0], together.test_logits[i], rtol=0, atol=1e-4)


def test_train_fn_gets_the_target_and_reports_what_it_reached(digits, split):
    masks, seeds = split
    recipe = _recipe({"target": "tests.user_modules:mlp"}, {"target": "tests.user_modules:until_train_fn"},
                     **{"optim": {"name": "sgd", "lr": 0.1}})
    fit = train_models(recipe, digits, masks, seeds).fit
    assert (fit.status == REACHED).all() and (fit.train_loss <= TARGET).all()
    assert (fit.epochs_run >= 1).all() and (fit.steps_run >= fit.epochs_run).all()
    strict = recipe.replace(**{"until.train_loss": 1e-6, "until.max_epochs": 1})
    fit = train_models(strict, digits, masks, seeds).fit
    assert (fit.status == HIT_MAX).all() and (fit.epochs_run == 1).all()


def test_models_that_reach_max_epochs_first_are_counted_and_said(tmp_path, digits):
    path = write_recipe(tmp_path, until={"train_loss": 1e-6, "max_epochs": 2})
    run = cli("train", path, "--out", tmp_path / "s", "--models", 3, "--ensemble-size", 3)
    assert run.returncode == 0, run.stderr
    assert "0 model(s) met it, 3 reached max_epochs 2 first" in run.stdout
    assert "warning:" in run.stderr and "reached max_epochs 2 first" in run.stderr
    store = Store.open(tmp_path / "s")
    s = store.summary()
    assert (s["fit_met"], s["fit_hit_max"]) == (0, 3)
    assert (store.fit_values("epochs_run") == 2).all() and np.isfinite(store.fit_values("train_loss")).all()


def test_every_store_records_the_final_training_loss(tmp_path, digits):
    recipe = recipe_from_dict({"model": CNN, "optim": SGD, "epochs": 2, "batch_size": 64})
    store = Store.create_or_resume(tmp_path / "s", recipe, digits, n_models=2, subset_fraction=0.5, seed=0)
    fill_store(store, ensemble_size=2)
    store = Store.open(tmp_path / "s")
    loss, status = store.fit_values("train_loss"), store.fit_values("fit_status")
    assert np.isfinite(loss).all() and (loss > 0).all() and (status == 0).all()
    assert (store.fit_values("epochs_run") == 2).all()


@pytest.mark.parametrize("until,words", [
    ({"train_loss": -1, "max_epochs": 5}, "until.train_loss must be a number > 0"),
    ({"train_loss": 0.3}, "until needs max_epochs"),
    ({"max_epochs": 5}, "without a target"),
    ({"train_loss": 0.3, "max_epochs": 0}, "until.max_epochs must be an integer >= 1"),
    ({"train_accuracy": 1.5, "max_epochs": 5}, "until.train_accuracy must be a number > 0 and at most 1"),
    ({"train_loss": 0.3, "max_epochs": 5, "patience": 2}, "unknown recipe key 'until.patience'"),
    ({"train_loss": 0.3, "max_epochs": 5, "checks_per_epoch": 0}, "until.checks_per_epoch must be an integer >= 1"),
    ({"train_loss": 0.3, "max_epochs": 5, "checks_per_epoch": 2.5}, "'until.checks_per_epoch' must be int"),
    ({"train_loss": 0.3, "max_epochs": 5, "stop_at": "last"}, "until.stop_at must be one of first, closest, nearest"),
    ({"stop_at": "closest"}, "until.stop_at is set without a target"),
])
def test_bad_until_options_are_refused_in_one_line(tmp_path, until, words):
    with pytest.raises(UserError, match=words) as err:
        recipe_from_dict({"until": until})
    assert "\n" not in str(err.value)
    run = cli("train", write_recipe(tmp_path, until=until), "--out", tmp_path / "s", "--models", 2)
    assert run.returncode == 2 and words in the_error_line(run.stderr)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("entries,words", [
    ([0], "epoch 0 is outside 1..2"), ([{"train_loss": 0}], "keep_checkpoints.train_loss must be a number > 0"),
    (["last"], "is not an epoch"), ([1, 1], "names epoch1 twice"), ({"epochs": 1}, "keep_checkpoints. must be list"),
])
def test_bad_checkpoint_options_are_refused_in_one_line(entries, words):
    with pytest.raises(UserError, match=words) as err:
        recipe_from_dict({"epochs": 2, "keep_checkpoints": entries})
    assert "\n" not in str(err.value)
