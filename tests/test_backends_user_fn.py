"""A user's train_fn as a trainer backend; bad targets fail in one line; the CLI trains a user model."""
import numpy as np
import pytest
import torch
import yaml

from datamodels.base.errors import UserError
from datamodels.runs.launchers import fill_store
from datamodels.store.store import Store
from datamodels.training.model_factory import DataSpec, build_module
from datamodels.training.recipe import recipe_from_dict
from tests.helpers_train import cli, the_error_line
from tests.user_modules import train_fn

RECIPE = {"name": "own-fn", "model": {"target": "tests.user_modules:mlp", "kwargs": {"hidden": 12}},
          "optim": {"name": "adam", "lr": 1e-2}, "batch_size": 64, "epochs": 1,
          "trainer": {"target": "tests.user_modules:train_fn", "kwargs": {"epochs": 2}}}


def test_train_fn_store_equals_the_function_called_by_hand(tmp_path, digits):
    recipe = recipe_from_dict(RECIPE)
    store = Store.create_or_resume(tmp_path / "s", recipe, digits, n_models=3, subset_fraction=0.5, seed=2)
    summary = fill_store(store, ensemble_size=2)
    assert summary["done"] == 3
    store = Store.open(tmp_path / "s")
    for i in (0, 2):
        seed, mask = int(store.seeds[i]), torch.from_numpy(np.array(store.masks[i]))
        with torch.random.fork_rng():  # the contract: model built under manual_seed(seed), train_fn under it too
            torch.manual_seed(seed)
            model = build_module(recipe.model, DataSpec.of(digits))
            torch.manual_seed(seed)
            model = train_fn(model, digits.x_train[mask], digits.y_train[mask], seed=seed, device="cpu",
                             recipe=recipe, epochs=2)
        with torch.no_grad():
            by_hand = model.eval()(digits.x_test)
        np.testing.assert_allclose(store.test_logits[i], by_hand.numpy(), atol=1e-5)
        loaded = store.load_model(i)  # rebuilt from the recorded target + kwargs
        torch.testing.assert_close(loaded(digits.x_test), by_hand, atol=1e-5, rtol=0)
    probs = store.predict_proba(digits.x_test[:7])
    assert probs.shape == (3, 7, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 7))


@pytest.mark.parametrize("target, message", [
    ("tests.user_modules:raising_train_fn", "raised RuntimeError: boom"),
    ("tests.user_modules:nan_train_fn", "NaN or infinite weights"),
    ("tests.user_modules:dict_train_fn", "returned OrderedDict"),
    ("tests.user_modules:shape_train_fn", "parameters differ from the model target.s"),  # another architecture
    ("tests.user_modules:missing_fn", "has no attribute"),
])
def test_bad_train_fn_one_line_and_nothing_written(tmp_path, digits, target, message):
    recipe = recipe_from_dict({**RECIPE, "trainer": {"target": target}})
    store = Store.create_or_resume(tmp_path / "s", recipe, digits, n_models=2, subset_fraction=0.5, seed=0)
    with pytest.raises(UserError, match=message) as err:
        fill_store(store, ensemble_size=2)
    assert target in str(err.value) and "\n" not in str(err.value)
    assert (Store.open(tmp_path / "s").status == 0).all()


@pytest.mark.slow
def test_cli_trains_a_user_model_with_adam_and_vmap(tmp_path, digits):
    recipe = {"name": "own-vmap", "model": {"target": "tests.user_modules:small_cnn", "kwargs": {"width": 4}},
              "optim": {"name": "adam", "lr": 3e-3, "betas": [0.9, 0.99]}, "trainer": "vmap", "epochs": 2,
              "batch_size": 32}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "store"
    result = cli("train", path, "--out", out, "--models", 4, "--ensemble-size", 4)
    assert result.returncode == 0, result.stderr
    store = Store.open(out)
    assert (store.status == 1).all() and store.recipe.model.target == "tests.user_modules:small_cnn"
    assert float(np.mean(store.accuracy)) > 0.5
    model = store.load_model(1)
    with torch.no_grad():
        logits = model(digits.x_test)
    np.testing.assert_allclose(store.test_logits[1], logits.numpy(), atol=1e-4)
    again = cli("train", path, "--out", out, "--models", 4, "--ensemble-size", 4)  # resume: nothing to do
    assert again.returncode == 0, again.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**recipe, "optim": {"name": "tests.user_modules:NormScaledSGD", "lr": 0.1}}))
    refused = cli("train", bad, "--out", tmp_path / "other", "--models", 2)
    assert refused.returncode == 2 and "NormScaledSGD" in the_error_line(refused.stderr)
    assert not (tmp_path / "other").exists()


def test_store_reimports_a_user_model_from_its_recorded_folder(tmp_path, digits, monkeypatch):
    pkg = tmp_path / "own_nets_h1"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("import math\nfrom torch import nn\n\ndef make(input_shape, num_classes):\n"
                                 "    d = math.prod(input_shape)\n"
                                 "    return nn.Sequential(nn.Flatten(), nn.Linear(d, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = recipe_from_dict({"model": {"target": "own_nets_h1.nets:make"}, "optim": {"name": "adam", "lr": 1e-2},
                               "epochs": 1, "trainer": "loop"})
    store = Store.create_or_resume(tmp_path / "s", recipe, digits, n_models=2, subset_fraction=0.5, seed=0)
    fill_store(store, ensemble_size=2)
    assert store.metadata["targets"]["model.target"]["path"] == str(tmp_path)
    import sys

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    for name in [m for m in sys.modules if m.startswith("own_nets_h1")]:
        monkeypatch.delitem(sys.modules, name)
    model = Store.open(tmp_path / "s").load_model(1)  # found again through the recorded folder
    with torch.no_grad():
        np.testing.assert_allclose(store.test_logits[1], model(digits.x_test).numpy(), atol=1e-5)
