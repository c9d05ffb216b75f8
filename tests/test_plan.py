"""`modeldiff plan`: the parallel-efficiency model and the learning-curve fit on synthetic data with
known parameters, prices, bad input, and one real calibration of the demo study (structure, order)."""
import dataclasses
import json

import numpy as np
import pytest

from datamodels.base.errors import UserError
from modeldiff.plan.learning_curve import curve, fit_learning_curve
from modeldiff.plan.prices import cheapest, cost, load_prices
from modeldiff.plan.scaling import ChunkTimeModel, Linear, chunk_sizes, steps_per_model, store_seconds
from tests.helpers_train import cli, the_error_line


def test_linear_fit_recovers_fixed_and_per_model_costs():
    sizes = np.array([4, 8, 16, 32])
    truth = Linear(0.7, 0.05)
    fit = Linear.fit(sizes, [truth(e) for e in sizes])
    assert (fit.fixed, fit.per_model) == pytest.approx((0.7, 0.05))
    fit = Linear.fit([32, 8], [truth(32), truth(8)])  # the calibration's two points
    assert fit.fixed == pytest.approx(0.7) and fit.per_model == pytest.approx(0.05)


def test_store_time_is_the_greedy_makespan_of_its_chunks():
    model = ChunkTimeModel(Linear(1.0, 0.0), Linear(0.1, 0.01), Linear(0.5, 0.02), workers=3)
    assert chunk_sizes(70, 32) == [32, 32, 6]
    per_chunk = {e: model.seconds(e, 100) for e in (32, 6)}
    assert per_chunk[32] == pytest.approx(1.0 + 100 * (0.1 + 0.32) + 0.5 + 0.64)
    # three workers, chunks 32, 32, 6: the makespan is the longest single chunk, plus start-up
    assert store_seconds(model, 70, 32, 100, startup=2.0) == pytest.approx(2.0 + per_chunk[32])
    one = ChunkTimeModel(model.setup, model.step, model.finish, workers=1)
    assert store_seconds(one, 70, 32, 100) == pytest.approx(2 * per_chunk[32] + per_chunk[6])
    # seven equal chunks over three workers: ceil(7 / 3) = 3 rounds
    assert store_seconds(model, 7 * 32, 32, 100) == pytest.approx(3 * per_chunk[32])
    assert steps_per_model(1437, 0.5, 16, 15) == pytest.approx(15 * 718 / 16)  # last partial batch: 14/16 step
    assert steps_per_model(1437, 0.5, 128, 15) == pytest.approx(15 * (5 + 78 / 128))


@pytest.mark.parametrize("a,b", [(0.3, 20.0), (0.12, 40.0), (0.6, 5.0)])
def test_learning_curve_recovers_known_parameters_and_inverts(a, b):
    rng = np.random.default_rng(1)
    n = np.repeat([1, 2, 4, 8, 16, 32], 6)
    y = curve(n, a, b) + rng.normal(0, 0.003, size=n.size)
    fit = fit_learning_curve(n, y, n_boot=200)
    assert fit.a == pytest.approx(a, rel=0.1) and fit.b == pytest.approx(b, rel=0.35)
    mid, lo, hi = fit.predict(128)
    assert lo <= curve(128, a, b) <= hi or abs(mid - curve(128, a, b)) < 0.01
    target = 0.8 * a
    need, need_lo, need_hi = fit.models_for(target)
    assert curve(need, fit.a, fit.b) >= target > curve(need - 1, fit.a, fit.b)
    assert need_lo <= need <= need_hi
    with pytest.raises(UserError, match="above what this pilot"):
        fit.models_for(min(1.0, 1.5 * fit.a))


def test_far_from_saturation_the_4x_prediction_still_holds():
    """Pilot counts far below b: only a / sqrt(b) is identified, which is what 4x extrapolation needs."""
    rng = np.random.default_rng(2)
    n = np.repeat([1, 2, 4, 8, 16, 32], 6)
    y = curve(n, 0.12, 400.0) + rng.normal(0, 0.001, size=n.size)
    mid, lo, hi = fit_learning_curve(n, y, n_boot=200).predict(128)
    assert mid == pytest.approx(curve(128, 0.12, 400.0), rel=0.1) and lo <= mid <= hi


