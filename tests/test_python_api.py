"""The Python API: Algorithm objects become recipes of the agreed schema; compare() runs a study."""
import json

import pytest
import torch

import modeldiff
from case_studies.tabular.nets import make_mlp
from datamodels.base.errors import UserError
from modeldiff import Algorithm, compare


def my_train_fn(model, x, y, *, seed, device, recipe):
    return model


def my_loss(logits, y):
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


def test_algorithm_records_callables_as_import_targets():
    alg = Algorithm(name="adam", model=make_mlp, model_kwargs={"hidden": 8}, optimizer=torch.optim.Adam, lr=1e-3,
                    optimizer_kwargs={"weight_decay": 0.0, "schedule": "constant"}, loss=my_loss, trainer="loop",
                    batch_size=16, epochs=3)
    d = alg.recipe_dict({"target": "case_studies.tabular.data:load"})
    assert d["model"] == {"target": "case_studies.tabular.nets:make_mlp", "kwargs": {"hidden": 8}}
    assert d["optim"] == {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant"}
    assert d["loss"] == f"{__name__}:my_loss" and d["trainer"] == "loop"
    recipe = alg.to_recipe({"target": "case_studies.tabular.data:load"})
    assert recipe.optim.name == "adam" and recipe.batch_size == 16 and recipe.model.target.endswith(":make_mlp")
    fn = Algorithm(model="digits_cnn", train_fn=my_train_fn, train_fn_kwargs={"k": 1}).recipe_dict()
    assert fn["trainer"] == {"target": f"{__name__}:my_train_fn", "kwargs": {"k": 1}}
    assert fn["model"] == {"arch": "digits_cnn"}


def test_algorithm_refuses_lambdas_and_conflicts_in_one_line():
    with pytest.raises(UserError, match="cannot be recorded: define it at the top level") as err:
        Algorithm(model=lambda input_shape, num_classes: None).recipe_dict()
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="either trainer or train_fn"):
        Algorithm(trainer="loop", train_fn=my_train_fn).recipe_dict()
    with pytest.raises(UserError, match="unknown recipe key 'optim.lrr'"):
        Algorithm(optimizer_kwargs={"lrr": 1.0}, extra={"optim": {"lrr": 1.0}}).to_recipe()


def test_package_exports():
    assert modeldiff.Algorithm is Algorithm and modeldiff.compare is compare
    assert modeldiff.ModelSet.__module__ == "datamodels.modelset"


def test_compare_end_to_end(tmp_path, caplog):
    common = {"model": make_mlp, "model_kwargs": {"hidden": 8, "depth": 1}, "batch_size": 32, "epochs": 2}
    adam = Algorithm(name="adam", optimizer="adam", lr=3e-3, optimizer_kwargs={"weight_decay": 0.0}, **common)
    sgd = Algorithm(name="sgd", optimizer="sgd", lr=0.05, **common)
    shift = {"target": "case_studies.tabular.transforms:shift_features", "target_class": 0,
             "kwargs": {"features": ["worst radius", "worst area"], "by": 1.0}}
    summary = compare(adam, sgd, "case_studies.tabular.data:load", out=tmp_path / "run", models=6,
                      components=2, counterfactual={"transforms": ["patch:size=3", shift], "n_test": 30,
                                                  "bootstrap": 200},
                      ensemble_size=6)
    assert summary["algorithms"]["a"]["label"] == "adam" and summary["algorithms"]["b"]["models"] == 6
    assert 0.5 < summary["algorithms"]["a"]["accuracy"] <= 1
    for name in ("a_minus_b", "b_minus_a"):
        d = summary["directions"][name]
        assert len(d["explained_variance_a"]) == 2
        assert [c["transform"] for c in d["counterfactuals"]] == [
            "case_studies.tabular.transforms:shift_features(features=['worst radius', 'worst area'], by=1.0)"]
        assert (tmp_path / "run" / f"report_{name}" / "report.html").is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["study"] == "adam_vs_sgd"
    notes = [r.getMessage() for r in caplog.records if "not image data" in r.getMessage()]  # a warning, logged
    assert len(notes) == 1 and "patch:size=3" in notes[0]  # image-only transforms skipped, said once
    meta = json.loads((tmp_path / "run" / "store_a" / "metadata.json").read_text())
    assert meta["dataset"]["target"]["target"] == "case_studies.tabular.data:load"
