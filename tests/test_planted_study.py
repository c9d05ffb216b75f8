"""Ground truth: the planted study on digits (CI scale).

The counterfactual claims are asserted: pasting the planted feature onto test images of other
classes raises Pr(planted class) for A's models with a 95 % CI excluding 0, while B's effect is at
most a third of A's or its CI contains 0. Precision@k of the top components against the planted
set is computed and recorded in the study summary (see the issue's closing note for why the
A−B precision floor is not asserted: on this construction ModelDiff finds the planted set in
the B−A direction, where B memorises the planted images).
"""
import json

from case_studies.planted.study import run_planted
from case_studies.study import load_study


def test_planted_feature_counterfactual(tmp_path):
    cfg = load_study("planted")
    cfg.models, cfg.attribution.models = 32, 16
    summary = run_planted(cfg, tmp_path)["planted"]
    a, b = summary["paste_effect"]["a"], summary["paste_effect"]["b"]
    assert a["ci_low"] > 0, a
    assert b["mean"] <= a["mean"] / 3 or b["ci_low"] <= 0 <= b["ci_high"], (a, b)
    for key in ("precision_a_minus_b", "precision_b_minus_a"):
        assert set(summary[key]) == {25, 50, 100} and all(0 <= v <= 1 for v in summary[key].values())
    saved = json.loads((tmp_path / "summary_trak.json").read_text())
    assert saved["planted"]["n_planted_train"] == summary["n_planted_train"] > 100
