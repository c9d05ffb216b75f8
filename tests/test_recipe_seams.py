"""Recipe seams: model targets, optimizers, losses and trainers, strictly validated."""
import pytest
import yaml

from datamodels.base.errors import UserError
from datamodels.training.backends import check_recipe, choose_backend
from datamodels.training.optimizers import make_optimizer, vmap_refusal
from datamodels.training.recipe import load_recipe, recipe_from_dict

OLD = {"name": "old", "model": {"arch": "digits_cnn", "width": 8},
       "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "triangle"}}


def test_old_recipe_parses_to_the_same_sgd():
    r = recipe_from_dict(OLD)
    assert (r.optim.name, r.loss, r.trainer, r.model.arch, r.model.target) == ("sgd", "cross_entropy", "auto",
                                                                               "digits_cnn", None)
    default = recipe_from_dict({})
    assert (default.optim.momentum, default.optim.nesterov, default.optim.weight_decay) == (0.9, True, 5e-4)
    import torch

    opt = make_optimizer([torch.zeros(2, requires_grad=True)], r.optim)
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"], g["lr"]) == (0.9, True, 5e-4, 0.1)
    assert recipe_from_dict(r.to_dict()) == r and recipe_from_dict(yaml.safe_load(r.to_yaml())) == r
    assert choose_backend(r)[0] == "ensemble"


def test_builtin_name_as_target_is_an_alias():
    assert recipe_from_dict({"model": {"target": "linear"}}) == recipe_from_dict({"model": {"arch": "linear"}})


@pytest.mark.parametrize("data, named", [
    ({"optim": {"lr": float("nan")}}, "optim.lr"),
    ({"optim": {"lr": ".nan"}}, "optim.lr"),
    ({"optim": {"lr": float("inf")}}, "optim.lr"),
    ({"optim": {"name": "adam", "momentum": 0.9}}, "optim.momentum"),
    ({"optim": {"name": "sgd", "betas": [0.9, 0.99]}}, "optim.betas"),
    ({"optim": {"name": "adam", "beta1": 0.9}}, "optim.beta1"),
    ({"optim": {"name": "adamw", "betas": [0.9]}}, "optim.betas"),
    ({"optim": {"name": "lion"}}, "optim.name"),
    ({"model": {"target": "nonsense"}}, "model.target"),
    ({"model": {"arch": "linear", "target": "a.b:c"}}, "model.arch"),
    ({"model": {"target": "a.b:c", "blind_region": [0, 1, 0, 1]}}, "model.blind_region"),
    ({"model": {"arch": "linear", "kwargs": {"hidden": 3}}}, "model.kwargs"),
    ({"loss": "hinge"}, "loss"),
    ({"loss": "tests.user_modules:squared_error", "optim": {"label_smoothing": 0.1}}, "optim.label_smoothing"),
    ({"trainer": "fast"}, "trainer"),
    ({"trainer": {"target": "tests.user_modules:train_fn", "kwarg": {}}}, "trainer.kwarg"),
    ({"trainer": {"kwargs": {}}}, "trainer.target"),
    ({"trainer": "ensemble", "model": {"target": "tests.user_modules:mlp"}}, "trainer ensemble"),
    ({"init": {"kind": "checkpoint", "checkpoint": "x.pt"}, "model": {"target": "tests.user_modules:mlp"}},
     "init.reset_head"),
])
def test_bad_seams_are_named(data, named):
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        recipe_from_dict(data)


def test_user_optimizer_extra_keys_go_to_its_constructor():
    r = recipe_from_dict({"optim": {"name": "tests.user_modules:SignSGD", "lr": 0.01, "scale": 0.5}})
    assert r.optim.kwargs == {"scale": 0.5}
    assert recipe_from_dict(r.to_dict()) == r
    import torch

    opt = make_optimizer([torch.zeros(2, requires_grad=True)], r.optim)
    assert opt.param_groups[0]["scale"] == 0.5 and vmap_refusal(r.optim) is None
    bad = recipe_from_dict({"optim": {"name": "tests.user_modules:SignSGD", "lr": 0.01, "scael": 0.5}})
    with pytest.raises(UserError, match=r"optim\.scael"):
        check_recipe(bad)
    with pytest.raises(UserError, match=r"optim\.weight_decay"):  # SignSGD takes no weight_decay
        check_recipe(recipe_from_dict({"optim": {"name": "tests.user_modules:SignSGD", "weight_decay": 0.1}}))


def test_adam_defaults_and_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optim: {name: adamw, lr: 1.0e-3}\nmodel: {target: 'tests.user_modules:mlp', kwargs: {hidden: 8}}\n"
                    "loss: 'tests.user_modules:squared_error'\ntrainer: vmap\n")
    r = load_recipe(path)
    assert r.optim.betas == [0.9, 0.999] and r.optim.eps == 1e-8 and r.optim.weight_decay == 0.01
    assert r.model.kwargs == {"hidden": 8} and r.trainer == "vmap"
    assert load_recipe(path) == recipe_from_dict(yaml.safe_load(r.to_yaml()))


def test_auto_choices():
    user = {"model": {"target": "tests.user_modules:mlp"}}
    assert choose_backend(recipe_from_dict({**user, "optim": {"name": "adam"}}))[0] == "vmap"
    assert choose_backend(recipe_from_dict({**user, "optim": {"name": "case_studies.optimizers.sam:SAM"}}))[0] == "loop"
    assert choose_backend(recipe_from_dict({"trainer": "tests.user_modules:train_fn"}))[0] == "train_fn"


def test_store_of_an_earlier_release_resumes():
    """Metadata recipes written before the seams existed (no optim.name, loss, trainer, model.target)
    compare equal to today's recipe after normalisation; a changed setting is still refused."""
    from datamodels.store.metadata import check_compatible

    old_written = {"name": "old", "data": {"name": "digits", "data_dir": None, "per_class_train": None,
                                           "per_class_test": None},
                   "model": {"arch": "digits_cnn", "width": 8, "blind_region": None},
                   "optim": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                             "schedule": "triangle", "warmup_fraction": 0.2, "label_smoothing": 0.0},
                   "augment": {"flip": False, "translate": 0, "cutout": 0},
                   "init": {"kind": "random", "checkpoint": None, "reset_head": True},
                   "batch_size": 64, "epochs": 15, "precision": "float32", "loader": "tensor"}
    now = recipe_from_dict(OLD).to_dict()
    check_compatible({"recipe": old_written}, {"recipe": now}, "STORE")
    with pytest.raises(UserError, match=r"recipe\.optim\."):
        check_compatible({"recipe": old_written}, {"recipe": recipe_from_dict(
            {**OLD, "optim": {"name": "adam", "lr": 0.1}}).to_dict()}, "STORE")


def test_optimizer_case_studies_parse():
    from modeldiff.studies.config import load_study

    adam, sgd = load_study("optimizers").recipes()
    assert (adam.optim.name, sgd.optim.name, adam.trainer, sgd.trainer) == ("adam", "sgd", "vmap", "vmap")
    assert adam.model == sgd.model and not adam.model.builtin
    sam, plain = load_study("optimizers/sam_digits").recipes()
    assert sam.optim.kwargs == {"rho": 0.05} and check_recipe(sam) == "loop" and check_recipe(plain) == "vmap"
