"""Every option validated before work starts, by one rule for CLI flags, study YAML and Python;
duplicate YAML keys refused; identical ModelDiff inputs refused; ``plan --pilot`` prints its table."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datamodels.base.errors import UserError
from tests.integrity_helpers import error_lines, make_store, run_cli


def _one_error(code, err):
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("flag,value", [("--alpha", "1.5"), ("--alpha", "0"), ("--alpha", "nan"),
                                        ("--n-inputs", "0"), ("--n-confirm", "0"), ("--n-resamples", "-1"),
                                        ("--components", "0")])
def test_search_numbers_are_refused_before_any_store_is_read(tmp_path, flag, value):
    line = _one_error(*run_cli("search", "--store-a", tmp_path / "nowhere_a", "--store-b", tmp_path / "nowhere_b",
                               "--out", tmp_path / "o", flag, value)[::2])
    assert flag in line and not (tmp_path / "o").exists()


def test_search_settings_follow_the_same_rule_in_python_and_yaml():
    from modeldiff.counterfactual.search import SearchSettings

    with pytest.raises(UserError, match="alpha"):
        SearchSettings(alpha=1.5)
    with pytest.raises(UserError, match="n_inputs"):
        SearchSettings(n_inputs=0)
    from modeldiff.studies.config import load_study
    from modeldiff.studies.validate import _check_search

    cfg = load_study("sgd_noise")
    cfg.search.alpha = 1.5
    with pytest.raises(UserError, match="search.alpha"):
        _check_search(cfg, None, image=False, n_classes=10)


@pytest.mark.parametrize("args,key", [(["--target-lds", "-0.2", "--pilot", "p"], "--target-lds"),
                                      (["--target-lds", "1.2", "--pilot", "p"], "--target-lds"),
                                      (["--subset-fraction", "1.5"], "--subset-fraction"),
                                      (["--subset-fraction", "0"], "--subset-fraction")])
def test_plan_numbers_are_refused_before_calibration(args, key):
    line = _one_error(*run_cli("plan", "sgd_noise", *args)[::2])
    assert key in line


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alpha=st.floats(allow_nan=True, allow_infinity=True), n=st.integers(-5, 3))
def test_fuzzed_search_numbers_are_accepted_exactly_in_range(alpha, n):
    from modeldiff.counterfactual.search import check_search_values

    ok = math.isfinite(alpha) and 0 < alpha < 1 and n >= 2
    try:
        check_search_values(alpha=alpha, n_inputs=n, n_confirm=1, n_resamples=1)
        assert ok
    except UserError:
        assert not ok


def test_duplicate_yaml_keys_are_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\noptim: {lr: 0.1}\nepochs: 2\nepochs: 3\n")
    line = _one_error(*run_cli("train", recipe, "--out", tmp_path / "s")[::2])
    assert "'epochs' is given twice" in line and not (tmp_path / "s").exists()
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nmodels: 8\nmodels: 16\n")
    line = _one_error(*run_cli("study", study, "--out", tmp_path / "o")[::2])
    assert "'models' is given twice" in line


def test_diff_of_identical_scores_is_refused(tmp_path):
    from datamodels.attribution.influence_io import write_influence
    from modeldiff.diff.residual_pca import ModelDiff

    a = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32)
    path = write_influence(tmp_path / "a.h5", a, method="trak")
    line = _one_error(*run_cli("diff", path, path, "--out", tmp_path / "d")[::2])
    assert "identical" in line and not (tmp_path / "d").exists()
    with pytest.raises(UserError, match="identical"):
        ModelDiff(2).fit(a, a.copy())


def test_plan_pilot_prints_its_table(tmp_path):
    from modeldiff.cli.plan import format_plan
    from modeldiff.plan.pilot import apply_pilot
    from modeldiff.plan.planner import PlanRequest

    store = make_store(tmp_path, models=16, ensemble=8)
    recipe = next(tmp_path.glob("*.yaml"))
    req = PlanRequest(str(recipe), pilot=str(store), target_lds=0.05, target_precision=0.95)
    curve = apply_pilot(req)
    for needed in (curve.get("models_needed"), curve["precision"].get("models_needed")):
        if needed is not None:
            assert needed[0] >= 1 and needed[1] >= 1 and (needed[2] is None or needed[2] >= needed[0])
    stage = {"seconds": 10.0, "seconds_low": 9.0, "seconds_high": 11.0, "peak_memory_bytes": 1, "disk_bytes": 0}
    plan = {"target": str(recipe), "models": 16, "ensemble_size": 8, "workers": 1, "launcher": "local",
            "device": "cpu", "stages": {"train": stage}, "total_seconds": 10.0, "total_seconds_low": 9.0,
            "total_seconds_high": 11.0, "peak_memory_bytes": 1, "disk_bytes": 0, "assumptions": [],
            "command": "modeldiff train", "calibration_seconds": 0.0, "calibration_share": 0.0,
            "learning_curve": curve}
    text = format_plan(plan)
    assert "models needed for precision 0.95:" in text and "– -1)" not in text and "None" not in text


def test_a_projection_dimension_above_the_training_set_is_refused_before_training(tmp_path):
    (tmp_path / "r.yaml").write_text("name: r\nmodel: {arch: digits_cnn, width: 4}\nepochs: 1\n")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nalgorithm_a: {recipe: r.yaml}\nalgorithm_b: {recipe: r.yaml, label: b}\nmodels: 4\n"
                     "attribution: {method: trak, models: 4, proj_dim: 4096}\nsearch: {enabled: false}\n")
    line = _one_error(*run_cli("study", study, "--out", tmp_path / "o")[::2])
    assert "k=4096" in line and "1437 training examples" in line
    assert not (tmp_path / "o").exists()
