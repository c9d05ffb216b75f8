"""`modeldiff plan` accuracy pieces: the training peak as fixed + per-model parts, the
diagnostics stage (present iff the study asks for it; time and memory from a real calibration run),
TRAK's per-model projector cost, and the calibration's step progress. Synthetic numbers with known
parameters where possible; one tiny real calibration on digits."""
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from modeldiff.plan import calibrate as C
from modeldiff.plan import calibrate_diagnostics as D
from modeldiff.plan.predict import StudyShape, predict, predict_diagnostics, predict_training
from modeldiff.plan.scaling import ChunkTimeModel, Linear

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30


def _training(points, base=500 << 20):
    growth, base = C.fit_peak(points, base)
    chunk = ChunkTimeModel(Linear(0.5, 0.01), Linear(0.02, 0.002), Linear(0.2, 0.01))
    peak16 = base + int(growth(16))
    return C.TrainingCalibration(chunk, chunk, 0.0, peak16, 10 ** 5, 1e-5, 1.0, peak_base=base, peak_growth=growth,
                                 peak_points=tuple(points))


def test_training_peak_is_fixed_plus_per_model_at_the_largest_chunk():
    fixed, per_model = 300 << 20, 200 << 20  # bytes: a 16-model chunk grows 3.5 GiB, an 8-model one 1.9 GiB
    cal = _training([(16, fixed + 16 * per_model), (4, fixed + 4 * per_model)])
    assert cal.peak_growth.fixed == pytest.approx(fixed) and cal.peak_growth.per_model == pytest.approx(per_model)
    recipe = type("R", (), {"batch_size": 16, "epochs": 1})()
    shape = StudyShape(1000, 100, 10, 8, 0.5, 16, 1)  # 8 models, ensemble 16: one chunk of 8
    pred = predict_training(cal, recipe, shape, base_rss=100 << 20)
    assert pred["peak_memory_bytes"] == pytest.approx((500 << 20) + fixed + 8 * per_model, abs=2)
    # the old rule (the 16-model chunk's peak) would over-count by 8 models' parts
    assert cal.peak_rss - pred["peak_memory_bytes"] == pytest.approx(8 * per_model, abs=2)
    shape64 = dataclasses.replace(shape, models=64)
    assert predict_training(cal, recipe, shape64, 0)["peak_memory_bytes"] == pytest.approx(cal.peak_rss, abs=2)
    # one size (a one-model-at-a-time trainer): all fixed, not proportional
    one = _training([(2, 700 << 20)])
    assert one.peak_growth == Linear(700 << 20, 0.0) and one.peak_at(16) == one.peak_at(2)
    # noise that makes the bigger chunk smaller: no negative growth per model
    flat = _training([(16, 1 << 20), (4, 2 << 20)])
    assert flat.peak_growth.per_model == 0 and flat.peak_at(8) >= flat.peak_base


def _diag_cal(**kw):
    base = dict(examples=256, n_params=100_000, linear_seconds=2.0, gram_seconds_per_mac=1e-11, hvps=14,
                lanczos_used=10, lanczos_min=10, lanczos_max=20, hvp_seconds=0.1, activation_bytes=50_000.0,
                chunk_examples=256, seconds=3.0)
    return D.DiagnosticsCalibration(**{**base, **kw})


