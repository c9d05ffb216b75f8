"""model.width for user models (passed when the target takes it, else one line) and switching
optim.name with Recipe.replace (the new optimizer starts from its own defaults)."""
import pytest

from datamodels.base.errors import UserError
from datamodels.store.metadata import check_compatible
from datamodels.training.model_factory import DataSpec, build_module
from datamodels.training.recipe import Recipe, recipe_from_dict

SPEC = DataSpec(num_classes=10, input_shape=(1, 8, 8))


def _one_line_error(fn, *match):
    with pytest.raises(UserError) as err:
        fn()
    text = str(err.value)
    assert "\n" not in text
    for m in match:
        assert m in text, text
    return text


# ---- model.width --------------------------------------------------------------------------------------

def test_width_is_passed_to_a_target_that_takes_it():
    recipe = recipe_from_dict({"model": {"target": "tests.user_modules:small_cnn", "width": 6}})
    assert recipe.model.width is None and recipe.model.kwargs == {"width": 6}  # one place: the target's kwargs
    net = build_module(recipe.model, SPEC)
    assert net[0].out_channels == 6
    again = recipe_from_dict(recipe.to_dict())  # round trip (store metadata, study configs)
    assert again.model == recipe.model


def test_width_for_a_target_without_width_is_refused_in_one_line():
    recipe = recipe_from_dict({"model": {"target": "tests.user_modules:mlp", "width": 32}})
    _one_line_error(lambda: build_module(recipe.model, SPEC), "tests.user_modules:mlp", "model.width",
                    "model.kwargs", "hidden")


def test_width_given_twice_is_refused():
    _one_line_error(lambda: recipe_from_dict({"model": {"target": "tests.user_modules:small_cnn", "width": 6,
                                                        "kwargs": {"width": 8}}}), "both given")
    _one_line_error(lambda: recipe_from_dict({"model": {"target": "tests.user_modules:small_cnn", "width": 0}}),
                    "model.width must be >= 1")


def test_builtin_width_unchanged():
    assert Recipe().model.width == 16
    assert recipe_from_dict({"model": {"arch": "digits_cnn", "width": 8}}).model.width == 8
    assert recipe_from_dict({"model": {"arch": "digits_cnn", "width": None}}).model.width == 16


def test_stores_of_the_previous_release_reopen():
    """That release recorded model.width: 16 beside model.target and never passed it: a stored recipe
    drops it (the model is rebuilt as it was trained) and a resume with the same YAML is accepted."""
    old = {"name": "r", "model": {"arch": None, "width": 16, "blind_region": None,
                                  "target": "tests.user_modules:mlp", "kwargs": {"hidden": 8}}}
    stored = recipe_from_dict(old, stored=True)
    assert stored.model.kwargs == {"hidden": 8} and stored.model.width is None
    build_module(stored.model, SPEC)  # mlp takes no width: it is not passed
    new = recipe_from_dict({"name": "r", "model": {"target": "tests.user_modules:mlp", "kwargs": {"hidden": 8}}})
    meta = {"n_models": 4, "subset_fraction": 0.5, "seed": 0, "save_weights": None, "train_margins": True,
            "dataset": {"name": "x", "identity": "abc"}}
    check_compatible({**meta, "recipe": old}, {**meta, "recipe": new.to_dict()}, "store")
    # read as user input (not a store record), the same width is passed and refused for mlp
    with pytest.raises(UserError):
        build_module(recipe_from_dict(old).model, SPEC)


# ---- switching optim.name --------------------------------------------------------------------------------

def test_sgd_recipe_switches_to_adam_with_adam_defaults():
    sgd = Recipe()
    assert (sgd.optim.momentum, sgd.optim.nesterov, sgd.optim.weight_decay) == (0.9, True, 5e-4)
    adam = sgd.replace(**{"optim.name": "adam", "optim.lr": 1e-3})
    direct = recipe_from_dict({"optim": {"name": "adam", "lr": 1e-3}})
    assert adam.optim == direct.optim
    assert adam.optim.momentum is None and adam.optim.betas == [0.9, 0.999] and adam.optim.weight_decay == 0.0
    assert adam.optim.schedule == sgd.optim.schedule  # not per-optimizer: kept
    adamw = sgd.replace(**{"optim.name": "adamw"})
    assert adamw.optim.weight_decay == 0.01
    back = adam.replace(**{"optim.name": "sgd", "optim.lr": sgd.optim.lr})
    assert back.optim == sgd.optim


