"""The store adapter and `modeldiff counterfactual` on two small real stores (digits, CPU)."""
import json

import numpy as np
import pytest
import torch

from modeldiff.cli.main import main
from modeldiff.counterfactual.effects import counterfactual_effects, store_predictor
from modeldiff.counterfactual.transforms import PatchPaste
from tests.helpers_train import the_error_line


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from datamodels.data.dataset import load_digits
    from datamodels.runs.launchers import fill_store
    from datamodels.store.store import Store
    from datamodels.training.recipe import load_recipe
    from tests.helpers_train import write_recipe

    root = tmp_path_factory.mktemp("cf")
    data = load_digits()
    paths = []
    for name, lr in (("a", 0.1), ("b", 0.02)):
        recipe = load_recipe(write_recipe(root, name=f"{name}.yaml", epochs=1, optim__lr=lr))
        store = Store.create_or_resume(root / name, recipe, data, 4, 0.5, seed=3)
        fill_store(store, ensemble_size=4)
        paths.append(store.path)
    return paths


def test_adapter_matches_store_predict_proba(stores):
    from datamodels.store.store import Store
    store = Store.open(stores[0])
    x = store.load_dataset().x_test[:16]
    by_path = store_predictor(stores[0])(x)
    by_store = store_predictor(store, indices=[0, 2])(x)
    assert by_path.shape == (4, 16, 10)
    torch.testing.assert_close(by_path.sum(-1), torch.ones(4, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(by_store, store.predict_proba(x, indices=[0, 2]))
    r = counterfactual_effects(store_predictor(stores[0]), store_predictor(stores[1]), x,
                               PatchPaste(pattern="texture", size=3, loc="random"), 0, n_resamples=199)
    assert r.effects_a.shape == (4,) and r.effects_b.shape == (4,)
    assert np.isfinite(r.comparison.diff.mean)


def test_counterfactual_cli_end_to_end(stores, tmp_path, capsys):
    out = tmp_path / "cf"
    code = main(["counterfactual", "--store-a", str(stores[0]), "--store-b", str(stores[1]),
                 "--transform", "patch:pattern=texture,size=2,loc=random", "--transform", "blur:sigma=1",
                 "--target-class", "0", "--source-classes", "1,7", "--sizes", "1,3", "--max-inputs", "40",
                 "--n-resamples", "199", "--names", "fast,slow", "--out", str(out)])
    assert code == 0
    assert "patch(pattern=texture" in capsys.readouterr().out
    effects = json.loads((out / "effects.json").read_text())
    assert effects["n_inputs"] == 40 and effects["source_classes"] == [1, 7]
    assert len(effects["tests"]) == 2 and len(effects["tests"][0]["effects_a"]) == 4
    assert [row["size"] for row in effects["sweeps"][0]["table"]] == [1, 3]
    html = (out / "report.html").read_text()
    assert "Counterfactual tests" in html and "Patch-size sweep 0" in html


@pytest.mark.parametrize("args,message", [
    (["--transform", "sepia"], "--transform: unknown transform 'sepia'"),
    (["--target-class", "12"], "--target-class 12 is out of range"),
    (["--target-class", "zebra"], "neither a class index nor one of"),
    (["--sizes", "2,x"], "--sizes must be comma-separated integers"),
    (["--store-b", "/nonexistent/store"], "--store-b /nonexistent/store is not a folder"),
])
def test_counterfactual_cli_user_errors(stores, tmp_path, capsys, args, message):
    base = {"--store-a": str(stores[0]), "--store-b": str(stores[1]), "--transform": "patch:size=2",
            "--target-class": "0", "--out": str(tmp_path / "o")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["counterfactual"] + [v for kv in base.items() for v in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in the_error_line(err), err
    assert not (tmp_path / "o").exists()


def test_diff_cli_takes_images_and_class_names_from_a_store(stores, tmp_path, capsys):
    from datamodels.store.store import Store
    data = Store.open(stores[0]).load_dataset()
    rng = np.random.default_rng(0)
    shape = (data.n_test, data.n_train)
    np.save(tmp_path / "a.npy", rng.normal(size=shape).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.normal(size=shape).astype(np.float32))
    out = tmp_path / "diff"
    assert main(["diff", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--components", "2",
                 "--out", str(out), "--store", str(stores[0]), "--top", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["components"]) == 2
    assert (out / "figures" / "component_0.png").stat().st_size > 0
    np.save(tmp_path / "c.npy", rng.normal(size=(5, data.n_train)).astype(np.float32))
    np.save(tmp_path / "d.npy", rng.normal(size=(5, data.n_train)).astype(np.float32))
    assert main(["diff", str(tmp_path / "c.npy"), str(tmp_path / "d.npy"), "--components", "2",
                 "--out", str(tmp_path / "bad"), "--store", str(stores[0])]) == 2
    assert "does not match the scores (5 x" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
