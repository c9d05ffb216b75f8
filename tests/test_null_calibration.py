"""Null calibration on simulated attribution matrices where the truth is known.

Each algorithm's per-model attribution matrix = shared truth + independent per-model noise;
A may add one planted direction (a training-example pattern ``v`` used by a subset of test
rows) of strength ``s``. Identical algorithms must rarely be called different (false-positive
rate <= 10 % over trials, any component, either direction); the planted direction's power is
printed at several strengths and must reach 1 at the strongest.
"""
import numpy as np
import pytest

from modeldiff.diff.null import calibrate, mean_halves, split_halves

N_TEST, N_TRAIN, N_MODELS, K = 60, 120, 12, 3


def simulate(rng, strength=0.0, noise=1.0):
    truth = rng.normal(size=(N_TEST, N_TRAIN)) * rng.gamma(2.0, size=(1, N_TRAIN))
    per_a = truth + noise * rng.normal(size=(N_MODELS, N_TEST, N_TRAIN)) * 3
    per_b = truth + noise * rng.normal(size=(N_MODELS, N_TEST, N_TRAIN)) * 3
    if strength:
        v = np.zeros(N_TRAIN)
        v[rng.choice(N_TRAIN, 12, replace=False)] = 1.0
        rows = rng.choice(N_TEST, N_TEST // 3, replace=False)
        per_a[:, rows] += strength * rng.normal(size=(len(rows), 1)) * v[None, :]
    return per_a, per_b


def run(seed, strength):
    rng = np.random.default_rng(seed)
    per_a, per_b = simulate(rng, strength)
    return calibrate(mean_halves(per_a, per_b, n_splits=6, seed=seed), K, solver="full")


def test_identical_algorithms_rarely_beyond_null():
    trials = 30
    hits = [run(seed, 0.0).any_beyond() for seed in range(trials)]
    rate = float(np.mean(hits))
    print(f"false-positive rate (any component, either direction): {rate:.2f} over {trials} trials")
    assert rate <= 0.10


def test_power_grows_with_planted_strength():
    power = {}
    for s in (1.0, 3.0, 10.0):
        res = [run(100 + seed, s) for seed in range(8)]
        power[s] = float(np.mean([r.components("a_minus_b")[0].beyond_null for r in res]))
        wrong = np.mean([r.components("b_minus_a")[0].beyond_null for r in res])
        assert wrong <= 0.25, (s, wrong)
    print("power of the top A-B component by planted strength:", power)
    assert power[10.0] == 1.0
    assert power[10.0] >= power[1.0]


def test_record_fields_and_rule():
    cal = run(7, 10.0)
    c = cal.components("a_minus_b")[0]
    assert c.beyond_null and c.ratio_halves > c.null_ratio_q95 and 0 < c.p_value <= 0.1
    d = cal.to_dict()
    assert set(d["directions"]["a_minus_b"][0]) >= {"var_a", "var_b", "ratio", "null_ratio_q95", "p_value",
                                                    "beyond_null"}
    assert "max-T" in d["rule"]


@pytest.mark.parametrize("n", [5, 8, 16])
def test_split_halves_are_disjoint_and_distinct(n):
    splits = split_halves(n, 6, seed=1)
    assert len(splits) == 6
    for a, b in splits:
        assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == n and abs(len(a) - len(b)) <= 1
    firsts = {tuple(a) for a, _ in splits}
    assert len(firsts) == 6


def _tiny_stores(tmp_path, n_models):
    from datamodels.data.dataset import load_digits
    from datamodels.runs.launchers import fill_store
    from datamodels.store.store import Store
    from datamodels.training.recipe import recipe_from_dict

    data = load_digits()
    stores = []
    for tag, seed in (("a", 0), ("b", 1)):
        recipe = recipe_from_dict({"name": f"lin-{tag}", "data": {"name": "digits"}, "model": {"arch": "linear"},
                                   "epochs": 1, "batch_size": 64, "optim": {"lr": 0.05}})
        store = Store.create_or_resume(tmp_path / tag, recipe, data, n_models, 0.5, seed=seed)
        fill_store(store, ensemble_size=n_models)
        stores.append(Store.open(store.path, data))
    return stores


def test_trak_groups_reproduce_one_trak_run_and_give_halves(tmp_path):
    """The union of all groups is exactly TRAK on all the models (its formula is separable)."""
    from datamodels.attribution.api import attribute
    from modeldiff.diff.null import TrakGroups, trak_groups, trak_halves

    store = _tiny_stores(tmp_path, 4)[0]
    full = attribute(store, "trak", n_models=4, proj_dim=64, progress=False)
    groups = trak_groups(store, [0, 1, 2, 3], n_groups=2, proj_dim=64)
    np.testing.assert_allclose(groups.scores(), full, rtol=2e-3, atol=1e-5 * np.abs(full).max())
    half = attribute(store, "trak", n_models=2, proj_dim=64, progress=False)  # models 0, 1 = group 0
    np.testing.assert_allclose(groups.scores([0]), half, rtol=2e-3, atol=1e-5 * np.abs(half).max())
    groups.save(tmp_path / "g.npz")
    again = TrakGroups.load(tmp_path / "g.npz")
    assert np.array_equal(again.scores(), groups.scores()) and again.rows == groups.rows
    a1, a2, b1, b2 = next(trak_halves(groups, groups, n_splits=1))
    assert a1.shape == full.shape and not np.allclose(a1, a2)


@pytest.mark.slow
def test_regression_halves_use_disjoint_models(tmp_path):
    from modeldiff.diff.null import regression_halves

    sa, sb = _tiny_stores(tmp_path, 24)
    halves = list(regression_halves(sa, sb, list(range(24)), list(range(24)), n_splits=2, n_lambdas=3))
    assert len(halves) == 2
    n_test, n_train = sa.metadata["dataset"]["n_test"], sa.metadata["dataset"]["n_train"]
    for h in halves:
        assert all(x.shape == (n_test, n_train) and np.isfinite(x).all() for x in h)