def test_diagnostics_prediction_from_known_costs():
    c = _diag_cal()
    shape = StudyShape(n_train=2048, n_test=100, n_classes=10, models=24, subset_fraction=0.5, ensemble_size=16,
                       workers=1, diagnostics_models=2, diagnostics_batch=4096)
    s = predict_diagnostics({"a": c, "b": c}, shape, base_rss=1 << 28)
    n = 1024  # examples per model
    m = min(n, (512 << 20) // (4 * c.n_params))  # the Gram sample of the noise diagnostics
    per_model = c.linear_seconds * n / c.examples + m * m * c.n_params * c.gram_seconds_per_mac
    assert s["seconds"] == pytest.approx(2 * 2 * per_model)
    high = 2 * 2 * ((c.linear_seconds + 10 * c.hvp_seconds) * n / c.examples
                    + m * m * c.n_params * c.gram_seconds_per_mac) * 1.15
    assert s["seconds_high"] == pytest.approx(high)
    assert s["seconds_low"] <= s["seconds"] <= s["seconds_high"]
    assert s["peak_memory_bytes"] == pytest.approx((1 << 28) + c.activation_bytes * n + 4 * m * c.n_params
                                                   + c.gram_entry_bytes * m * m, rel=1e-9)
    more = predict_diagnostics({"a": c, "b": c}, dataclasses.replace(shape, diagnostics_models=4), 1 << 28)
    assert more["seconds"] == pytest.approx(2 * s["seconds"])
    # capped at the study's models
    assert predict_diagnostics({"a": c}, dataclasses.replace(shape, models=1), 0)["seconds"] == pytest.approx(
        per_model)


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
    from modeldiff.plan.planner import PlanRequest, _load

    _, _, with_diag, _ = _load(PlanRequest(_study_yaml(tmp_path / "w", "{models: 2, batch_size: 512}")))
    _, _, without, _ = _load(PlanRequest(_study_yaml(tmp_path / "wo", None)))
    assert with_diag.diagnostics_models == 2 and with_diag.diagnostics_batch == 512
    assert with_diag.diagnostics_spec is not None
    assert without.diagnostics_models == 0 and without.diagnostics_spec is None
    cal = C.Calibration(base_rss=1 << 28, training={}, diff=C.DiffCalibration(1e-8, 12.0, 0.1),
                        diagnostics={"a": _diag_cal(), "b": _diag_cal()})
    assert "diagnostics" in predict(cal, {}, with_diag)["stages"]
    assert "diagnostics" not in predict(cal, {}, without)["stages"]


@pytest.fixture(scope="module")
def calibration_store(tmp_path_factory):
    """A real calibration of the digits default recipe at ensemble size 4 (chunks of 4 and 1 models)."""
    from datamodels.data import load_digits
    from datamodels.training.recipe import load_recipe

    recipe = load_recipe(str(ROOT / "datamodels" / "recipes" / "digits_default.yaml")).replace(**{"model.width": 4})
    data = load_digits()
    folder = tmp_path_factory.mktemp("cal") / "store"
    ticks = []
    cal = C.calibrate_training(recipe, data, 4, "cpu", str(folder), progress=ticks.append, show=False)
    return cal, data, str(folder), ticks


def test_real_calibration_measures_peaks_at_both_sizes(calibration_store):
    cal, _, _, ticks = calibration_store
    assert ticks == [4, 1]
    assert [e for e, _ in cal.peak_points] == [4, 1] and all(g >= 0 for _, g in cal.peak_points)
    assert cal.peak_base > 0 and cal.peak_at(4) >= cal.peak_base


def test_real_diagnostics_calibration(calibration_store):
    from modeldiff.studies.config import DiagnosticsSpec

    _, data, folder, _ = calibration_store
    spec = DiagnosticsSpec(models=2, probes=2, lanczos_steps=6, batch_size=4096)
    c = D.calibrate_diagnostics(folder, data, spec, subset_examples=718, device="cpu")
    assert c.examples == 256 and c.chunk_examples == 256  # the study's subset fits one chunk: one chunk here too
    assert c.hvps >= c.lanczos_used >= 1 and c.lanczos_max == 6 and c.lanczos_min <= 6
    assert c.linear_seconds > 0 and c.hvp_seconds > 0 and c.seconds > 0
    chunked = D.calibrate_diagnostics(folder, data, dataclasses.replace(spec, batch_size=256), 718, "cpu")
    assert chunked.chunk_examples == 128  # several chunks in the study: several here
    shape = StudyShape(data.n_train, data.n_test, data.num_classes, 8, 0.5, 4, 1, diagnostics_models=2,
                       diagnostics_batch=4096)
    s = predict_diagnostics({"a": c, "b": c}, shape, 1 << 28)
    assert 0 < s["seconds_low"] <= s["seconds"] <= s["seconds_high"] and s["peak_memory_bytes"] > 1 << 28


def test_trak_calibration_times_a_fresh_projector(calibration_store, monkeypatch):
    """Every TRAK model has its own projector seed: the timed pass must not reuse the warm-up's."""
    from datamodels.attribution import gradients

    _, data, folder, _ = calibration_store
    ids = []
    real = gradients.featurize

    def spy(model, x, y, proj, model_id, **kw):
        ids.append(model_id)
        return real(model, x, y, proj, model_id, **kw)

    monkeypatch.setattr(gradients, "featurize", spy)
    cal = C.calibrate_trak(folder, data, 64, 256, "cpu")
    assert len(ids) >= 2 and ids[-1] not in ids[:-1]
    assert cal.per_example_seconds > 0 and cal.load_seconds > 0


def test_trak_calibration_model_is_the_stores_model_untrained(calibration_store):
    """The planner times TRAK on an untrained model of the recipe (before training): it must be the net
    `modeldiff attribute` loads — same parameters, same output shape — and the calibration must time it."""
    from datamodels.attribution.gradients import n_params
    from datamodels.store import Store

    _, data, folder, _ = calibration_store
    store = Store.open(folder, data)
    trained = store.load_model(0, "cpu")
    fresh = C.untrained_model(store.recipe, data, "cpu")
    assert n_params(fresh) == n_params(trained) and not fresh.training
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
    with torch.no_grad():
        assert fresh(data.x_test[:3]).shape == trained(data.x_test[:3]).shape == (3, data.num_classes)
    cal = C.calibrate_trak_recipe(store.recipe, data, 64, 256, "cpu")
    assert cal.per_example_seconds > 0 and cal.load_seconds > 0 and cal.peak_rss_extra > 0
    assert cal.seconds >= cal.load_seconds


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


def test_calibration_runs_the_stores_own_chunk_sizes(tmp_path):
    """A store of 8 models at ensemble size 16 is one chunk of 8: that chunk is calibrated (time and memory
    measured as they will run), not 16 and 4 extrapolated; the sizes are part of the cache key."""
    from datamodels.data import load_digits
    from datamodels.training.recipe import load_recipe
    from modeldiff.plan.planner import _chunk_sizes

    shape = StudyShape(1437, 360, 10, 8, 0.5, 16, 1)
    assert _chunk_sizes(shape) == [8]
    assert _chunk_sizes(dataclasses.replace(shape, models=24)) == [16, 8]
    assert _chunk_sizes(dataclasses.replace(shape, models=64)) == [16]
    recipe = load_recipe(str(ROOT / "datamodels" / "recipes" / "digits_default.yaml")).replace(**{"model.width": 4})
    ticks = []
    cal = C.calibrate_training(recipe, load_digits(), 16, "cpu", str(tmp_path / "s"), progress=ticks.append,
                               show=False, sizes=[3])
    assert ticks == [3] and [e for e, _ in cal.peak_points] == [3]
    assert cal.peak_at(3) == pytest.approx(cal.peak_rss, abs=1)  # measured at the size used
    assert cal.chunk.step(3) > 0 and cal.chunk.finish(3) > 0


def test_step_time_is_the_mean_of_skewed_steps():
    """Nine 0.1 s steps and one 0.5 s step: the store pays their mean per step, not the median."""
    s, (low, high) = C.step_time([0.1] * 9 + [0.5])
    assert s == pytest.approx(0.14) and low <= 1.0 <= high
    assert C.step_time([0.2] * 5)[0] == pytest.approx(0.2)
