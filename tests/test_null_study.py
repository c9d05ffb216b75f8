"""The null study (the high-noise digits recipe against itself, another seed), two seeds, cheap:
no component beyond null and no transformation confirmed (the 10-seed evaluation is
benchmarks/null_calibration.py)."""
import json

import pytest

from benchmarks.null_calibration import null_config, outcome
from modeldiff.studies.run import run_study


def test_null_yaml_gives_each_algorithm_its_seed():
    cfg = null_config(3)
    assert cfg.seeds() == (6, 7)
    a, b = cfg.recipes()
    assert a == b


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_null_study_reports_nothing(tmp_path, seed):
    cfg = null_config(seed, models=16, trak_models=8, epochs=6)
    cfg.calibration.splits, cfg.search.n_inputs = 6, 120
    summary = run_study(cfg, tmp_path, "cpu")
    res = outcome(summary)
    assert not res["any_beyond"], res
    assert not res["any_confirmed"], res
    saved = json.loads((tmp_path / "summary.json").read_text())
    for d in saved["directions"].values():
        assert {"var_a", "var_b", "ratio", "null_ratio_q95", "p_value", "beyond_null"} <= set(d["components"][0])
        assert d["confirmed"] == [] and d["candidates_tested"] > 100
    assert "No component" in saved["verdict"]