def test_switch_keeps_deliberate_settings_that_apply_and_refuses_those_that_do_not():
    sgd = recipe_from_dict({"optim": {"name": "sgd", "weight_decay": 1e-3, "momentum": 0.5}})
    _one_line_error(lambda: sgd.replace(**{"optim.name": "adam"}), "optim.momentum=0.5", "'adam'",
                    '"optim.momentum": None')
    adam = sgd.replace(**{"optim.name": "adam", "optim.momentum": None})
    assert adam.optim.weight_decay == 1e-3 and adam.optim.momentum is None and adam.optim.eps == 1e-8


def test_keys_given_in_the_same_call_win_or_are_refused():
    adam = Recipe().replace(**{"optim.name": "adam", "optim.eps": 1e-6, "optim.betas": [0.8, 0.99]})
    assert adam.optim.eps == 1e-6 and adam.optim.betas == [0.8, 0.99]
    _one_line_error(lambda: Recipe().replace(**{"optim.name": "adam", "optim.momentum": 0.9}),
                    "optim.momentum does not apply", "adam")


def test_switch_to_and_from_a_user_optimizer():
    sign = Recipe().replace(**{"optim.name": "tests.user_modules:SignSGD", "optim.lr": 0.01})
    assert sign.optim.momentum is None and sign.optim.weight_decay is None and sign.optim.kwargs == {}
    lion = recipe_from_dict({"optim": {"name": "tests.user_modules:SignSGD", "lr": 0.01, "beta1": 0.9}})
    assert lion.optim.kwargs == {"beta1": 0.9}
    _one_line_error(lambda: lion.replace(**{"optim.name": "sgd"}), "optim.kwargs", '"optim.kwargs": {}')
    sgd = lion.replace(**{"optim.name": "sgd", "optim.kwargs": {}})
    assert sgd.optim.momentum == 0.9 and sgd.optim.kwargs == {}


def test_same_name_and_bad_paths():
    r = recipe_from_dict({"optim": {"name": "sgd", "momentum": 0.5}})
    assert r.replace(**{"optim.name": "sgd", "optim.lr": 0.2}).optim.momentum == 0.5
    _one_line_error(lambda: r.replace(**{"optimizer.lr": 0.1}), "optimizer.lr")


# ---- bad user models through the CLI: one error line, exit 2, no store folder -----------------------------

@pytest.mark.parametrize("model, message", [
    ({"target": "tests.nowhere:mlp"}, "cannot import module"),
    ({"target": "tests.user_modules:not_a_module"}, "not a torch.nn.Module"),
    ({"target": "tests.user_modules:wrong_shape"}, "logits [B, K]"),
    ({"target": "tests.user_modules:mlp", "width": 8}, "takes no 'width' argument"),
])
def test_cli_refuses_a_bad_user_model_before_the_store_exists(tmp_path, capsys, model, message):
    import yaml

    from modeldiff.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "bad", "model": model, "epochs": 1}))
    assert main(["train", str(recipe), "--out", str(tmp_path / "store"), "--models", "2",
                 "--ensemble-size", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1] and model["target"] in err[-1]
    assert not (tmp_path / "store").exists()


def test_study_refuses_a_bad_user_model_of_b_before_training_a(tmp_path):
    from modeldiff.studies.config import load_study
    from modeldiff.studies.run import run_study

    cfg = load_study("tabular/breast_cancer")
    cfg.algorithm_b.recipe = {**cfg.algorithm_b.recipe, "model": {"target": "tests.user_modules:wrong_shape"}}
    _one_line_error(lambda: run_study(cfg, tmp_path / "run"), "tests.user_modules:wrong_shape", "logits [B, K]")
    assert not (tmp_path / "run" / "store_a").exists() and not (tmp_path / "run" / "store_b").exists()
