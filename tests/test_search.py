"""Confirmatory search on simulated models: a planted reaction is confirmed, identical
algorithms confirm nothing, Holm is right, and the CLI runs on two tiny stores."""
import numpy as np
import torch

from modeldiff.counterfactual.library import generic_candidates
from modeldiff.counterfactual.search import NOTHING, Halves, SearchSettings, holm, search

K, H = 4, 8


def linear_models(seed, n_models, corner_weight):
    """Softmax-linear 'models' on 8x8 images; ``corner_weight`` pushes class 0 when pixel (0,0) is bright."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_models, K, H * H, generator=g, dtype=torch.float64) * 0.3
    w[:, 0, 0] += corner_weight + 0.2 * torch.randn(n_models, generator=g, dtype=torch.float64)

    def predict(x):
        z = torch.einsum("mkp,np->mnk", w, x.double().flatten(1))
        return z.softmax(-1)
    return predict


def make_halves(seed, weight_a, weight_b, n_models=12, n=120):
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.rand(2 * n, 1, H, H, generator=g) * 0.5
    x[:, :, 0, 0] = 0.0
    y = torch.randint(0, K, (2 * n,), generator=g).numpy()
    pa = (linear_models(seed, n_models, weight_a), linear_models(seed + 1, n_models, weight_a))
    pb = (linear_models(seed + 2, n_models, weight_b), linear_models(seed + 3, n_models, weight_b))
    return Halves(pa, pb, (x[:n], x[n:]), (y[:n], y[n:]))


def candidates():
    return [(t, None) for t in generic_candidates((1, H, H), families=("patch", "blur", "contrast", "shift"))]


def test_planted_reaction_is_confirmed_at_its_place():
    res = search(make_halves(0, 3.0, 0.0), candidates(), SearchSettings(n_confirm=4, n_resamples=200))
    ab = res["a_minus_b"]
    assert ab.confirmed, ab.tested
    top = ab.confirmed[0]
    assert top["target_class"] == 0 and "patch" in top["transform"]
    assert top["params"]["loc"] == [0, 0]
    lo = top["effects"]["log-odds"]
    assert lo["a"]["ci_low"] > 0 and lo["diff"]["mean"] > 0 and top["p_adjusted"] < 0.05
    assert set(top["effects"]) == {"log-odds", "probability"}
    assert ab.candidates_tested == len(candidates()) * K
    assert res["b_minus_a"].headline == NOTHING or "loc=0/0" not in res["b_minus_a"].headline


def test_identical_algorithms_confirm_nothing():
    hits = 0
    for seed in range(4):
        res = search(make_halves(10 * seed, 1.0, 1.0), candidates(), SearchSettings(n_confirm=4, n_resamples=200))
        hits += any(d.confirmed for d in res.values())
    assert hits <= 1


def test_holm():
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])


def test_generic_library_excludes_nothing_it_claims():
    grey = generic_candidates((1, 8, 8))
    kinds = {t.name for t in grey}
    assert {"patch", "blur", "contrast", "sharpen", "shift", "lowpass", "highpass"} <= kinds
    rgb = {t.name for t in generic_candidates((3, 32, 32))}
    assert {"tint", "grayscale"} <= rgb
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    for t in grey:
        out = t(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and torch.equal(x, x.clone())


def test_cli_search_on_two_stores(tmp_path, capsys):
    """``modeldiff search`` end to end on two tiny digits stores (4 models each, one epoch)."""
    import json

    from datamodels.data.dataset import load_digits
    from datamodels.runs.launchers import fill_store
    from datamodels.store.store import Store
    from datamodels.training.recipe import load_recipe
    from modeldiff.cli.main import main
    from tests.helpers_train import write_recipe

    data = load_digits()
    paths = []
    for name, lr in (("a", 0.1), ("b", 0.02)):
        recipe = load_recipe(write_recipe(tmp_path, name=f"{name}.yaml", epochs=1, optim__lr=lr))
        store = Store.create_or_resume(tmp_path / name, recipe, data, 4, 0.5, seed=3)
        fill_store(store, ensemble_size=4)
        paths.append(store.path)
    out = tmp_path / "search"
    rc = main(["search", "--store-a", str(paths[0]), "--store-b", str(paths[1]), "--families", "blur,shift",
               "--transform", "patch:pattern=solid,size=2,loc=0/0", "--n-inputs", "60", "--n-confirm", "2",
               "--n-resamples", "100", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "search.json").read_text())
    for d in ("a_minus_b", "b_minus_a"):
        r = doc["directions"][d]
        assert r["candidates_tested"] == 7 * 10 and len(r["tested"]) == 2
        key = (lambda x: -x["confirmation_score"]) if r["ranking_rule"] == "exclusive" else \
            (lambda x: -x["effects"]["log-odds"]["diff"]["mean"])
        assert r["confirmed"] == [x for x in sorted(r["tested"], key=key)
                                  if x["p_adjusted"] < 0.05 and (x["effects"]["log-odds"]["a"]["ci_low"] or 0) > 0]
        assert r["unit"] == "log-odds"
    assert "relies more than" in capsys.readouterr().out
    assert main(["search", "--store-a", str(paths[0]), "--store-b", str(paths[1]), "--out", str(out)]) == 2


def test_effect_ranking_finds_the_reaction_and_keeps_the_whole_ranking():
    cands = candidates()
    res = search(make_halves(0, 3.0, 0.0), cands, SearchSettings(n_confirm=4, n_resamples=200, ranking="effect"))
    ab = res["a_minus_b"].to_dict()
    from modeldiff.counterfactual.ranking import CLASSES_PER_TRANSFORM

    pairs = CLASSES_PER_TRANSFORM * len(cands)  # each transform at its best classes (no fixed target here)
    assert ab["ranking_rule"] == "effect" and len(ab["ranking"]) == pairs
    assert [r["rank"] for r in ab["ranking"]] == list(range(1, pairs + 1))
    assert ab["confirmed"] and ab["confirmed"][0]["params"]["loc"] == [0, 0]
    top = ab["confirmed"][0]
    assert top["discovery_rank"] <= 4 and not top["practical"]["negligible"]
    assert top["practical"]["flips_a"] >= top["practical"]["flips_b"]


def test_discovery_batching_changes_nothing(monkeypatch):
    import modeldiff.counterfactual.search as S

    cands = candidates()[:40]
    settings = SearchSettings(n_confirm=2, n_resamples=100, ranking="effect")
    ref = search(make_halves(3, 2.0, 0.0), cands, settings)["a_minus_b"].to_dict()["ranking"]
    monkeypatch.setattr(S, "DISCOVERY_BATCH", 1)   # one candidate per predictor call
    one = search(make_halves(3, 2.0, 0.0), cands, settings)["a_minus_b"].to_dict()["ranking"]
    assert [r["index"] for r in one] == [r["index"] for r in ref]
    np.testing.assert_allclose([r["score"] for r in one], [r["score"] for r in ref], rtol=1e-9)


def test_holm_runs_over_both_directions_together():
    """A p-value that one direction's Holm (5 tests) would confirm is not confirmed when the family is
    the 10 tests of both directions; a strong one is."""
    from modeldiff.counterfactual.search import judge

    def rec(p, a_low=0.5, diff=1.0):
        return {"p_value": p, "effects": {"log-odds": {"a": {"ci_low": a_low}, "diff": {"mean": diff}}}}

    weak = {"a_minus_b": [rec(0.009)] + [rec(0.5)] * 4, "b_minus_a": [rec(0.6)] * 5}
    assert min(holm([r["p_value"] for r in weak["a_minus_b"]])) < 0.05   # per direction: 0.045
    assert judge(weak, 0.05) == {"a_minus_b": [], "b_minus_a": []}
    assert weak["a_minus_b"][0]["p_adjusted"] == 0.09
    strong = {"a_minus_b": [rec(1e-4, diff=0.5), rec(1e-5, diff=2.0), rec(1e-3, a_low=-0.1)], "b_minus_a": [rec(0.7)]}
    out = judge(strong, 0.05)
    assert [r["p_value"] for r in out["a_minus_b"]] == [1e-5, 1e-4]  # largest difference first; A's CI must be above 0
    assert out["b_minus_a"] == [] and not strong["a_minus_b"][2]["confirmed"]
