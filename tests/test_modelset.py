"""ModelSet: models trained elsewhere (a folder of state dicts + masks) go through attribution,
LDS and counterfactual tests exactly like a store's models."""
import shutil

import numpy as np
import pytest
import torch

from case_studies.tabular.nets import make_mlp
from datamodels.attribution.api import attribute
from datamodels.base.errors import UserError
from datamodels.data.dataset import load_from_target
from datamodels.modelset import FolderModelSet, ModelSet, as_modelset
from datamodels.runs.launchers import fill_store
from datamodels.store.store import Store
from datamodels.training.recipe import recipe_from_dict

RECIPE = {"name": "tab", "data": {"target": "case_studies.tabular.data:load"},
          "model": {"target": "case_studies.tabular.nets:make_mlp", "kwargs": {"hidden": 8, "depth": 1}},
          "optim": {"name": "sgd", "lr": 0.05}, "trainer": "vmap", "batch_size": 32, "epochs": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    recipe = recipe_from_dict(RECIPE)
    data = load_from_target("case_studies.tabular.data:load")
    s = Store.create_or_resume(tmp_path_factory.mktemp("ms") / "store", recipe, data, 12, 0.5, 0,
                               ensemble_size=6)
    fill_store(s, ensemble_size=6, dataset=data)
    return Store.open(s.path)


def _make():
    return make_mlp((30,), 2, hidden=8, depth=1)


@pytest.fixture(scope="module")
def folder_set(store, tmp_path_factory):
    """The store's models as a user would bring them: state dicts in a folder, masks, outputs."""
    folder = tmp_path_factory.mktemp("models")
    for i in range(store.n_models):
        shutil.copy(store.weight_path(i), folder / f"net_{i:03d}.pt")
    np.save(folder.parent / "masks.npy", np.asarray(store.masks))
    return ModelSet.from_folder(folder, _make, folder.parent / "masks.npy", store.load_dataset())


def test_store_is_a_modelset(store):
    assert isinstance(store, ModelSet)
    assert as_modelset(str(store.path)).n_models == 12


def test_folder_gives_the_same_trak_scores_as_its_store(store, folder_set):
    ours = attribute(folder_set, "trak", proj_dim=32, progress=False)
    theirs = attribute(store, "trak", proj_dim=32, progress=False)
    assert ours.shape == (114, 455)
    np.testing.assert_array_equal(ours, theirs)


def test_folder_outputs_and_datamodels_match_the_store(store, folder_set):
    np.testing.assert_allclose(folder_set.test_margins, np.asarray(store.test_margins), atol=1e-4)
    given = ModelSet.from_folder(folder_set.path, _make, np.asarray(store.masks), store.load_dataset(),
                                 outputs=np.asarray(store.test_margins))
    ours = attribute(given, "datamodels", n_lambdas=4, progress=False)
    theirs = attribute(store, "datamodels", n_lambdas=4, progress=False)
    np.testing.assert_array_equal(ours, theirs)


def test_folder_predicts_and_runs_counterfactuals(store, folder_set):
    from modeldiff.counterfactual.effects import counterfactual_effects, store_predictor

    x = folder_set.load_dataset().x_test[:20]
    p = folder_set.predict_proba(x)
    assert p.shape == (12, 20, 2)
    torch.testing.assert_close(p, store.predict_proba(x), atol=1e-5, rtol=1e-5)
    res = counterfactual_effects(store_predictor(folder_set), store_predictor(store), x, lambda z: z + 1.0, 0,
                                 n_resamples=200)
    assert abs(res.comparison.diff.mean) < 1e-5  # the same models on both sides


def test_lds_of_a_folder_modelset(folder_set, tmp_path):
    from datamodels.attribution.api import attribute_to_file
    from datamodels.attribution.influence_io import read_influence
    from modeldiff.cli.lds import lds_against_store

    attribute_to_file(folder_set, tmp_path / "s.h5", "trak", n_models=6, proj_dim=32, progress=False)
    inf = read_influence(tmp_path / "s.h5")
    assert inf.store_path == str(folder_set.path.resolve()) and inf.method_params["model_output"] == "margin"
    notes = []
    res = lds_against_store(inf, folder_set, n_boot=50, report=lambda *a, **k: notes.append(a[0]))
    assert np.isfinite(res.mean) and res.n_models == 6  # the 6 attributed models are held out
    assert "excluded 6 models" in notes[0] and "the other 6" in notes[0]


def test_folder_errors(store, folder_set, tmp_path):
    data = store.load_dataset()
    with pytest.raises(UserError, match=r"masks must be \[12 models, 455 train examples\]"):
        ModelSet.from_folder(folder_set.path, _make, np.ones((3, 455), bool), data)
    with pytest.raises(UserError, match="holds no state dicts"):
        ModelSet.from_folder(tmp_path, _make, np.ones((1, 455), bool), data)
    wrong = ModelSet.from_folder(folder_set.path, lambda: make_mlp((30,), 2, hidden=4, depth=1),
                                 np.asarray(store.masks), data)
    with pytest.raises(UserError, match="does not fit the model make_model builds"):
        wrong.load_model(0)
    with pytest.raises(UserError, match="store path or a ModelSet"):
        attribute(object(), "trak")


def test_folder_modelset_through_the_counterfactual_transform_of_the_study(folder_set):
    from modeldiff.counterfactual.user_transform import user_transform

    t, target = user_transform({"target": "case_studies.tabular.transforms:shift_features", "target_class": 0,
                                "kwargs": {"features": ["worst radius"], "by": 2.0}})
    x = folder_set.load_dataset().x_test[:5]
    assert target == 0 and torch.equal(t(x)[:, 20], x[:, 20] + 2.0)
    assert isinstance(folder_set, FolderModelSet) and isinstance(folder_set, ModelSet)
    from modeldiff.counterfactual.user_transform import is_user_spec

    assert is_user_spec("my_pkg.tf:fn") and is_user_spec({"target": "a.b:c"})
    assert not is_user_spec("patch:size=3") and not is_user_spec("sepia") and not is_user_spec("foo:size=3")


class _Plain:
    """Only the abstract methods of the contract, no subclassing (duck-typed)."""

    def __init__(self, inner):
        self.inner = inner

    masks = property(lambda self: self.inner.masks)
    test_margins = property(lambda self: self.inner.test_margins)

    def valid_indices(self, warn=True):
        return self.inner.valid_indices(warn)

    def has_weights(self, i):
        return self.inner.has_weights(i)

    def load_model(self, i, device="cpu"):
        return self.inner.load_model(i, device)

    def load_dataset(self):
        return self.inner.load_dataset()


def test_the_contract_defaults_cover_what_attribution_and_studies_call(store, folder_set):
    """A duck-typed model set gets the optional methods (damage checks, summary) from the contract, and
    gives TRAK the same scores as the store; the summary's accuracy matches the store's."""
    plain = as_modelset(_Plain(folder_set))
    assert isinstance(plain, ModelSet) and plain.use_valid_only is False and plain.weights_damage([0, 1]) == {}
    np.testing.assert_array_equal(plain.refuse_or_drop({}, [0, 2]), [0, 2])
    with pytest.raises(UserError, match="damaged model"):
        plain.refuse_or_drop({2: "bad bytes"}, [0, 2])
    np.testing.assert_array_equal(attribute(plain, "trak", n_models=2, progress=False, proj_dim=8),
                                  attribute(store, "trak", n_models=2, progress=False, proj_dim=8))
    mine, theirs = folder_set.summary(), store.summary()
    assert mine["done"] == theirs["done"]
    assert mine["accuracy_mean"] == pytest.approx(theirs["accuracy_mean"], abs=1e-6)
