"""Your own data: any per-example shape, data targets recorded by the store and reloaded by every
command (from any working directory), fingerprint checks, and TRAK on tabular / token-id data."""
import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from datamodels.base.errors import UserError
from datamodels.data.dataset import Dataset, load_digits, load_from_target
from tests.helpers_train import cli, the_error_line

USER_MODULE = '''
import numpy as np
import torch
from torch import nn

SHIFT = {shift}


def load(n_train=120, n_test=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, 3))
    x = rng.normal(size=(n_train + n_test, d)) + SHIFT
    y = (x @ w).argmax(1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], ["a", "b", "c"]


def bump(x):
    return x + 1.0


def make_mlp(input_shape, num_classes, hidden=8):
    (d,) = input_shape
    return nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
'''

RECIPE = '''
name: own-data
data: {{target: "{module}:load", kwargs: {{n_train: 120}}}}
model: {{target: "{module}:make_mlp", kwargs: {{hidden: 8}}}}
optim: {{name: adam, lr: 0.01, weight_decay: 0.0, schedule: constant}}
trainer: {trainer}
batch_size: 32
epochs: 2
'''


def _user_package(folder, module="h2_user_data", shift=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(USER_MODULE.format(shift=shift))
    return module


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """A 4-model store made by `modeldiff train` from a recipe naming only user targets."""
    root = tmp_path_factory.mktemp("own")
    code = root / "code"
    module = _user_package(code)
    (code / "recipe.yaml").write_text(RECIPE.format(module=module, trainer="loop"))
    r = cli("train", "recipe.yaml", "--out", root / "store", "--models", "4", "--ensemble-size", "4", cwd=code)
    assert r.returncode == 0, r.stderr[-2000:]
    return root, code, module


def test_store_records_the_data_target_and_its_folder(trained_store):
    root, code, module = trained_store
    meta = json.loads((root / "store" / "metadata.json").read_text())
    rec = meta["dataset"]["target"]
    assert {k: rec[k] for k in ("target", "path")} == {"target": f"{module}:load", "path": str(code.resolve())}
    assert rec["file"] == str((code / f"{module}.py").resolve()) and len(rec["sha256"]) == 64  # code fingerprint
    assert meta["dataset"]["input_shape"] == [6] and meta["dataset"]["x_dtype"] == "float32"
    assert meta["dataset"]["mean"] == []  # per-channel statistics are for images only
    assert meta["recipe"]["data"]["kwargs"] == {"n_train": 120}


def test_attribute_reopens_the_store_from_another_folder(trained_store, tmp_path):
    root, _, _ = trained_store
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = cli("attribute", root / "store", "--out", "scores.h5", "--proj-dim", "16", "--quiet", cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-2000:]
    from datamodels.attribution.influence_io import read_influence

    inf = read_influence(elsewhere / "scores.h5")
    assert inf.scores.shape == (40, 120) and np.isfinite(inf.scores).all()


def test_counterfactual_cli_with_a_user_transform_from_another_folder(trained_store, tmp_path):
    root, _, module = trained_store
    r = cli("counterfactual", "--store-a", root / "store", "--store-b", root / "store", "--transform",
            f"{module}:bump", "--target-class", "c", "--n-resamples", "200", "--out", "cf", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    effects = json.loads((tmp_path / "cf" / "effects.json").read_text())
    assert effects["tests"][0]["transform"] == f"{module}:bump" and effects["target_name"] == "c"
    assert abs(effects["tests"][0]["diff"]["mean"]) < 1e-9  # the same models on both sides


def test_fingerprint_mismatch_is_one_line(trained_store, tmp_path):
    root, code, module = trained_store
    source = (code / f"{module}.py").read_text()
    try:
        (code / f"{module}.py").write_text(source.replace("SHIFT = 0.0", "SHIFT = 1.0"))
        # past the changed-code guard (which refuses first without the flag), to the data's fingerprint check
        r = cli("attribute", root / "store", "--out", tmp_path / "s.h5", "--quiet", "--allow-changed-code",
                cwd=tmp_path)
    finally:
        (code / f"{module}.py").write_text(source)
    assert r.returncode == 2
    err = the_error_line(r.stderr)
    assert err.startswith("error: data target") and "fingerprint" in err, r.stderr
    assert not (tmp_path / "s.h5").exists()


def test_unimportable_data_target_is_one_line(trained_store, tmp_path):
    root, code, module = trained_store
    moved = code / f"{module}.py.moved"
    (code / f"{module}.py").rename(moved)
    try:
        r = cli("attribute", root / "store", "--out", tmp_path / "s.h5", "--quiet", cwd=tmp_path)
    finally:
        moved.rename(code / f"{module}.py")
    assert r.returncode == 2
    err = the_error_line(r.stderr)
    assert "cannot import module" in err and module in err, r.stderr


def test_python_made_store_says_how_to_make_it_reopenable(tmp_path):
    from datamodels.store.store import Store
    from datamodels.training.recipe import recipe_from_dict

    d = load_digits()
    data = Dataset.from_tensors(d.x_train[:50], d.y_train[:50], d.x_test[:20], d.y_test[:20], name="mine")
    Store.create_or_resume(tmp_path / "s", recipe_from_dict({"data": {"name": "mine"}}), data, 2, 0.5, 0)
    with pytest.raises(UserError, match=r"data target .*Store.open\(path, dataset=...\)") as err:
        Store.open(tmp_path / "s").load_dataset()
    assert "\n" not in str(err.value)
    assert Store.open(tmp_path / "s", dataset=data).load_dataset() is data


def test_dataset_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    tab = Dataset.from_tensors(rng.normal(size=(10, 5)), np.arange(10) % 2, rng.normal(size=(4, 5)), [0, 1, 0, 1])
    assert tab.x_train.dtype == torch.float32 and tab.input_shape == (5,) and not tab.is_image
    assert tab.mean == () and tab.std == () and tab.num_classes == 2
    tok = Dataset.from_tensors(torch.randint(0, 50, (10, 7)), torch.arange(10) % 3, torch.randint(0, 50, (4, 7)),
                               torch.tensor([0, 1, 2, 0]))
    assert tok.x_train.dtype == torch.int64 and tok.input_shape == (7,) and tok.x_dtype == "int64"
    img = load_digits()
    assert img.is_image and img.input_shape == img.image_shape == (1, 8, 8) and len(img.mean) == 1
    assert img.identity.startswith("c167699e72e2")  # the digits fingerprint of earlier releases
    # same bytes, other shape or dtype: another fingerprint
    flat = Dataset.from_tensors(tab.x_train.reshape(10, 5, 1), tab.y_train, tab.x_test.reshape(4, 5, 1), tab.y_test)
    assert flat.identity != tab.identity
    with pytest.raises(UserError, match="same per-example shape"):
        Dataset.from_tensors(rng.normal(size=(10, 5)), np.zeros(10), rng.normal(size=(4, 6)), np.zeros(4))
    with pytest.raises(UserError, match="numeric array"):
        Dataset.from_tensors([["a"]] * 3, [0, 1, 0], [["b"]], [0])


def test_data_target_errors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "h2_bad_loaders.py").write_text(textwrap.dedent('''
        def wrong_type():
            return 3
        def raises(n=1):
            raise RuntimeError("disk on fire")
        def short():
            return [1], [0]
    '''))
    with pytest.raises(UserError, match="returned int: return a Dataset"):
        load_from_target("h2_bad_loaders:wrong_type")
    with pytest.raises(UserError, match="raised RuntimeError: disk on fire"):
        load_from_target("h2_bad_loaders:raises")
    with pytest.raises(UserError, match="does not take size"):
        load_from_target("h2_bad_loaders:raises", {"size": 3})
    with pytest.raises(UserError, match="of length 2"):
        load_from_target("h2_bad_loaders:short")
    with pytest.raises(UserError, match="cannot import module"):
        load_from_target("h2_no_such_module:load")


class TokenBag(nn.Module):
    def __init__(self, vocab=30, dim=6, k=3):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, k)

    def forward(self, x):
        return self.head(self.emb(x).mean(1))


