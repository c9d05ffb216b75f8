"""The shipped bring-your-own-algorithm studies run as written, shrunk ("Shipped examples
(executed by tests)"): case_studies/optimizers (Adam vs SGD via vmap; SAM vs SGD via loop) and
case_studies/tabular (user data, model and transforms only). Only sizes change: models, epochs and
the counterfactual / search sample sizes; every stage of the study runs."""
import pytest

from modeldiff.studies.config import load_study
from modeldiff.studies.run import run_study

pytestmark = pytest.mark.slow  # full studies: runs in the full suite, not the developer loop


def _shrink(cfg, models=4, epochs=1):
    cfg.models, cfg.attribution.models, cfg.ensemble_size = models, models, models
    cfg.components = 2  # report figures cost seconds per component
    for spec in (cfg.algorithm_a, cfg.algorithm_b):
        spec.recipe = {**spec.recipe, "epochs": epochs}
    cfg.counterfactual.n_test = min(cfg.counterfactual.n_test, 60)
    cfg.counterfactual.bootstrap = 200
    cfg.counterfactual.auto_candidates = min(cfg.counterfactual.auto_candidates, 1)
    cfg.calibration.splits, cfg.calibration.groups = 5, 2
    cfg.search.n_inputs, cfg.search.models, cfg.search.n_confirm, cfg.search.n_resamples = 30, 2, 1, 200
    cfg.search.families = ["blur"]
    return cfg


@pytest.mark.parametrize("name, full, auto_log", [
    ("optimizers", True, None),  # Adam vs SGD, both trainer: vmap; every stage incl. null calibration and search
    ("optimizers/sam_digits", False, "trainer auto -> vmap"),  # SAM on trainer: loop, its SGD on auto -> vmap
    ("tabular/breast_cancer", False, "trainer auto -> vmap"),  # user data, model and transforms only
])
def test_shipped_study_runs(tmp_path, caplog, name, full, auto_log):
    caplog.set_level("INFO", logger="modeldiff")
    cfg = _shrink(load_study(name))
    cfg.attribution.proj_dim = min(cfg.attribution.proj_dim, 64)
    cfg.calibration.enabled = cfg.search.enabled = full  # the other two exercise their own seams only
    assert all(isinstance(s.recipe, dict) for s in (cfg.algorithm_a, cfg.algorithm_b))  # inline recipes
    summary = run_study(cfg, tmp_path / "run")
    for side in "ab":
        assert summary["algorithms"][side]["models"] == 4 and summary["algorithms"][side]["accuracy"] > 0.3
    for direction in ("a_minus_b", "b_minus_a"):
        d = summary["directions"][direction]
        assert len(d["explained_variance_a"]) == cfg.components
        assert d["counterfactuals"], "the study's transforms were tested"
    assert (tmp_path / "run" / "report_a_minus_b" / "report.html").is_file()
    if auto_log:
        assert auto_log in caplog.text
