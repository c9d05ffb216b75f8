"""Trainer backends share one per-model semantics: a model trained alone with ``loop`` equals the
same model trained inside a ``vmap`` ensemble (float64, user modules with LayerNorm / BatchNorm)."""
import pytest
import torch

from datamodels.base.errors import UserError
from datamodels.data.dataset import Dataset
from datamodels.store.store import draw_masks_and_seeds
from datamodels.training.backends import train_models
from datamodels.training.recipe import recipe_from_dict

SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
ADAM = {"name": "adam", "lr": 3e-3, "weight_decay": 1e-4}


@pytest.fixture(scope="module")
def split(digits):
    masks, seeds = draw_masks_and_seeds(seed=3, n_models=4, n_train=digits.n_train, fraction=0.3)
    return torch.from_numpy(masks), seeds.tolist()


def _recipe(model, optim, **kw):
    return recipe_from_dict({"model": model, "optim": optim, "precision": "float64", "epochs": 2, "batch_size": 40,
                             **kw})


def _same_model(a, i, b, j):
    torch.testing.assert_close(a.test_logits[i], b.test_logits[j], rtol=0, atol=1e-6)
    torch.testing.assert_close(a.train_margins[i], b.train_margins[j], rtol=0, atol=1e-6)
    sa, sb = a.state_dict(i), b.state_dict(j)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        torch.testing.assert_close(sa[k].double(), sb[k].double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("target", ["tests.user_modules:mlp", "tests.user_modules:small_cnn"])
@pytest.mark.parametrize("optim", [SGD, ADAM], ids=["sgd_momentum", "adam"])
def test_loop_alone_equals_inside_vmap_ensemble(digits, split, target, optim):
    masks, seeds = split
    recipe = _recipe({"target": target}, optim, augment={"flip": False})
    together = train_models(recipe.replace(trainer="vmap"), digits, masks, seeds)
    for i in (0, 3):
        alone = train_models(recipe.replace(trainer="loop"), digits, masks[i:i + 1], seeds[i:i + 1])
        _same_model(alone, 0, together, i)
    assert together.backend == "vmap" and not together.diverged.any()
    assert (together.test_logits[0] - together.test_logits[1]).abs().max() > 1e-3  # really different models


@pytest.mark.parametrize("name", ["torch.optim:RMSprop", "torch.optim:Adagrad", "torch.optim:Adamax",
                                  "torch.optim:NAdam", "torch.optim:RAdam", "torch.optim:Adadelta",
                                  "torch.optim:Rprop", "tests.user_modules:SignSGD", "adamw"])
def test_elementwise_optimizers_are_exact_under_vmap(digits, split, name):
    masks, seeds = split
    recipe = _recipe({"target": "tests.user_modules:mlp", "kwargs": {"hidden": 8}}, {"name": name, "lr": 1e-2},
                     epochs=1)
    together = train_models(recipe.replace(trainer="vmap"), digits, masks[:2], seeds[:2])
    alone = train_models(recipe.replace(trainer="loop"), digits, masks[1:2], seeds[1:2])
    _same_model(alone, 0, together, 1)


def test_builtin_arch_loop_matches_ensemble_backend(digits, split):
    """The grouped-convolution ensemble follows the same per-model semantics (augmentation included)."""
    masks, seeds = split
    recipe = _recipe({"arch": "digits_cnn", "width": 4}, SGD, augment={"flip": True, "translate": 1, "cutout": 2})
    grouped = train_models(recipe.replace(trainer="ensemble"), digits, masks[:2], seeds[:2])
    alone = train_models(recipe.replace(trainer="loop"), digits, masks[1:2], seeds[1:2])
    torch.testing.assert_close(alone.test_logits[0], grouped.test_logits[1], rtol=0, atol=1e-4)
    vm = train_models(recipe.replace(trainer="vmap"), digits, masks[:2], seeds[:2])
    torch.testing.assert_close(vm.test_logits[1], alone.test_logits[0], rtol=0, atol=1e-6)


def test_vmap_refuses_non_elementwise_optimizers_in_one_line(digits, split):
    masks, seeds = split
    for name in ("tests.user_modules:NormScaledSGD", "case_studies.optimizers.sam:SAM"):
        recipe = _recipe({"target": "tests.user_modules:mlp"}, {"name": name, "lr": 0.1}, trainer="vmap")
        with pytest.raises(UserError) as err:
            train_models(recipe, digits, masks[:2], seeds[:2])
        assert "\n" not in str(err.value) and name in str(err.value) and "trainer: loop" in str(err.value)


def test_sam_trains_with_loop_and_auto(digits, split):
    masks, seeds = split
    recipe = _recipe({"target": "tests.user_modules:mlp"},
                     {"name": "case_studies.optimizers.sam:SAM", "lr": 0.05, "rho": 0.05}, epochs=3)
    res = train_models(recipe, digits, masks[:1], seeds[:1])  # auto -> loop
    assert res.backend == "loop" and res.accuracy[0] > 0.5
    plain = train_models(recipe.replace(**{"optim.name": "sgd", "optim.kwargs": {}, "optim.nesterov": False,
                                           "optim.weight_decay": 0.0}), digits, masks[:1], seeds[:1])
    assert (plain.test_logits - res.test_logits).abs().max() > 1e-4  # the ascent step changes training


def test_token_ids_stay_integer_and_models_match(split):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 20, (300, 6), generator=g)
    y = (x[:, 0] % 3)
    data = Dataset.from_tensors(x[:200], y[:200], x[200:], y[200:], name="tokens")
    assert data.x_train.dtype == torch.int64
    masks, seeds = draw_masks_and_seeds(seed=1, n_models=3, n_train=200, fraction=0.5)
    recipe = _recipe({"target": "tests.user_modules:token_bag"}, ADAM)
    together = train_models(recipe.replace(trainer="vmap"), data, torch.from_numpy(masks), seeds.tolist())
    alone = train_models(recipe.replace(trainer="loop"), data, torch.from_numpy(masks[2:]), seeds[2:].tolist())
    _same_model(alone, 0, together, 2)
    bad = recipe.replace(**{"augment.flip": True})
    with pytest.raises(UserError, match="augment"):
        train_models(bad, data, torch.from_numpy(masks), seeds.tolist())
    with pytest.raises(UserError, match="model.target"):
        train_models(recipe.replace(**{"model.target": None, "model.arch": "linear"}), data,
                     torch.from_numpy(masks), seeds.tolist())