def test_trak_on_token_ids_and_tabular_data():
    from datamodels.attribution.trak import TRAK

    torch.manual_seed(0)
    tok = torch.randint(0, 30, (60, 5))
    y = torch.randint(0, 3, (60,))
    models = [(i, TokenBag().eval()) for i in range(2)]
    scores = TRAK(proj_dim=16, progress=False).run(models, tok[:40], y[:40], tok[40:], y[40:])
    assert scores.shape == (20, 40) and np.isfinite(scores).all() and np.abs(scores).max() > 0
    x = torch.randn(60, 4)
    mlp = [(i, nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).eval()) for i in range(2)]
    scores = TRAK(proj_dim=16, progress=False).run(mlp, x[:40], y[:40], x[40:], y[40:])
    assert scores.shape == (20, 40) and np.isfinite(scores).all()


class MarginAgain:
    """The default output written as a user object (must give identical scores)."""

    def output(self, out, y):
        from datamodels.margins import margin

        return margin(out, y)

    def out_to_loss(self, out, y):
        return 1 - out.softmax(-1).gather(1, y[:, None]).squeeze(1)


def _log_prob(out, y):
    logp = out.log_softmax(-1).gather(1, y[:, None]).squeeze(1)
    return logp, torch.ones_like(logp)


def test_model_output_is_pluggable():
    from datamodels.attribution.trak import TRAK

    torch.manual_seed(1)
    x, y = torch.randn(50, 4, dtype=torch.float64), torch.randint(0, 3, (50,))
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()

    def run(**kw):
        est = TRAK(proj_dim=8, dtype=torch.float64, progress=False, **kw)
        return est.run([(0, net)], x[:35], y[:35], x[35:], y[35:]), est

    default, est = run()
    same, _ = run(model_output=MarginAgain())
    np.testing.assert_array_equal(default, same)
    assert est.params()["model_output"] == "margin"
    other, est = run(model_output=_log_prob)
    assert est.params()["model_output"].endswith(":_log_prob")
    assert not np.allclose(other, default)
    with pytest.raises(UserError, match="model_output"):
        TRAK(model_output="no_such_output")


def test_unknown_setting_is_named(tmp_path):
    from datamodels.attribution.api import check_settings

    with pytest.raises(UserError, match=r"unknown trak setting proj_dimm: allowed are proj_dim, "):
        check_settings("trak", {"proj_dimm": 3})
    with pytest.raises(UserError, match=r"unknown datamodels setting"):
        check_settings("datamodels", {"proj_dim": 3})
    with pytest.raises(UserError, match="bad trak setting: lambda_reg"):
        check_settings("trak", {"lambda_reg": -1.0})


def test_uint8_images_become_floats_in_unit_range():
    from datamodels.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 3, 4, 4), dtype=np.uint8)
    y = np.arange(20) % 2
    d = Dataset.from_tensors(x, y, x[:6], y[:6])
    assert d.x_train.dtype == torch.float32 and d.is_image
    assert float(d.x_train.max()) <= 1.0 and torch.allclose(d.x_train * 255, torch.from_numpy(x).float())
