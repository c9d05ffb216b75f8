"""Recipe validation: unknown or mistyped keys are rejected with the key named."""
import pytest

from datamodels.base.errors import UserError
from datamodels.training.recipe import load_recipe, recipe_from_dict


@pytest.mark.parametrize("data, named", [
    ({"optim": {"learning_rate": 0.1}}, "optim.learning_rate"),
    ({"batchsize": 32}, "batchsize"),
    ({"augment": {"flip": "yes"}}, "augment.flip"),
    ({"epochs": 2.5}, "epochs"),
    ({"model": {"arch": "vgg"}}, "model.arch"),
    ({"optim": {"schedule": "linear"}}, "optim.schedule"),
    ({"init": {"kind": "checkpoint"}}, "init.checkpoint"),
    ({"optim": "fast"}, "optim"),
])
def test_bad_keys_are_named(data, named):
    with pytest.raises(UserError, match=named.replace(".", r"\.")):
        recipe_from_dict(data)


def test_yaml_round_trip_and_noise_temperature(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: hi\noptim: {lr: 0.1, weight_decay: 5e-4}\nbatch_size: 128\n")
    recipe = load_recipe(path)
    assert recipe.optim.weight_decay == pytest.approx(5e-4)
    assert recipe.noise_temperature == pytest.approx(0.1 / 128)
    (tmp_path / "again.yaml").write_text(recipe.to_yaml())
    assert load_recipe(tmp_path / "again.yaml") == recipe


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
