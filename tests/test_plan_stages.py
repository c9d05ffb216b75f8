"""`modeldiff plan`'s stage costs: the diagnostics stage (present iff the study asks for it; known costs give the
known sum; a real calibration run), TRAK's calibration on an untrained model (a fresh projector per model, the
store's net), and one tiny real training calibration on digits."""
import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from modeldiff.plan.diagnostics import DiagnosticsCost, calibrate_diagnostics, predict_diagnostics
from modeldiff.plan.planner import StudyShape

ROOT = Path(__file__).resolve().parents[1]


def test_diagnostics_prediction_from_known_costs():
    from modeldiff.diagnostics.noise import gram_examples
    from modeldiff.studies.config import DiagnosticsSpec

    c = DiagnosticsCost(examples=256, n_params=1_000_000, itemsize=4, linear_seconds=2.0, gram_per_mac=1e-11,
                        activation_bytes=50_000.0)
    cfg = SimpleNamespace(diagnostics=DiagnosticsSpec(models=2, batch_size=4096))
    shape = StudyShape(n_train=2048, n_test=100, n_classes=10, models=24, subset_fraction=0.5, ensemble_size=16,
                       cfg=cfg)
    s = predict_diagnostics({"a": c, "b": c}, shape, base_rss=1 << 28)
    n, m = 1024, gram_examples(1024, c.n_params, 4)  # examples per model; the Gram sample of the noise diagnostics
    assert m < n  # the memory cap binds at this size
    per_model = c.linear_seconds * n / c.examples + m * m * c.n_params * c.gram_per_mac
    assert s["seconds"] == pytest.approx(2 * 2 * per_model)
    assert s["peak_memory_bytes"] == pytest.approx((1 << 28) + c.activation_bytes * n + 4 * m * c.n_params, rel=1e-9)
    cfg.diagnostics.models = 4
    more = predict_diagnostics({"a": c, "b": c}, shape, 1 << 28)
    assert more["seconds"] == pytest.approx(2 * s["seconds"])
    capped = predict_diagnostics({"a": c}, dataclasses.replace(shape, models=1), 0)  # at most the study's models
    assert capped["seconds"] == pytest.approx(per_model)


def _study_yaml(tmp_path, diagnostics: str | None) -> str:
    folder = tmp_path / "study"
    shutil.copytree(ROOT / "case_studies" / "sgd_noise", folder,
                    ignore=shutil.ignore_patterns("*cifar*", "__pycache__", "*.py"))
    text = (folder / "digits.yaml").read_text()
    if diagnostics:
        text += f"\ndiagnostics: {diagnostics}\n"
    (folder / "digits.yaml").write_text(text)
    return str(folder / "digits.yaml")


def test_diagnostics_stage_exists_iff_the_study_asks(tmp_path):
    from modeldiff.plan.analysis import DiffCost, EvaluationCost
    from modeldiff.plan.attribution import AttributionCost
    from modeldiff.plan.figures import ReportCost
    from modeldiff.plan.planner import Calibrated, PlanRequest, _load, predict_plan
    from modeldiff.plan.training import ChunkCost, TrainingCost

    recipes, _, with_diag, _ = _load(PlanRequest(_study_yaml(tmp_path / "w", "{models: 2, batch_size: 512}")))
    _, _, without, _ = _load(PlanRequest(_study_yaml(tmp_path / "wo", None)))
    assert with_diag.cfg.diagnostics.models == 2 and with_diag.cfg.diagnostics.batch_size == 512
    assert without.cfg.diagnostics.models == 0
    training = TrainingCost({32: ChunkCost(32, 2.0, 1.1, 11, (1, 1), 1)}, 1 << 28, 1000)
    diag = DiagnosticsCost(256, 10_000, 4, 1.0, 1e-11, 1000.0)
    ev = EvaluationCost(0.002, 0.0005, 0.003, 0.02, 180, 300)
    costs = {"training": {"a": training, "b": training}, "evaluation": {"a": ev, "b": ev},
             "attribution": AttributionCost("trak", 1e-4, 0.01, 1e-6, 1e-10), "diff": DiffCost(1e-8, 12.0),
             "report": ReportCost(0.5, 0.2, 0.1), "diagnostics": {"a": diag, "b": diag}}
    stages = [predict_plan(Calibrated(PlanRequest("x"), costs, recipes, shape, "", 0.0, 1 << 28, 1.0))["stages"]
              for shape in (with_diag, without)]
    assert "diagnostics" in stages[0] and "diagnostics" not in stages[1]