def test_learning_curve_needs_two_model_counts():
    with pytest.raises(UserError, match="two or more model counts"):
        fit_learning_curve([8, 8, 8], [0.1, 0.2, 0.15])


def test_prices_cost_and_cheapest(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("currency: USD\nmachines:\n  small: {per_hour: 0.5}\n  big: {per_hour: 2}\n")
    prices = load_prices(f)
    assert prices.of("big") == 2 and cost(3600, 2, machines=3) == 6
    with pytest.raises(UserError, match="no machine kind 'gpu'"):
        prices.of("gpu")
    options = [{"workers": 1, "seconds": 4000, "cost": 1.0}, {"workers": 2, "seconds": 2100, "cost": 1.1},
               {"workers": 4, "seconds": 1200, "cost": 1.3}]
    assert cheapest(options, 3600)["workers"] == 2
    assert cheapest(options, 1000) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("machines: {small: {per_hour: -1}}\n")
    with pytest.raises(UserError, match="per_hour must be a number"):
        load_prices(bad)


def test_bad_input_is_one_error_line(tmp_path):
    r = cli("plan", "no_such_study")
    assert r.returncode == 2 and "no_such_study" in the_error_line(r.stderr)
    prices = tmp_path / "p.yaml"
    prices.write_text("machines: {laptop: {per_hour: 0}}\n")
    r = cli("plan", "sgd_noise", "--prices", prices, "--machine", "h100")
    assert r.returncode == 2 and "no machine kind 'h100'" in r.stderr and "Traceback" not in r.stderr
    r = cli("plan", "sgd_noise", "--target-lds", "0.3")
    assert r.returncode == 2 and "--pilot" in r.stderr


@pytest.mark.slow
def test_demo_study_plan_structure_and_order(tmp_path, monkeypatch):
    """One real (short) calibration of the demo study through the CLI, then predictions from it;
    a second plan reuses the cached calibration (and says so)."""
    monkeypatch.setenv("MODELDIFF_PLAN_CACHE", str(tmp_path / "cache"))
    prices = tmp_path / "p.yaml"
    prices.write_text("currency: USD\nmachines: {this: {per_hour: 1.0}}\n")
    r = cli("plan", "sgd_noise", "--json", "--prices", prices, "--deadline", "100")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    for stage in ("train_a", "train_b", "attribute_a", "attribute_b", "diff", "null", "search", "counterfactual",
                  "report"):
        s = plan["stages"][stage]
        assert 0 < s["seconds_low"] <= s["seconds"] <= s["seconds_high"], (stage, s)
        assert s["peak_memory_bytes"] > 0 and s["disk_bytes"] >= 0
    assert plan["stages"]["train_a"]["disk_bytes"] > 0 and plan["stages"]["attribute_a"]["disk_bytes"] > 0
    assert plan["total_seconds"] == pytest.approx(sum(s["seconds"] for s in plan["stages"].values()))
    assert plan["cost"]["amount"] == pytest.approx(plan["total_seconds"] / 3600)
    assert plan["cheapest"]["workers"] == 1  # a 100 h deadline: the single machine is cheapest
    assert plan["command"].startswith("modeldiff study sgd_noise")
    assert plan["calibration_seconds"] > 0 and len(list((tmp_path / "cache").glob("*.pkl"))) == 1
    again = json.loads(cli("plan", "sgd_noise", "--json", "--models", "128").stdout)
    assert again["calibration_seconds"] == 0 and any("reused from the cache" in a for a in again["assumptions"])
    assert again["stages"]["train_a"]["seconds"] > plan["stages"]["train_a"]["seconds"]


def test_more_models_take_more_time():
    from modeldiff.plan.calibrate import (
        AttributionCalibration,
        Calibration,
        DiffCalibration,
        EvaluationCalibration,
        TrainingCalibration,
    )
    from modeldiff.plan.planner import Calibrated, PlanRequest, predict_plan
    from modeldiff.plan.predict import StudyShape
    from modeldiff.studies.config import load_study

    chunk = ChunkTimeModel(Linear(0.5, 0.01), Linear(0.02, 0.002), Linear(0.2, 0.01))
    training = TrainingCalibration(chunk, chunk, 0.0, 10 ** 9, 10 ** 5, 1e-5, 1.0)
    cal = Calibration(base_rss=5 * 10 ** 8, training={"a": training, "b": training},
                      attribution=AttributionCalibration("trak", per_example_seconds=1e-4, load_seconds=0.01,
                                                         kernel_fixed_seconds=0.05, kernel_per_row_seconds=1e-6,
                                                         score_seconds_per_mac=1e-10),
                      diff=DiffCalibration(1e-8, 12.0, 0.1), seconds=5.0)
    ev = EvaluationCalibration(Linear(0.001, 0.0005), Linear(0.01, 0.002), Linear(0.01, 0.003), 0.02, 200, 300)
    cal.evaluation = {"a": ev, "b": ev}
    recipes = dict(zip("ab", load_study("sgd_noise").recipes()))
    shape = StudyShape(1437, 360, 10, 64, 0.5, 32, 1, null_fits=64, search_candidates=121, counterfactual_tests=8,
                       counterfactual_sweeps=1, counterfactual_sizes=3, counterfactual_inputs=300)
    calibrated = Calibrated(PlanRequest("sgd_noise"), cal, recipes, shape, "modeldiff study sgd_noise", 2.0)
    totals = [predict_plan(calibrated, n) for n in (32, 64, 128, 256)]
    seconds = [t["stages"]["train_a"]["seconds"] for t in totals]
    assert all(x < y for x, y in zip(seconds, seconds[1:]))
    assert all(x["total_seconds"] < y["total_seconds"] for x, y in zip(totals, totals[1:]))
    assert all(x["disk_bytes"] < y["disk_bytes"] for x, y in zip(totals, totals[1:]))
    # the search: (candidates + control) x discovery half + (2 x confirmed + control) x confirmation half, per
    # algorithm, plus 2 directions x 5 confirmed x 2 units of bootstrap comparisons
    search = totals[1]["stages"]["search"]["seconds"]  # 64 models: halves of 32
    per_half = 2 * ev.load(32) + 122 * ev.search(32) + 11 * ev.search(32)
    assert search == pytest.approx(2 * per_half + 20 * ev.bootstrap)
    more = predict_plan(Calibrated(PlanRequest("sgd_noise"), cal, recipes,
                                   dataclasses.replace(shape, search_candidates=242), "", 2.0))
    assert more["stages"]["search"]["seconds"] - search == pytest.approx(2 * 121 * ev.search(32))


def test_report_stage_counts_the_figures_of_both_reports():
    """Two reports: per direction a scatter, one examples figure per component, the effect plots of the tests
    and of the search and one plot per sweep; matplotlib's start once. Known unit costs give the known sum."""
    from modeldiff.plan.calibrate_report import ReportCalibration
    from modeldiff.plan.predict import StudyShape, predict_report, report_plot_rows

    cal = ReportCalibration(first_seconds=0.5, grid_seconds=0.2, plot_seconds=0.1, plot_rows=8)
    shape = StudyShape(1437, 360, 10, 64, 0.5, 32, 1, components=3, search_candidates=121, search_confirm=5,
                       counterfactual_tests=8, counterfactual_sweeps=1)
    s = predict_report(cal, shape, 10 ** 8)
    assert s["seconds"] == pytest.approx(0.5 + 2 * (3 * 0.2 + 4 * 0.1))
    assert s["seconds_low"] < s["seconds"] < s["seconds_high"] and s["peak_memory_bytes"] == 10 ** 8
    assert report_plot_rows(shape) == 8 and report_plot_rows(dataclasses.replace(shape, counterfactual_tests=0)) == 5
    bare = predict_report(cal, dataclasses.replace(shape, search_candidates=0, counterfactual_tests=0,
                                                   counterfactual_sweeps=0, components=5), 10 ** 8)
    assert bare["seconds"] == pytest.approx(0.5 + 2 * (5 * 0.2 + 0.1))


def test_report_calibration_times_each_figure_kind():
    from datamodels.data import load_digits
    from modeldiff.plan.calibrate_report import calibrate_report

    data = load_digits()
    c = calibrate_report(data, 6)
    assert c.plot_rows == 6 and min(c.first_seconds, c.grid_seconds, c.plot_seconds) > 0
    assert c.seconds >= c.first_seconds + c.grid_seconds + c.plot_seconds


def test_report_calibration_draws_as_many_bars_as_the_report(monkeypatch):
    """Data that are not images: the report shows every subpopulation member as a bar; so does the calibration."""
    import types

    from modeldiff.plan.calibrate_report import calibrate_report
    from modeldiff.report import figures
    from modeldiff.studies.pipeline import SUBPOP_TOP

    drawn = []
    monkeypatch.setattr(figures, "weight_bars", lambda rows: drawn.append([len(labels) for _, _, labels in rows]) or b"")
    tabular = types.SimpleNamespace(is_image=False, n_train=100)
    calibrate_report(tabular, 3)
    assert drawn == [[SUBPOP_TOP] * 3]


def test_variance_components_predict_the_lds_of_larger_ensembles():
    """Simulated per-model predictions with known signal and noise: the curve fitted on 8 models
    predicts the Spearman correlation that averaging 32 models actually gives."""
    from datamodels.attribution.lds import spearman_columns
    from modeldiff.plan.variance_curve import fit_variance_curve

    rng = np.random.default_rng(0)
    u, t = 200, 150
    mu = rng.normal(size=(u, t))
    noise_sd = rng.uniform(1.0, 6.0, size=t)  # test examples differ in their signal-to-noise ratio
    margins = 0.8 * mu + rng.normal(size=(u, t))
    preds = mu[None] + noise_sd[None, None, :] * rng.normal(size=(64, u, t))
    curve = fit_variance_curve(preds[:8], margins)
    for n in (8, 32):
        actual = np.mean(spearman_columns(preds[8:8 + n].mean(0), margins))
        mid, lo, hi = curve.predict(n)
        assert abs(mid - actual) < 0.03 and lo - 0.02 <= actual <= hi + 0.02, (n, mid, lo, hi, actual)
    n, n_lo, n_hi = curve.models_for(0.9 * curve.point.lds(float("inf")))
    assert n_lo <= n <= n_hi or n_hi == -1
    with pytest.raises(UserError, match="above what this estimator can reach"):
        curve.models_for(0.99)


def test_the_printed_plan_calls_out_a_calibration_above_five_percent():
    from modeldiff.plan.report import format_plan

    stage = {"seconds": 10.0, "seconds_low": 9.0, "seconds_high": 11.0, "peak_memory_bytes": 1 << 20, "disk_bytes": 0}
    plan = {"target": "t.yaml", "models": 64, "ensemble_size": 16, "workers": 1, "launcher": "local", "device": "cpu",
            "stages": {"train": stage}, "total_seconds": 10.0, "total_seconds_low": 9.0, "total_seconds_high": 11.0,
            "peak_memory_bytes": 1 << 20, "disk_bytes": 0, "assumptions": [], "command": "modeldiff train t.yaml"}
    short = format_plan(plan | {"calibration_seconds": 2.0, "calibration_share": 0.2})
    assert "over 5 %" in short and "~5x" in short
    long = format_plan(plan | {"calibration_seconds": 0.2, "calibration_share": 0.02})
    cached = format_plan(plan | {"calibration_seconds": 0.0, "calibration_share": 0.0})
    assert "over 5 %" not in long and "over 5 %" not in cached
