"""`modeldiff plan` on a matched study: a `train_matched` stage, an upper bound (the costlier algorithm
retrained for match.max_epochs, plus the fit checks), present iff the study retrains an algorithm (train_slower,
or stop_faster with checks inside epochs)."""
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _costs():
    from modeldiff.plan.analysis import DiffCost, EvaluationCost
    from modeldiff.plan.attribution import AttributionCost
    from modeldiff.plan.figures import ReportCost
    from modeldiff.plan.training import ChunkCost, TrainingCost

    slow = TrainingCost({32: ChunkCost(32, 2.0, 1.1, 11, (1, 1), 1)}, 1 << 28, 1000)
    fast = TrainingCost({32: ChunkCost(32, 0.5, 0.3, 11, (1, 1), 1)}, 1 << 28, 1000)
    ev = EvaluationCost(0.002, 0.0005, 0.003, 0.02, 180, 300)
    return {"training": {"a": slow, "b": fast}, "evaluation": {"a": ev, "b": ev},
            "attribution": AttributionCost("trak", 1e-4, 0.01, 1e-6, 1e-10), "diff": DiffCost(1e-8, 12.0),
            "report": ReportCost(0.5, 0.2, 0.1)}


@pytest.mark.parametrize("name,matched", [("digits_matched.yaml", True), ("digits.yaml", False)])
def test_train_matched_stage_bounds_the_retraining(tmp_path, name, matched):
    from modeldiff.plan.planner import FIT_CHECK_SHARE, Calibrated, PlanRequest, _load, predict_plan
    from modeldiff.plan.training import predict_training

    folder = tmp_path / "study"
    shutil.copytree(ROOT / "case_studies" / "sgd_noise", folder,
                    ignore=shutil.ignore_patterns("*cifar*", "__pycache__", "*.py"))
    recipes, _, shape, _ = _load(PlanRequest(str(folder / name)))
    costs = _costs()
    plan = predict_plan(Calibrated(PlanRequest("x"), costs, recipes, shape, "", 0.0, 1 << 28, 1.0))
    assert ("train_matched" in plan["stages"]) == matched
    if not matched:
        return
    got = plan["stages"]["train_matched"]
    epochs = shape.cfg.match.max_epochs
    bounds = [predict_training(costs["training"][t], r.replace(**{"until.train_loss": 1.0,
                                                                 "until.max_epochs": epochs}), shape)["seconds"]
              for t, r in recipes.items()]
    assert got["seconds"] == pytest.approx(max(bounds) * (1 + FIT_CHECK_SHARE))  # the costlier algorithm: a
    assert bounds[0] > bounds[1] and got["seconds"] > 2 * plan["stages"]["train_a"]["seconds"]  # 100 epochs, not 15
    assert any("train_matched" in line for line in plan["assumptions"])


@pytest.mark.parametrize("method", ["train_slower", "stop_faster"])
def test_checks_inside_epochs_add_their_cost_to_the_retraining(tmp_path, method):
    """checks_per_epoch K: K - 1 more fit checks in each of INSIDE_CHECK_EPOCHS epochs; stop_faster retrains
    the faster algorithm for its own epochs (no train_matched stage without checks inside epochs)."""
    import yaml

    from modeldiff.plan.planner import FIT_CHECK_SHARE, INSIDE_CHECK_EPOCHS, Calibrated, PlanRequest, _load, predict_plan

    folder = tmp_path / "study"
    shutil.copytree(ROOT / "case_studies" / "sgd_noise", folder,
                    ignore=shutil.ignore_patterns("*cifar*", "__pycache__", "*.py"))
    name = "digits_matched.yaml" if method == "train_slower" else "digits_matched_stop_faster.yaml"
    got = {}
    for k in (1, 5):
        study = yaml.safe_load((folder / name).read_text())
        study["match"]["checks_per_epoch"] = k
        if k == 1:  # stop_faster at epoch ends takes checkpoints: no model is retrained, nothing to stop
            study["match"].pop("stop_at", None)
        (folder / f"k{k}.yaml").write_text(yaml.safe_dump(study))
        recipes, _, shape, _ = _load(PlanRequest(str(folder / f"k{k}.yaml")))
        plan = predict_plan(Calibrated(PlanRequest("x"), _costs(), recipes, shape, "", 0.0, 1 << 28, 1.0))
        got[k] = plan["stages"].get("train_matched")
    if method == "stop_faster":
        assert got[1] is None and got[5]["seconds"] > 0
        assert any("trained again for its own epochs" in line for line in plan["assumptions"])
        return
    epochs = shape.cfg.match.max_epochs
    inside = 4 * min(INSIDE_CHECK_EPOCHS, epochs) / epochs
    assert got[5]["seconds"] == pytest.approx(got[1]["seconds"] * (1 + FIT_CHECK_SHARE * (1 + inside))
                                              / (1 + FIT_CHECK_SHARE))