@pytest.fixture(scope="module")
def calibration_store(tmp_path_factory):
    """A real calibration of the digits default recipe (width 4): one chunk of 3 models, the store's own size."""
    from datamodels.data import load_digits
    from datamodels.training.recipe import load_recipe
    from modeldiff.plan.training import calibrate_training

    recipe = load_recipe(str(ROOT / "datamodels" / "recipes" / "digits_default.yaml")).replace(**{"model.width": 4})
    data = load_digits()
    folder = tmp_path_factory.mktemp("cal") / "store"
    return calibrate_training(recipe, data, [3, 3], "cpu", str(folder), show=False), recipe, data, str(folder)


def test_real_training_calibration_runs_the_stores_chunk_size(calibration_store):
    cost, *_ = calibration_store
    assert list(cost.chunks) == [3]
    c = cost.chunks[3]
    assert c.models == 3 and c.steps > 0 and c.fixed > 0 and c.spread[0] <= 1 <= c.spread[1]
    assert cost.base_rss > 0 and c.growth >= 0 and cost.weights_bytes > 0


def test_real_diagnostics_calibration(calibration_store):
    from modeldiff.studies.config import DiagnosticsSpec

    _, _, data, folder = calibration_store
    spec = DiagnosticsSpec(models=2, probes=2, lanczos_steps=6, batch_size=4096)
    c = calibrate_diagnostics(folder, data, spec, subset_examples=718, device="cpu")
    assert c.examples == 256 and c.linear_seconds > 0 and c.gram_per_mac > 0
    shape = StudyShape(data.n_train, data.n_test, data.num_classes, 8, 0.5, 4, SimpleNamespace(diagnostics=spec))
    s = predict_diagnostics({"a": c, "b": c}, shape, 1 << 28)
    assert 0 < s["seconds_low"] <= s["seconds"] <= s["seconds_high"] and s["peak_memory_bytes"] > 1 << 28


def test_trak_calibration_times_a_fresh_projector_on_the_stores_net(calibration_store, monkeypatch):
    """Every TRAK model has its own projector seed: the timed pass must not reuse the warm-up's; and the untrained
    model timed is the net `modeldiff attribute` loads (same parameters, same output shape, eval mode)."""
    from datamodels.attribution import gradients
    from datamodels.store import Store
    from modeldiff.plan.attribution import calibrate_trak, untrained_model

    _, recipe, data, folder = calibration_store
    trained = Store.open(folder, data).load_model(0, "cpu")
    fresh = untrained_model(recipe, data, "cpu")
    assert not fresh.training
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
    with torch.no_grad():
        assert fresh(data.x_test[:3]).shape == trained(data.x_test[:3]).shape == (3, data.num_classes)
    ids, real = [], gradients.featurize

    def spy(model, x, y, proj, model_id, **kw):
        ids.append(model_id)
        return real(model, x, y, proj, model_id, **kw)

    monkeypatch.setattr(gradients, "featurize", spy)
    cost = calibrate_trak(recipe, data, 64, 256, "cpu")
    assert len(ids) >= 2 and ids[-1] not in ids[:-1]
    assert cost.per_example > 0 and cost.load > 0 and cost.growth > 0


def test_step_bar_redraws_while_no_step_arrives(capsys):
    import time

    from datamodels.base.progress import step_bar

    seen = ""
    with step_bar("calibration chunk", 3, every=0.01) as bar:
        bar.update(1)
        first = capsys.readouterr().err.count("calibration chunk")
        deadline = time.monotonic() + 30  # no step arrives (an evaluation): the bar is redrawn anyway
        while seen.count("calibration chunk") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            seen += capsys.readouterr().err
    assert first >= 1 and seen.count("calibration chunk") >= 2
