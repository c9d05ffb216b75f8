"""A study validates everything it can before training: bad transform specs, patch sizes
larger than the image, bad search/attribution settings, bad YAML and unwritable outputs fail with
one ``error:`` line, exit 2, before any model is trained and without creating a store."""
import pytest
import yaml

from tests.helpers_train import write_recipe
from tests.integrity_helpers import error_lines, run_cli


def _study(folder, **changes):
    recipe = write_recipe(folder, epochs=1)
    study = {"name": "tiny", "algorithm_a": {"recipe": recipe.name, "label": "A"},
             "algorithm_b": {"recipe": recipe.name, "label": "B", "seed": 1}, "models": 4, "ensemble_size": 4,
             "attribution": {"method": "trak", "models": 4, "proj_dim": 16},
             "counterfactual": {"transforms": ["patch:pattern=texture,size=2"], "auto_candidates": 1, "n_test": 20,
                                "bootstrap": 50},
             "calibration": {"splits": 5, "groups": 2}, "search": {"n_inputs": 20, "n_resamples": 50}}
    for key, value in changes.items():
        node = study
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Any training attempt fails the test: validation must come first."""
    import datamodels.runs.launchers as launchers

    def refuse(*a, **k):
        raise AssertionError("training started before validation refused the study")

    monkeypatch.setattr(launchers, "fill_store", refuse)


BAD = [
    ({"counterfactual__transforms": ["nope:x=1"]}, "unknown transform 'nope'"),
    ({"counterfactual__transforms": ["patch:sizee=3"]}, "bad parameter"),
    ({"counterfactual__transforms": ["patch:pattern=texture,size=40"]}, "does not fit 8x8"),
    ({"counterfactual__sizes": [2, 99]}, "counterfactual.sizes 99"),
    ({"counterfactual__sizes": [0]}, "counterfactual.sizes entry"),
    ({"counterfactual__transforms": ["patch:pattern=nope,size=2"]}, "unknown pattern"),
    ({"counterfactual__transforms": [{"target": "tests.user_modules:wrong_shape", "kwargs": {"input_shape": [1],
                                                                                          "num_classes": 3}}]},
     "must return a tensor|raised|changed the batch shape|cannot be applied"),
    ({"counterfactual__transforms": [{"target": "no.such:fn"}]}, "no.such"),
    ({"counterfactual__n_test": 0}, "counterfactual.n_test"),
    ({"search__families": ["patch", "nope"]}, "unknown family nope"),
    ({"search__alpha": 1.5}, "search.alpha"),
    ({"search__n_confirm": 0}, "search.n_confirm"),
    ({"search__models": 1}, "search.models"),
    ({"attribution__models": 9}, "exceeds the models trained"),
    ({"attribution__proj_dim": -3}, "proj_dim"),
    ({"attribution__method": "datamodels"}, "at least 10 models"),
    ({"models": 3, "attribution__models": 2}, "at least 4 models per algorithm"),
    ({"components": 0}, "components"),
    ({"subset_fraction": 1.5}, "subset_fraction"),
    ({"pretrain": {"task": "jigsaw"}}, "unknown study key 'pretrain'"),
    ({"plant": {"target_class": 0}}, "unknown study key 'plant'"),
    ({"setup": {"target": "no_colon"}}, "setup.target must be an import target"),
    ({"runner": {"target": "os.path:join", "args": 1}}, "study key runner must be"),
    ({"search__rows": [5]}, "search.rows"),
    ({"counterfactual__rows": "nope"}, "no test-row set 'nope'"),
    ({"search__transforms": ["blur:sigma=x"]}, "blur:sigma=x"),
    ({"calibration": {"splits": 2, "groups": 2}}, "calibration.splits >= 5"),
    ({"calibration": {"splits": 3, "groups": 2, "level": 0.5}}, None),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_study_fails_before_training(tmp_path, no_training, changes, message):
    import re

    study = _study(tmp_path, **changes)
    out = tmp_path / "out"
    if message is None:  # valid: validation passes and training starts (refused by the fixture)
        with pytest.raises(AssertionError, match="training started"):
            run_cli("study", study, "--out", out)
        return
    code, _, err = run_cli("study", study, "--out", out)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]
    assert not (out / "store_a").exists() and not (out / "store_b").exists()


@pytest.mark.parametrize("text", ["", "name: [", "- a\n- b", "42", "name: x\nalgorithm_a: 3\n"])
def test_bad_study_yaml_is_one_line(tmp_path, no_training, text):
    study = tmp_path / "s.yaml"
    study.write_text(text)
    code, _, err = run_cli("study", study, "--out", tmp_path / "out")
    assert code == 2 and len(error_lines(err)) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_fails_before_training(tmp_path, no_training):
    study = _study(tmp_path)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "under"):
        code, _, err = run_cli("study", study, "--out", out)
        assert code == 2 and len(error_lines(err)) == 1 and "Traceback" not in err, err


def test_unwritable_output_through_the_python_api(tmp_path, no_training):
    """run_study (used by compare()) checks the output itself, not only the CLI."""
    from datamodels.base.errors import UserError
    from modeldiff.studies.config import load_study
    from modeldiff.studies.run import run_study

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file|cannot be created"):
        run_study(load_study(str(_study(tmp_path))), tmp_path / "file" / "under")


def test_too_little_space_for_the_stores_fails_before_training(tmp_path, no_training, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 0))
    code, _, err = run_cli("study", _study(tmp_path), "--out", tmp_path / "out")
    assert code == 2 and "MiB are free" in error_lines(err)[0], err


@pytest.mark.parametrize("name", ["sgd_noise", "augmentation", "null", "optimizers", "planted", "pretraining",
                                  "planted/digits_linear", "tabular/breast_cancer"])
def test_shipped_studies_pass_validation(name):
    """Every shipped CPU study is valid as written (validation must not refuse real studies)."""
    from modeldiff.studies.config import load_study
    from modeldiff.studies.pipeline import load_study_data
    from modeldiff.studies.validate import validate_study

    cfg = load_study(name)
    validate_study(cfg, load_study_data(cfg))


def test_counterfactual_command_refuses_a_too_large_patch_before_loading_models(tmp_path, monkeypatch):
    """``modeldiff counterfactual --sizes`` with a size larger than the image: one line, no model loaded."""
    from datamodels.store.store import Store
    from tests.integrity_helpers import make_store

    store = make_store(tmp_path, models=4, ensemble=2)

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the transforms were checked")

    monkeypatch.setattr(Store, "load_ensemble", refuse)
    monkeypatch.setattr(Store, "load_model", refuse)
    for extra in (["--transform", "patch:pattern=texture,size=2", "--sizes", "2,99"],
                  ["--transform", "patch:pattern=texture,size=40"]):
        code, _, err = run_cli("counterfactual", "--store-a", store, "--store-b", store, "--target-class", "0",
                               "--out", tmp_path / "cf", *extra)
        assert code == 2 and len(error_lines(err)) == 1 and "does not fit 8x8" in err, err
        assert not (tmp_path / "cf").exists()
