"""A store whose recipe names a callable defined in Python only (a notebook cell, ``__main__``, a nested
function) trains in this process; worker processes and Ray tasks cannot import it, so ``fill_store``
refuses them in one line before the store is locked or any model is trained."""
import numpy as np
import pytest
from torch import nn

from datamodels.base.errors import UserError
from datamodels.data.dataset import load_dataset
from datamodels.registry import record
from datamodels.runs.launchers import fill_store
from datamodels.store.store import Store
from datamodels.training.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def python_only_store(tmp_path_factory):
    def make_net(num_classes, input_shape):  # nested: no other process can import it
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes))

    key = record(make_net)
    data = load_dataset("digits")
    recipe = recipe_from_dict({"model": {"target": key}, "epochs": 1, "trainer": "loop"})
    store = Store.create_or_resume(tmp_path_factory.mktemp("po") / "store", recipe, data, n_models=2,
                                   subset_fraction=0.5, seed=0)
    return store, key, data


@pytest.mark.parametrize("launcher, workers, where", [("local", 2, "2 worker processes"),
                                                      ("ray", 1, "the ray launcher")])
def test_python_only_model_with_workers_or_ray_is_one_line(python_only_store, launcher, workers, where):
    store, key, data = python_only_store
    with pytest.raises(UserError) as info:
        fill_store(store, ensemble_size=1, launcher=launcher, workers=workers, dataset=data)
    message = str(info.value)
    assert "\n" not in message and key[len("python:"):] in message and where in message
    assert "workers=1" in message and "pkg.mod:name" in message
    assert (Store.open(store.path, data).status == 0).all()  # nothing trained
    assert not (store.path / ".lock").exists()  # refused before the store was locked
