"""Study hooks: a study names a set-up step or its own runner as an import target in its YAML; the
library has no study-specific fields and the CLI does not branch on the kind of study."""
import numpy as np
import pytest
import yaml

from datamodels.base.errors import UserError
from modeldiff.studies.config import StudyConfig, load_study
from modeldiff.studies.hooks import StudyInputs, resolve_hook, resolve_rows
from modeldiff.studies.run import _setup, run_configured
from tests import study_hooks_user as user


def _study(tmp_path, **extra):
    recipe = {"name": "r", "data": {"name": "digits"}, "model": {"arch": "digits_cnn", "width": 4}, "epochs": 1}
    study = {"name": "hooks", "algorithm_a": {"recipe": recipe}, "algorithm_b": {"recipe": recipe}, **extra}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return load_study(str(path))


def test_study_config_has_no_study_specific_fields():
    import dataclasses

    names = {f.name for f in dataclasses.fields(StudyConfig)}
    assert not names & {"plant", "pretrain"} and {"setup", "runner"} <= names


def test_runner_target_runs_the_study_with_its_kwargs(tmp_path):
    cfg = _study(tmp_path, runner={"target": "tests.study_hooks_user:runner", "kwargs": {"greeting": "hello"}})
    assert run_configured(cfg, tmp_path / "out") == {"greeting": "hello"}
    assert user.CALLS[-1] == ("runner", "hello", str(tmp_path / "out"))


def test_setup_changes_recipes_and_names_row_sets(tmp_path):
    from datamodels.data.dataset import load_dataset

    cfg = _study(tmp_path, setup={"target": "tests.study_hooks_user:setup", "kwargs": {"rows": 7, "lr": 0.01}})
    data = load_dataset("digits")
    given = StudyInputs(row_sets={"mine": np.arange(2)}, search_exclude=["from runner"])
    inputs, same = _setup(cfg, resolve_hook(cfg, "setup"), data, given, tmp_path, "cpu", None, None)
    assert same is data and user.CALLS[-1] == ("setup", 7, 0.01)
    assert [r.optim.lr for r in inputs.recipes] == [0.01, 0.01]
    assert inputs.search_exclude == ["from runner", "from setup"]
    assert list(resolve_rows("first", inputs.row_sets, data.n_test, "search.rows")) == list(range(7))
    assert list(resolve_rows("mine", inputs.row_sets, data.n_test, "search.rows")) == [0, 1]
    assert resolve_rows("all", inputs.row_sets, data.n_test, "search.rows") is None
    assert list(resolve_rows([3, 6], {}, data.n_test, "search.rows")) == [3, 4, 5]
    with pytest.raises(UserError, match="no test-row set 'other'.*all, first, mine"):
        resolve_rows("other", inputs.row_sets, data.n_test, "counterfactual.rows")
    with pytest.raises(UserError, match=r"\[start, stop\)"):
        resolve_rows([0, data.n_test + 1], {}, data.n_test, "search.rows")


def test_a_setup_that_returns_something_else_is_one_line(tmp_path):
    from datamodels.data.dataset import load_dataset

    cfg = _study(tmp_path, setup="tests.study_hooks_user:not_inputs")
    with pytest.raises(UserError, match="must return a StudyInputs, got dict"):
        _setup(cfg, resolve_hook(cfg, "setup"), load_dataset("digits"), None, tmp_path, "cpu", None, None)


@pytest.mark.parametrize("spec, word", [({"target": "tests.study_hooks_user:nothing"}, "nothing"),
                                        ({"target": "no_such_pkg.mod:fn"}, "no_such_pkg"),
                                        ({"target": "tests.study_hooks_user:runner", "kwargs": [1]}, "kwargs")])
def test_bad_runner_targets_are_named(tmp_path, spec, word):
    with pytest.raises(UserError, match=word):
        run_configured(_study(tmp_path, runner=spec), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_setup_that_cannot_be_imported_is_refused_before_anything_is_written(tmp_path):
    from modeldiff.studies.run import run_study

    with pytest.raises(UserError, match="no_such_pkg"):
        run_study(_study(tmp_path, setup="no_such_pkg.mod:fn"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shipped_studies_name_their_hooks():
    assert load_study("planted").runner["target"] == "case_studies.planted.study:run_planted"
    assert load_study("pretraining").setup["target"] == "case_studies.pretraining.pretrain:setup"
    assert not load_study("sgd_noise").setup and not load_study("sgd_noise").runner


def test_pretraining_setup_points_checkpoint_recipes_at_one_pretrained_model(tmp_path):
    from case_studies.pretraining.pretrain import setup
    from datamodels.data.dataset import load_dataset

    cfg = load_study("pretraining")
    a, b = cfg.recipes()
    a, b = a.replace(epochs=1, **{"model.width": 4}), b.replace(epochs=1, **{"model.width": 4})
    data = load_dataset("digits")
    got = setup(cfg, data, (a, b), tmp_path, "cpu", epochs=1)
    ckpt = tmp_path / "pretrained.pt"
    assert ckpt.is_file() and got.recipes[0] == a                      # random init: unchanged
    assert got.recipes[1].init.checkpoint == str(ckpt.resolve())
    stamp = ckpt.stat().st_mtime_ns
    setup(cfg, data, (a, b), tmp_path, "cpu", epochs=1)
    assert ckpt.stat().st_mtime_ns == stamp                            # made once per output folder
    with pytest.raises(UserError, match="setup.kwargs.task"):
        setup(cfg, data, (a, b), tmp_path, "cpu", task="jigsaw")
