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


def test_algorithm_keeps_callables_defined_anywhere_under_python_only_keys():
    from datamodels.registry import missing_python_objects, resolve_target

    def local_net(input_shape, num_classes):  # a closure: not importable by another process
        return torch.nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)

    d = Algorithm(model=local_net, loss=lambda logits, y: logits.sum(1), optimizer=torch.optim.RMSprop).recipe_dict()
    key = d["model"]["target"]
    assert key.startswith("python:") and key.endswith("local_net")
    assert resolve_target(key) is local_net and d["loss"].startswith("python:")
    assert d["optim"]["name"] == "torch.optim.rmsprop:RMSprop"  # importable: recorded by its target
    assert missing_python_objects(d) == []
    assert missing_python_objects({"model": {"target": "python:__main__.gone"}}) == ["python:__main__.gone"]
    with pytest.raises(UserError, match="reopened from Python only") as err:
        resolve_target("python:__main__.gone")
    assert "\n" not in str(err.value)


def test_schedule_is_an_argument_and_takes_pytorch_schedulers():
    from datamodels.training.schedule import check_schedule, lr_at

    alg = Algorithm(optimizer="adamw", lr=0.1, schedule=torch.optim.lr_scheduler.StepLR,
                    schedule_kwargs={"step_size": 3, "gamma": 0.5})
    optim = alg.to_recipe().optim
    assert optim.schedule == "torch.optim.lr_scheduler:StepLR"
    assert [lr_at(s, 8, optim) for s in (0, 2, 3, 6)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    cosine = Algorithm(lr=1.0, schedule=torch.optim.lr_scheduler.CosineAnnealingLR).to_recipe().optim
    assert lr_at(0, 10, cosine) == pytest.approx(1.0) and lr_at(5, 10, cosine) == pytest.approx(0.5)
    default = Algorithm(optimizer="adamw", lr=1.0).to_recipe().optim  # the stated default: triangle, 20 % warm-up
    assert default.schedule == "triangle" and lr_at(1, 10, default) == pytest.approx(0.5)
    with pytest.raises(UserError, match="schedule_kwargs apply to a PyTorch scheduler"):
        Algorithm(schedule="cosine", schedule_kwargs={"T_max": 3}).to_recipe()
    with pytest.raises(UserError, match="StepLR.*raised TypeError"):
        check_schedule(Algorithm(schedule=torch.optim.lr_scheduler.StepLR).to_recipe().optim)  # no step_size


def test_algorithm_refuses_conflicts_in_one_line():
    with pytest.raises(UserError, match="either trainer or train_fn"):
        Algorithm(trainer="loop", train_fn=my_train_fn).recipe_dict()
    with pytest.raises(UserError, match="unknown recipe key 'optim.lrr'"):
        Algorithm(optimizer_kwargs={"lrr": 1.0}, extra={"optim": {"lrr": 1.0}}).to_recipe()


def test_package_exports():
    assert modeldiff.Algorithm is Algorithm and modeldiff.compare is compare
    assert modeldiff.ModelSet.__module__ == "datamodels.modelset"
    assert modeldiff.UserError is UserError


def test_compare_end_to_end(tmp_path, caplog):
    common = {"model": make_mlp, "model_kwargs": {"hidden": 8, "depth": 1}, "batch_size": 32, "epochs": 2}
    adam = Algorithm(name="adam", optimizer="adam", lr=3e-3, optimizer_kwargs={"weight_decay": 0.0}, **common)
    sgd = Algorithm(name="sgd", optimizer="sgd", lr=0.05, **common)
    shift = {"target": "case_studies.tabular.transforms:shift_features", "target_class": 0,
             "kwargs": {"features": ["worst radius", "worst area"], "by": 1.0}}
    result = compare(adam, sgd, "case_studies.tabular.data:load", out=tmp_path / "run", models=6,
                     components=2, counterfactual={"transforms": ["patch:size=3", shift], "n_test": 30,
                                                 "bootstrap": 200},
                     ensemble_size=6, name="tabular_pair", calibration={"splits": 5})
    summary = result.to_dict()
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert result.algorithms["a"].label == "adam" and result.study == "tabular_pair"
    assert result.components["a_minus_b"].shape == (2, result.directions["a_minus_b"].components.shape[1])
    assert set(result.confirmed) == {"a_minus_b", "b_minus_a"} and result["study"] == "tabular_pair"
    assert summary["algorithms"]["a"]["label"] == "adam" and summary["algorithms"]["b"]["models"] == 6
    assert 0.5 < summary["algorithms"]["a"]["accuracy"] <= 1
    for name in ("a_minus_b", "b_minus_a"):
        d = summary["directions"][name]
        assert len(d["explained_variance_a"]) == 2
        assert [c["transform"] for c in d["counterfactuals"]] == [
            "case_studies.tabular.transforms:shift_features(features=['worst radius', 'worst area'], by=1.0)"]
        assert (tmp_path / "run" / f"report_{name}" / "report.html").is_file()
    assert summary["null"]["n_splits"] == 5
    notes = [r.getMessage() for r in caplog.records if "not image data" in r.getMessage()]  # a warning, logged
    assert len(notes) == 1 and "patch:size=3" in notes[0]  # image-only transforms skipped, said once
    meta = json.loads((tmp_path / "run" / "store_a" / "metadata.json").read_text())
    assert meta["dataset"]["target"]["target"] == "case_studies.tabular.data:load"
