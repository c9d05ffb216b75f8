"""Sanity guards (modeldiff.studies.guards): each warning fires on the condition it names and stays
silent on healthy numbers; the report shows them first."""
import math

import numpy as np

from modeldiff.report.warnings_block import warnings_section
from modeldiff.studies import guards


def _ci(mean, half):
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def test_near_chance_fires_for_poor_models_and_not_for_trained_ones():
    y = np.repeat(np.arange(10), 10)  # 10 balanced classes: chance 10 %
    chance = guards.chance_accuracy(y)
    assert math.isclose(chance, 0.1)
    low = guards.near_chance("sgd", 0.26, chance)
    assert low["code"] == "near_chance" and "26.0 %" in low["message"] and low["detail"]["chance"] == chance
    assert guards.near_chance("sgd", 0.92, chance) is None
    imbalanced = np.array([0] * 63 + [1] * 37)  # majority class 63 %: 70 % accuracy is near chance there
    assert guards.near_chance("a", 0.70, guards.chance_accuracy(imbalanced)) is not None
    assert guards.near_chance("a", 0.959, guards.chance_accuracy(imbalanced)) is None


def test_null_uninformative_counts_distinct_fits_and_width():
    comps = {"a_minus_b": [{"null_ratio_q95": 11.7}], "b_minus_a": [{"null_ratio_q95": 12.1}]}
    few = guards.null_uninformative(comps, 4, distinct_fits=12, level=0.95)  # 4 models: 3 splits x 4 fits
    assert few["code"] == "null_uninformative" and few["detail"]["models_needed"] > 4
    assert 1 / (1 + 4 * guards._distinct_splits(few["detail"]["models_needed"])) <= 0.025
    assert guards.null_uninformative(comps, 8, distinct_fits=32, level=0.95) is None
    wide = guards.null_uninformative({"a_minus_b": [{"null_ratio_q95": 124707.0}]}, 8, distinct_fits=32)
    assert wide["detail"]["null_ratio_q95"] == 124707.0 and wide["detail"]["models_needed"] > 8
    assert guards.null_uninformative({"a_minus_b": [{"null_ratio_q95": 5.6}]}, 16, distinct_fits=32) is None


def test_unit_disagreement_only_when_a_confirmed_conclusion_reverses_with_the_unit():
    def rec(label, lo, pr):
        return {"label": label, "target_class": 3, "effects": {"log-odds": {"diff": lo}, "probability": {"diff": pr}}}

    reversed_rec = rec("tint", _ci(0.3, 0.2), _ci(-0.005, 0.003))
    saturated = rec("blur", _ci(0.5, 0.2), _ci(0.01, 0.05))  # significant in log-odds only: not flagged
    agreeing = rec("patch", _ci(0.5, 0.2), _ci(0.1, 0.05))
    found = guards.unit_disagreement("b_minus_a", [reversed_rec, saturated, agreeing, reversed_rec])
    assert [w["detail"]["transform"] for w in found] == ["tint"]
    assert found[0]["detail"]["log_odds"]["mean"] > 0 > found[0]["detail"]["probability"]["mean"]


def test_diverged_and_code_changed_name_their_cause():
    assert guards.diverged("a", 0, 8) is None
    w = guards.diverged("a", 2, 8, "x_train row 3 has NaN values")
    assert w["code"] == "diverged" and "NaN" in w["message"] and w["detail"]["diverged"] == 2
    assert guards.code_changed("store", []) is None
    c = guards.code_changed("store", [{"module": "nets", "file": "nets.py", "recorded": "a", "now": "b"}])
    assert c["code"] == "code_changed" and "nets" in c["message"]


def _summary(acc_a=0.95, acc_b=0.94, diverged=0):
    alg = lambda label, acc: {"label": label, "accuracy": acc, "accuracy_std": 0.01, "noise_temperature": 0.1,
                              "models": 8, "diverged": diverged}
    direction = {"components": [{"null_ratio_q95": 4.0}], "confirmed": []}
    return {"algorithms": {"a": alg("A", acc_a), "b": alg("B", acc_b)},
            "directions": {"a_minus_b": direction, "b_minus_a": direction}}


def test_study_warnings_collects_every_guard_once():
    y = np.repeat(np.arange(10), 5)
    assert guards.study_warnings(_summary(), y, 8) == []
    found = guards.study_warnings(_summary(acc_a=0.2, diverged=1), y, 8)
    codes = sorted(w["code"] for w in found)
    assert codes == ["diverged", "diverged", "near_chance"]
    text = guards.format_warnings(found)
    assert text.count("warning [") == 3


def test_report_block_lists_warnings_and_is_absent_without_them():
    assert warnings_section([]) is None
    title, html = warnings_section([guards.warning("near_chance", "models <near> chance", algorithm="a")])
    assert title == "Warnings" and "near_chance" in html and "&lt;near&gt;" in html


def test_report_shows_warnings_right_under_the_verdict(tmp_path):
    from modeldiff.diff.residual_pca import ModelDiff
    from modeldiff.report import write_report

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 40)), rng.normal(size=(30, 40))
    fit = ModelDiff(2, random_state=0).fit(a, b)
    page = write_report(tmp_path / "r", fit, verdict="nothing beyond null",
                        warnings=[guards.warning("diverged", "2 of 8 models diverged")]).read_text()
    sections = [h.split(">", 1)[1] for h in page.split("<h2")[1:]]
    assert [s.split("<")[0] for s in sections[:2]] == ["Verdict", "Warnings"]  # the top of the page, in that order
    assert page.index("nothing beyond null") < page.index("2 of 8 models diverged") < page.index("<h2>Explained variance")
