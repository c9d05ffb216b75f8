"""The cross-fitted estimator as a study option (``calibration.estimator: crossfit``): settings,
the components the pipeline makes from simulated half-model attributions, its own null, and a tiny study."""
import json

import numpy as np
import pytest

from benchmarks.crossfit_sim import labels, run, simulate, study
from datamodels.base.errors import UserError
from modeldiff.diff.null import mean_halves
from modeldiff.diff.null_crossfit import mean_quarters, split_parts
from modeldiff.studies.pipeline import calibrate_null, compare


def test_estimator_setting_is_checked_in_one_line():
    assert study().calibration.estimator == "classic"  # the paper-exact estimator stays the default
    assert study(estimator="crossfit").calibration.estimator == "crossfit"
    for bad, words in (({"estimator": "cross"}, "calibration.estimator must be one of classic, crossfit"),
                       ({"estimator": "crossfit", "enabled": False}, "set calibration.enabled to true"),
                       ({"estimator": "crossfit", "groups": 2}, "calibration.groups must be >= 4")):
        with pytest.raises(UserError) as err:
            study(**bad)
        assert words in str(err.value) and "\n" not in str(err.value)


def test_split_parts_are_disjoint_quarters():
    for first, *rest in split_parts(10, 3, seed=1):
        parts = [first, *rest]
        assert len(parts) == 4 and sorted(np.concatenate(parts).tolist()) == list(range(10))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="at least 4 units"):
        split_parts(3, 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_crossfit_study_path_ranks_the_signal_where_classic_ranks_the_noise(seed):
    a, b, s, d = simulate(seed)
    data = labels(a.shape[1], a.shape[2])
    classic = compare(study(), a.mean(0), b.mean(0), data)
    cross = compare(study(estimator="crossfit"), None, None, data, lambda: mean_halves(a, b, n_splits=4, seed=seed))
    top = classic[0].fit.components_[0]
    assert abs(top @ d) > 0.9 and abs(top @ s) < 0.3     # classic: the direction of largest noise
    top = cross[0].fit.components_[0]
    assert abs(top @ s) > 0.9 and abs(top @ d) < 0.3     # cross-fitted: the planted signal
    assert [x.name for x in cross] == ["a_minus_b", "b_minus_a"]
    assert cross[0].subpops[0].component == 0 and len(cross[0].subpops) == 3
    assert cross[0].fit.explained_variance_a_[0] > 5 * cross[0].fit.explained_variance_b_[0]
    bma = cross[1].fit                                   # B−A: a residual along s too, but A's signal, not B's
    assert bma.explained_variance_b_[0] > 2 * bma.explained_variance_a_[0]


def test_crossfit_null_flags_identical_algorithms_rarely():
    cfg = study(estimator="crossfit", splits=8)
    flagged = []
    for seed in range(10):
        a, b, _, _ = simulate(seed, n=120, m=40, signal=0.0)  # the same algorithm twice
        dirs = compare(cfg, None, None, labels(120, 40), lambda a=a, b=b, s=seed: mean_halves(a, b, 4, seed=s))
        cal = calibrate_null(cfg, None, dirs, lambda a=a, b=b, s=seed: mean_quarters(a, b, 8, seed=s))
        assert cal.estimator == "crossfit" and "signal_quarters" in cal.to_dict()["directions"]["a_minus_b"][0]
        flagged.append(cal.any_beyond())
    assert sum(flagged) <= 1, flagged


@pytest.mark.parametrize("seed", [0, 1])
def test_crossfit_null_finds_the_planted_signal_where_classic_ranks_it_second(seed):
    a, b, s, d = simulate(seed, signal=1.5)
    cfg = study(estimator="crossfit", splits=8)
    dirs = compare(cfg, None, None, labels(200, 60), lambda: mean_halves(a, b, n_splits=4, seed=seed))
    cal = calibrate_null(cfg, None, dirs, lambda: mean_quarters(a, b, n_splits=8, seed=seed))
    assert abs(dirs[0].fit.components_[0] @ s) > 0.9 and cal.components("a_minus_b")[0].beyond_null
    assert not cal.components("b_minus_a")[0].beyond_null  # B−A's top direction is A's feature: not B's signal
    classic = calibrate_null(study(splits=8), lambda: mean_halves(a, b, n_splits=8, seed=seed),
                             compare(study(), a.mean(0), b.mean(0), labels(200, 60)))
    assert not classic.components("a_minus_b")[0].beyond_null  # classic rank 0: the noise direction


def test_unequal_noise_makes_the_classic_top_component_beyond_null_not_the_crossfitted_one():
    """No feature differs, B's attributions are less noisy along ``d``: the classic estimator's top
    component is that noise direction and beyond its null; the cross-fitted top component is not
    beyond its null. (Lower ranks of B−A can be, under both: the row normalisation divides each row
    by a norm that includes its noise, docs/discovery.md.)"""
    classic = [run(seed, "classic", signal=0.0, noise_big_b=2.0) for seed in range(4)]
    cross = [run(seed, "crossfit", signal=0.0, noise_big_b=2.0) for seed in range(4)]
    assert all(r["top_beyond"] and r["cos_d"] > 0.9 for r in classic), classic
    assert sum(r["top_beyond"] for r in cross) <= 1, cross


@pytest.mark.slow
def test_tiny_crossfit_study_records_its_estimator(tmp_path):
    from case_studies.tabular.nets import make_mlp
    from modeldiff import Algorithm
    from modeldiff import compare as compare_api

    common = {"model": make_mlp, "model_kwargs": {"hidden": 8, "depth": 1}, "batch_size": 32, "epochs": 2}
    adam = Algorithm(name="adam", optimizer="adam", lr=3e-3, **common)
    sgd = Algorithm(name="sgd", optimizer="sgd", lr=0.05, **common)
    result = compare_api(adam, sgd, "case_studies.tabular.data:load", out=tmp_path / "run", models=8, components=2,
                         ensemble_size=8, calibration={"splits": 5, "estimator": "crossfit"})
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved == result.to_dict()
    assert saved["components_estimator"] == "crossfit" and saved["null"]["estimator"] == "crossfit"
    for name in ("a_minus_b", "b_minus_a"):
        comps = saved["directions"][name]["components"]
        assert len(comps) == 2 and "ratio_halves" not in comps[0]
        assert comps[0]["null_signal_q95"] is not None and 0 < comps[0]["p_value"] <= 1
        html = (tmp_path / "run" / f"report_{name}" / "report.html").read_text()
        assert "quarter-size signal" in html and "components: cross-fitted" in html
    assert "signal" in saved["verdict"]
