"""`modeldiff plan`: the training cost model on known chunk costs, which recipes share a calibration, bad input,
the printed table (with a pilot's curves), and one real calibration of the demo study (structure, order)."""
import dataclasses
import json

import numpy as np
import pytest

from modeldiff.plan.training import ChunkCost, TrainingCost, chunk_sizes, predict_training, steps_per_model, timing_key
from tests.helpers_train import cli, the_error_line


def test_store_time_is_the_sum_of_its_chunks_measured_at_their_own_size():
    big = ChunkCost(32, fixed=3.0, steps=2.2, cal_steps=11, spread=(0.9, 1.2), growth=400)
    small = ChunkCost(6, fixed=1.0, steps=0.66, cal_steps=11, spread=(0.8, 1.1), growth=100)
    cost = TrainingCost({32: big, 6: small}, base_rss=1000, weights_bytes=10)
    assert chunk_sizes(70, 32) == [32, 32, 6]
    recipe = type("R", (), {"batch_size": 16, "epochs": 2, "train_epochs": 2})()
    shape = type("S", (), dict(n_train=800, n_test=100, n_classes=10, models=70, subset_fraction=0.5,
                               ensemble_size=32))()
    steps = steps_per_model(800, 0.5, 16, 2)
    assert steps == 50
    s = predict_training(cost, recipe, shape)
    assert s["seconds"] == pytest.approx(2 * (3.0 + 50 * 0.2) + (1.0 + 50 * 0.06))
    assert s["seconds_low"] == pytest.approx(2 * (3.0 + 50 * 0.18) + (1.0 + 50 * 0.048))
    assert s["seconds_high"] == pytest.approx(2 * (3.0 + 50 * 0.24) + (1.0 + 50 * 0.066))
    assert s["peak_memory_bytes"] == 1400 and s["disk_bytes"] > 70 * 10
    # a one-model-at-a-time trainer: its one calibration chunk of 2 models, scaled in proportion
    loop = TrainingCost({2: ChunkCost(2, 1.0, 2.2, 11, (1, 1), 50)}, 1000, 10)
    assert predict_training(loop, recipe, shape)["seconds"] == pytest.approx(35 * (1.0 + 50 * 0.2))
    assert steps_per_model(1437, 0.5, 128, 15) == pytest.approx(15 * (5 + 78 / 128))  # last partial batch: its share


def test_timing_identical_recipes_share_and_others_do_not():
    from modeldiff.studies.config import load_study

    high, low = load_study("sgd_noise").recipes()
    same = high.replace(**{"optim.lr": 0.3, "optim.weight_decay": 1e-3, "epochs": 3, "name": "other"})
    assert timing_key(same) == timing_key(high)
    assert timing_key(low) != timing_key(high)  # batch 128 vs 16: different steps
    assert timing_key(high.replace(**{"model.width": 8})) != timing_key(high)
    a, b = load_study("case_studies/null/digits.yaml").recipes()
    assert timing_key(a) == timing_key(b)  # one recipe at two seeds: calibrated once


def test_bad_input_is_one_error_line():
    for args, words in ((["no_such_study"], ""), (["sgd_noise", "--target-lds", "0.3"], "--pilot"),
                        (["sgd_noise", "--models", "0"], "--models must be"),
                        (["sgd_noise", "--target-precision", "0.9"], "needs --pilot"),
                        (["sgd_noise", "--pilot", "nowhere", "--target-precision", "1.2"], "must be in (0, 1)")):
        r = cli("plan", *args)
        assert r.returncode == 2 and words in the_error_line(r.stderr), (args, r.stderr)


