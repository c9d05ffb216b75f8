"""Stores: single flipped bits in masks/seeds repaired from the store's seed without retraining;
changed user code noticed and refused unless allowed; a train_fn returning another architecture
refused at train time; a user optimizer that fails leaves no store behind."""
import shutil

import pytest

from datamodels.store.store import Store
from tests.integrity_helpers import error_lines, make_store, run_cli, tree_digest


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("guard_store"), models=4, ensemble=2, save_weights=1)


def _flip(file, byte_from_end):
    data = bytearray(file.read_bytes())
    data[-byte_from_end] ^= 0x01
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("name,byte", [("masks.npy", 5), ("masks.npy", 1), ("seeds.npy", 3)])
def test_repair_restores_a_flipped_bit_in_masks_or_seeds_without_retraining(pristine, tmp_path, name, byte):
    store = shutil.copytree(pristine, tmp_path / "s")
    before = tree_digest(store)
    _flip(store / name, byte)
    code, out, err = run_cli("verify", store)
    assert code == 2 and name in out
    code, out, err = run_cli("verify", store, "--repair")
    assert code == 0, out + err
    assert "restored" in err and "store intact" in out
    assert tree_digest(store) == before  # bit-identical: the intact rows were kept, nothing retrained
    assert len(Store.open(store).valid_indices()) == 4


def _factory_module(folder, activation):
    (folder / "guard_nets.py").write_text(
        "from torch import nn\n\n\n"
        "def make(num_classes=10, input_shape=(1, 8, 8)):\n"
        f"    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.{activation}(), nn.Linear(8, num_classes))\n")


def test_an_edited_model_factory_is_refused_unless_allowed(tmp_path, monkeypatch):
    _factory_module(tmp_path, "ReLU")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {target: 'guard_nets:make'}\nepochs: 1\ntrainer: loop\n")
    store = tmp_path / "s"
    assert run_cli("train", recipe, "--out", store, "--models", 2, "--ensemble-size", 2)[0] == 0
    attr = ["attribute", store, "--models", "1", "--proj-dim", "8", "--quiet"]
    assert run_cli(*attr, "--out", tmp_path / "before.h5")[0] == 0
    _factory_module(tmp_path, "Tanh")  # same parameter shapes, other function
    code, out, err = run_cli(*attr, "--out", tmp_path / "after.h5")
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "guard_nets" in lines[0] and "--allow-changed-code" in lines[0]
    assert not (tmp_path / "after.h5").exists()
    code, out, err = run_cli("train", recipe, "--out", store, "--models", 2, "--ensemble-size", 2)
    assert code == 2 and "changed" in error_lines(err)[0]  # a resume would mix old and new models
    code, out, err = run_cli(*attr, "--out", tmp_path / "after.h5", "--allow-changed-code")
    assert code == 0 and "warning [code_changed]" in err
    assert Store.open(store).code_changes()[0]["module"] == "guard_nets"


def test_a_train_fn_returning_another_architecture_is_refused(tmp_path, monkeypatch):
    (tmp_path / "guard_fn.py").write_text(
        "from torch import nn\n\n\n"
        "def train(model, x, y, seed, device, recipe):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    _factory_module(tmp_path, "ReLU")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {target: 'guard_nets:make'}\nepochs: 1\ntrainer: {target: 'guard_fn:train'}\n")
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "s", "--models", 2)
    lines = error_lines(err)
    assert code != 0 and len(lines) == 1 and "parameters differ from the model target's" in lines[0]


def test_a_failing_user_optimizer_leaves_no_store(tmp_path, monkeypatch):
    (tmp_path / "guard_opt.py").write_text(
        "import torch\n\n\n"
        "class Opt(torch.optim.SGD):\n"
        "    elementwise = True\n\n"
        "    def step(self, closure=None):\n"
        "        raise ValueError('momentum buffer missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {arch: digits_cnn, width: 4}\nepochs: 1\noptim: {name: 'guard_opt:Opt', lr: 0.1}\n")
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "s", "--models", 2)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "momentum buffer missing" in lines[0]
    assert not (tmp_path / "s").exists()


def test_a_train_fn_progress_heading_says_one_model_at_a_time(tmp_path, monkeypatch):
    (tmp_path / "guard_fn_ok.py").write_text(
        "def train(model, x, y, seed, device, recipe):\n"
        "    return model\n")
    _factory_module(tmp_path, "ReLU")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {target: 'guard_nets:make'}\nepochs: 1\ntrainer: {target: 'guard_fn_ok:train'}\n")
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "s", "--models", 3, "--ensemble-size", 3)
    assert code == 0, err
    assert "3 models, one at a time" in err and "models at once" not in err
