"""SGD-noise studies on CIFAR-10: the CI smoke versions of cifar10_cpu.yaml and of the
online / multi-epoch pair run end to end through ``modeldiff study`` (CIFAR-10 from
MODELDIFF_CIFAR10_DIR, which CI sets: there a missing folder fails, it is never skipped), and the
functional distance at matched loss (case_studies/sgd_noise/functional_distance.py) on known cases."""
import json

import numpy as np
import pytest
from helpers_train import cli

from case_studies.sgd_noise.functional_distance import from_study, functional_distance, null_excess
from case_studies.sgd_noise.paper_direction import paper_direction
from modeldiff.counterfactual.search import holm
from modeldiff.studies.config import load_study
from tests._requirements import require_cifar10_dir

SMOKE = ["sgd_noise/cifar10_cpu_ci", "sgd_noise/online_cifar10_ci", "sgd_noise/online_multiepoch_cifar10_ci"]


def _logits(rng, m, n, k, scale, base=None):
    base = rng.normal(size=(n, k)) * scale if base is None else base
    return np.stack([base + 0.3 * rng.normal(size=(n, k)) for _ in range(m)]), base


def test_functional_distance_same_function_has_no_excess():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    a, base = _logits(rng, 12, 400, 5, 2.0)
    b, _ = _logits(rng, 12, 400, 5, 2.0, base)  # the same function up to seed noise
    out = functional_distance(a, b, y)
    assert out["matched"] and out["pairs"] >= 6
    lo, hi = out["tv_excess_ci"]
    assert lo <= 0 <= hi and abs(out["tv_excess"]) < 0.01
    assert 0 < out["tv_within"] < 1 and out["loss_gap"] <= 0.05 * max(out["loss_a"], out["loss_b"])


def test_functional_distance_detects_a_different_function_at_equal_loss():
    """B's logits of the wrong classes are A's rotated among themselves: the true class's
    probability, hence every loss, is the same; the functions differ."""
    rng = np.random.default_rng(1)
    a, base = _logits(rng, 12, 400, 5, 2.0)
    y = base.argmax(1)
    other = base.copy()
    for i in range(len(y)):
        idx = np.flatnonzero(np.arange(5) != y[i])
        other[i, idx] = base[i, np.roll(idx, 1)]
    b, _ = _logits(rng, 12, 400, 5, 2.0, other)
    out = functional_distance(a, b, y)
    assert out["matched"] and out["pairs"] >= 6
    assert out["tv_excess_ci"][0] > 0.05, out


def test_null_excess_compares_two_halves_of_one_algorithm():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 400)
    a, _ = _logits(rng, 16, 400, 5, 2.0)
    out = null_excess(a, y)
    assert out["pairs_total"] == 8 and out["pairs"] >= 6
    assert out["tv_excess_ci"][0] <= 0 <= out["tv_excess_ci"][1] and abs(out["tv_excess"]) < 0.01


def test_functional_distance_keeps_only_pairs_within_the_caliper():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, 300)
    a, base = _logits(rng, 6, 300, 5, 2.0)
    b = a * 0.2  # much flatter: far higher loss
    out = functional_distance(a, b, y, caliper=0.05)
    assert out["pairs"] == 0 and not out["matched"] and out["tv_excess"] is None
    assert out["pairs_total"] == 6


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_smoke_yamls_keep_the_full_studies_design():
    """Smoke and full versions: same recipes' eta/B (the paper's 40x), same stages; online = one
    epoch, multi-epoch = the same examples seen per model (equal steps)."""
    for full, smoke in (("cifar10_cpu", "cifar10_cpu_ci"), ("online_cifar10", "online_cifar10_ci"),
                        ("online_multiepoch_cifar10", "online_multiepoch_cifar10_ci")):
        for name in (full, smoke):
            a, b = load_study(f"sgd_noise/{name}").recipes()
            assert (a.optim.lr / a.batch_size) / (b.optim.lr / b.batch_size) == pytest.approx(40)
    for suffix in ("", "_ci"):
        on, multi = load_study(f"sgd_noise/online_cifar10{suffix}"), load_study(f"sgd_noise/online_multiepoch_cifar10{suffix}")
        (oa, ob), (ma, mb) = on.recipes(), multi.recipes()
        assert oa.epochs == ob.epochs == 1 and ma.epochs == mb.epochs > 1
        seen = lambda cfg, r: cfg.data["per_class_train"] * 10 * cfg.subset_fraction * r.epochs  # noqa: E731
        assert seen(on, oa) == seen(multi, ma) and (oa.batch_size, ob.batch_size) == (ma.batch_size, mb.batch_size)
    assert load_study("sgd_noise/cifar10_cpu").diagnostics.models > 0


@pytest.mark.slow
@pytest.mark.parametrize("study", SMOKE)
def test_smoke_study_end_to_end(tmp_path_factory, study):
    data_dir = require_cifar10_dir()
    out = tmp_path_factory.getbasetemp() / study.replace("/", "_")
    res = cli("study", study, "--out", out, "--data-dir", data_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "verdict:" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "cifar10"
    for alg in summary["algorithms"].values():
        assert alg["models"] == load_study(study).models and alg["diverged"] == 0
    for d in summary["directions"].values():
        assert d["components"] and "headline" in d and d["counterfactuals"]
        assert "Counterfactual" in open(d["report"]).read()
    if study.endswith("cifar10_cpu_ci"):
        diag = summary["diagnostics"]["algorithms"]
        assert diag["a"]["eta_over_b"]["mean"] == pytest.approx(40 * diag["b"]["eta_over_b"]["mean"])
        assert all(diag[t]["hessian_fro"]["mean"] > 0 for t in "ab")
        assert "Sharpness and SGD-noise diagnostics" in open(summary["directions"]["a_minus_b"]["report"]).read()
        paper = paper_direction(out, sizes=(4, 8), n_test=10, n_resamples=100)
        assert [(t["patch"], t["target"], t["size"]) for t in paper["tests"]] == [
            ("texture", "dog", 4), ("texture", "dog", 8), ("window", "truck", 4), ("window", "truck", 8)]
        assert all(t["diff_ci"][0] <= t["diff"] <= t["diff_ci"][1] and t["p_holm"] >= t["p"] for t in paper["tests"])
    fd = from_study(out)
    assert 0 <= fd["tv_within"] <= 1 and fd["pairs_total"] == 4
    assert {t: fd["null"][t]["pairs_total"] for t in "ab"} == {"a": 2, "b": 2}