@pytest.mark.slow
def test_demo_study_plan_structure_and_order(tmp_path):
    """One real (short) calibration of the demo study through the CLI, then predictions from it."""
    r = cli("plan", "sgd_noise", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    for stage in ("train_a", "train_b", "attribute_a", "attribute_b", "diff", "null", "search", "counterfactual",
                  "report"):
        s = plan["stages"][stage]
        assert 0 < s["seconds_low"] <= s["seconds"] <= s["seconds_high"], (stage, s)
        assert s["peak_memory_bytes"] > 0 and s["disk_bytes"] >= 0
    assert plan["stages"]["train_a"]["disk_bytes"] > 0 and plan["stages"]["attribute_a"]["disk_bytes"] > 0
    assert plan["total_seconds"] == pytest.approx(sum(s["seconds"] for s in plan["stages"].values()))
    assert plan["command"].startswith("modeldiff study sgd_noise") and plan["calibration_seconds"] > 0


def _demo_shape(**counts):
    from modeldiff.plan.planner import StudyShape
    from modeldiff.studies.config import load_study

    cfg = load_study("sgd_noise")
    n = {"search_candidates": 121, "search_inputs": 180, "counterfactual_tests": 8, "counterfactual_sweeps": 1,
         "counterfactual_inputs": 300, **counts}
    return cfg, StudyShape(1437, 360, 10, 64, 0.5, 32, cfg, n)


def test_more_models_take_more_time():
    from modeldiff.plan.analysis import DiffCost, EvaluationCost
    from modeldiff.plan.attribution import AttributionCost
    from modeldiff.plan.figures import ReportCost
    from modeldiff.plan.planner import Calibrated, PlanRequest, predict_plan

    training = TrainingCost({32: ChunkCost(32, 2.0, 1.1, 11, (0.9, 1.1), 10 ** 8)}, 5 * 10 ** 8, 10 ** 5)
    ev = EvaluationCost(load=0.002, search=0.0005, store_call=0.003, bootstrap=0.02, search_inputs=180, cf_inputs=300)
    costs = {"training": {"a": training, "b": training}, "evaluation": {"a": ev, "b": ev},
             "attribution": AttributionCost("trak", per_example=1e-4, load=0.01,
                                            kernel_per_row=1e-6, score_per_mac=1e-10),
             "diff": DiffCost(1e-8, 12.0), "report": ReportCost(0.5, 0.2, 0.1)}
    cfg, shape = _demo_shape()
    recipes = dict(zip("ab", cfg.recipes()))
    calibrated = Calibrated(PlanRequest("sgd_noise"), costs, recipes, shape, "modeldiff study sgd_noise", 2.0,
                            5 * 10 ** 8, 5.0)
    totals = [predict_plan(calibrated, n) for n in (32, 64, 128, 256)]
    seconds = [t["stages"]["train_a"]["seconds"] for t in totals]
    assert all(x < y for x, y in zip(seconds, seconds[1:]))
    assert all(x["total_seconds"] < y["total_seconds"] for x, y in zip(totals, totals[1:]))
    assert all(x["disk_bytes"] < y["disk_bytes"] for x, y in zip(totals, totals[1:]))
    # the search, per algorithm: (candidates + control) x the screening models, (the kept ones, at most
    # 2 x screen_keep, + control) x the discovery half, (2 x confirmed + control) x the confirmation half;
    # plus 2 directions x confirmed x 2 units of bootstrap comparisons
    search = totals[1]["stages"]["search"]["seconds"]  # 64 models: halves of 32
    k, sm, keep = cfg.search.n_confirm, cfg.search.screen_models, cfg.search.screen_keep
    boot = 4 * k * ev.bootstrap * cfg.search.n_resamples / 2000

    def per_algorithm(cands):
        return ev.load * (64 + sm) + ev.search * ((cands + 1) * sm + (min(cands, 2 * keep) + 1) * 32
                                                  + (2 * k + 1) * 32)
    assert search == pytest.approx(2 * per_algorithm(121) + boot)
    more = predict_plan(dataclasses.replace(calibrated, shape=_demo_shape(search_candidates=400)[1]))
    assert more["stages"]["search"]["seconds"] - search == pytest.approx(2 * (per_algorithm(400) - per_algorithm(121)))
    cfg.search.screen_models = 0  # no screening: every candidate on the whole discovery half
    unscreened = predict_plan(calibrated, 64)["stages"]["search"]["seconds"]
    assert unscreened == pytest.approx(2 * (ev.load * 64 + ev.search * 32 * (122 + 2 * k + 1)) + boot)
    null = totals[1]["stages"]["null"]["seconds"]
    assert null == pytest.approx(8 * cfg.calibration.splits * 1437 * 360 * 1e-8)


def test_report_stage_counts_the_figures_of_both_reports():
    """Two reports: per direction a scatter, one examples figure per component, the effect plots of the tests
    and of the search and one plot per sweep; matplotlib's start once. Known unit costs give the known sum."""
    from modeldiff.plan.figures import ReportCost, plot_rows, predict_report

    cost = ReportCost(first=0.5, grid=0.2, plot=0.1)
    cfg, shape = _demo_shape()
    c = cfg.components
    s = predict_report(cost, shape, 10 ** 8)
    assert s["seconds"] == pytest.approx(0.5 + 2 * (c * 0.2 + 4 * 0.1))
    assert s["seconds_low"] < s["seconds"] < s["seconds_high"] and s["peak_memory_bytes"] == 10 ** 8
    assert plot_rows(shape) == 8 and plot_rows(_demo_shape(counterfactual_tests=0)[1]) == cfg.search.n_confirm
    bare = predict_report(cost, _demo_shape(search_candidates=0, counterfactual_tests=0, counterfactual_sweeps=0)[1],
                          10 ** 8)
    assert bare["seconds"] == pytest.approx(0.5 + 2 * (c * 0.2 + 0.1))


def test_report_calibration_times_each_figure_kind():
    from datamodels.data import load_digits
    from modeldiff.plan.figures import calibrate_report

    c = calibrate_report(load_digits(), 6)
    assert min(c.first, c.grid, c.plot) > 0


def test_report_calibration_draws_as_many_bars_as_the_report(monkeypatch):
    """Data that are not images: the report shows every subpopulation member as a bar; so does the calibration."""
    import types

    from modeldiff.plan.figures import calibrate_report
    from modeldiff.report import figures
    from modeldiff.studies.pipeline import SUBPOP_TOP

    drawn = []
    monkeypatch.setattr(figures, "weight_bars", lambda rows: drawn.append([len(labels) for _, _, labels in rows]) or b"")
    calibrate_report(types.SimpleNamespace(is_image=False, n_train=100), 3)
    assert drawn == [[SUBPOP_TOP] * 3]


def _plan(**extra):
    stage = {"seconds": 10.0, "seconds_low": 9.0, "seconds_high": 11.0, "peak_memory_bytes": 1 << 20, "disk_bytes": 0}
    return {"target": "t.yaml", "models": 64, "ensemble_size": 16, "device": "cpu", "stages": {"train": stage},
            "total_seconds": 10.0, "total_seconds_low": 9.0, "total_seconds_high": 11.0,
            "peak_memory_bytes": 1 << 20, "disk_bytes": 0, "assumptions": ["a stated assumption"],
            "command": "modeldiff train t.yaml", **extra}


def test_the_printed_plan_calls_out_a_calibration_above_five_percent():
    from modeldiff.cli.plan import format_plan

    short = format_plan(_plan(calibration_seconds=2.0, calibration_share=0.2))
    assert "over 5 %" in short and "~5x" in short and "a stated assumption" in short
    assert "over 5 %" not in format_plan(_plan(calibration_seconds=0.2, calibration_share=0.02))


def test_the_printed_plan_shows_the_pilots_curves_and_models_needed():
    """The table form of `plan --pilot ... --target-lds/--target-precision`, from real curves on synthetic data."""
    from modeldiff.cli.plan import format_plan
    from modeldiff.plan.pilot import curve_json, curves

    rng = np.random.default_rng(0)
    m, u, t, n = 6, 20, 15, 50
    mu = rng.normal(size=(t, n))
    weighted = mu[None] + 3.0 * rng.normal(size=(m, t, n))
    masks = rng.random((u, n)) < 0.5
    margins = masks @ mu.T + rng.normal(size=(u, t))
    lds, precision = curves(weighted, masks, margins)
    entry = {"method": "trak", "pilot_models": m, **curve_json(lds, "lds", 0.5 * lds.ceiling),
             "precision": curve_json(precision, "precision", 0.8)}
    text = format_plan(_plan(calibration_seconds=1.0, calibration_share=0.01, learning_curve=entry))
    n_lds, n_prec = entry["models_needed"][0], entry["precision"]["models_needed"][0]
    assert f"models needed for lds {0.5 * lds.ceiling:g}: {n_lds} " in text
    assert f"models needed for precision 0.8: {n_prec} " in text
    assert f"from {m} pilot models (ceiling {precision.ceiling:.3f})" in text
    assert n_lds >= 1 and precision.predict(n_prec)[0] >= 0.8 > precision.predict(n_prec - 1)[0]


@pytest.mark.slow
def test_cli_plan_with_a_pilot_prints_both_curves_and_the_models_needed(tmp_path):
    """`modeldiff plan RECIPE --pilot STORE --target-lds L` in table form, end to end on a tiny pilot store."""
    from tests.helpers_train import write_recipe

    recipe = write_recipe(tmp_path, epochs=2)
    r = cli("train", recipe, "--out", tmp_path / "pilot", "--models", "9", "--ensemble-size", "9")
    assert r.returncode == 0, r.stderr
    r = cli("plan", recipe, "--models", "9", "--ensemble-size", "9", "--pilot", tmp_path / "pilot",
            "--target-lds", "0.01")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("  LDS (trak) vs models, from 3 pilot models (ceiling ") for line in lines), r.stdout
    assert any(line.startswith("  precision (corr. with infinitely many models' scores) vs models") for line in lines)
    needed = next(line for line in lines if line.startswith("  models needed for lds 0.01: "))
    n = int(needed.split(": ")[1].split()[0])
    assert n >= 1 and f"--models {max(n, 9)}" in r.stdout  # a recipe is planned for the models the target needs