def test_dropout_model_auto_falls_back_to_loop(digits, split, caplog):
    caplog.set_level("INFO", logger="modeldiff")
    masks, seeds = split
    recipe = _recipe({"target": "tests.user_modules:dropout_mlp"}, ADAM, epochs=1)
    with pytest.raises(UserError, match="trainer: loop"):
        train_models(recipe.replace(trainer="vmap"), digits, masks[:2], seeds[:2])
    res = train_models(recipe.replace(name="dropout-auto"), digits, masks[:2], seeds[:2])
    assert res.backend == "loop"
    assert "trainer auto -> loop" in caplog.text
    again = train_models(recipe.replace(trainer="loop"), digits, masks[1:2], seeds[1:2])  # seeded dropout
    torch.testing.assert_close(again.test_logits[0], res.test_logits[1], rtol=0, atol=1e-6)


def test_user_loss_is_used_and_checked(digits, split):
    masks, seeds = split
    recipe = _recipe({"target": "tests.user_modules:mlp"}, ADAM, loss="tests.user_modules:squared_error", epochs=1)
    v = train_models(recipe.replace(trainer="vmap"), digits, masks[:2], seeds[:2])
    lo = train_models(recipe.replace(trainer="loop"), digits, masks[:1], seeds[:1])
    _same_model(lo, 0, v, 0)
    ce = train_models(recipe.replace(loss="cross_entropy", trainer="loop"), digits, masks[:1], seeds[:1])
    assert (ce.test_logits - lo.test_logits).abs().max() > 1e-4
    with pytest.raises(UserError, match="tests.user_modules:mean_loss.*per-example"):
        train_models(recipe.replace(loss="tests.user_modules:mean_loss", trainer="loop"), digits, masks[:1], seeds[:1])


@pytest.mark.parametrize("target, message", [
    ("tests.nowhere:mlp", "cannot import module"),
    ("tests.user_modules:nope", "has no attribute"),
    ("tests.user_modules:not_a_module", "not a torch.nn.Module"),
    ("tests.user_modules:wrong_shape", r"logits \[B, K\]"),
])
def test_bad_model_targets_one_line(digits, split, target, message):
    masks, seeds = split
    with pytest.raises(UserError, match=message) as err:
        train_models(_recipe({"target": target}, ADAM, trainer="loop"), digits, masks[:1], seeds[:1])
    assert target in str(err.value) and "\n" not in str(err.value)
