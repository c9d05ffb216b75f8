"""The planner's search and counterfactual stages count exactly the work the study pipeline does:
the pipeline's own ``run_search`` / ``run_counterfactuals`` run with the expensive calls replaced by
counters, on the shipped studies' configs (no models are trained)."""
from types import SimpleNamespace

import numpy as np
import pytest

from modeldiff.plan.analysis import counts
from modeldiff.studies.config import load_study
from modeldiff.studies.pipeline import load_study_data, run_counterfactuals, run_search

STUDIES = ["sgd_noise", "case_studies/planted/digits.yaml", "case_studies/null/digits.yaml"]


def _directions(cfg, data):
    rng = np.random.default_rng(0)
    return [SimpleNamespace(name=name, fit=SimpleNamespace(components_=rng.normal(size=(cfg.components, data.n_train))),
                            counterfactuals=[], sweeps=[]) for name in ("a_minus_b", "b_minus_a")]


@pytest.mark.parametrize("study", STUDIES)
def test_search_candidates_are_the_pipelines(study, monkeypatch):
    import modeldiff.counterfactual.search as S

    cfg = load_study(study)
    data = load_study_data(cfg)
    seen = {}
    monkeypatch.setattr(S, "store_halves", lambda *a, **k: None)
    monkeypatch.setattr(S, "search", lambda halves, cands, *a, **k: seen.setdefault("n", len(cands)) and {})
    run_search(cfg, (None, None), data, _directions(cfg, data), "cpu")
    n = counts(cfg, data)
    assert n["search_candidates"] == seen["n"] > 50
    assert n["search_inputs"] == min(cfg.search.n_inputs, data.n_test // 2)


@pytest.mark.parametrize("study", STUDIES)
def test_counterfactual_tests_are_the_pipelines(study, monkeypatch):
    import modeldiff.counterfactual.effects as E

    cfg = load_study(study)
    data = load_study_data(cfg)
    calls = {"tests": 0, "sweeps": 0, "inputs": set()}

    def effects(pa, pb, x, transform, target, **kw):
        calls["tests"] += 1
        calls["inputs"].add(len(x))
        return None

    def sweep(pa, pb, x, transform, target, sizes, **kw):
        calls["sweeps"] += 1
        assert len(sizes) == len(cfg.counterfactual.sizes)
        return None

    monkeypatch.setattr(E, "counterfactual_effects", effects)
    monkeypatch.setattr(E, "patch_size_sweep", sweep)
    monkeypatch.setattr(E, "store_predictor", lambda *a, **k: None)
    directions = _directions(cfg, data)
    run_counterfactuals(cfg, directions[0], (None, None), data, "cpu")
    n = counts(cfg, data)
    assert (n["counterfactual_tests"], n["counterfactual_sweeps"]) == (calls["tests"], calls["sweeps"])
    if calls["inputs"]:  # the planner's input count is the pipeline's (up to the target class's share)
        assert abs(n["counterfactual_inputs"] - np.mean(sorted(calls["inputs"]))) <= 0.05 * data.n_test
