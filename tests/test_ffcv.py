"""The FFCV path: betons round-trip the pixels, and a model trained through FFCV is the same model
as one trained from in-memory tensors (same order, same augmentation; float64), and learns.

CI sets ``MODELDIFF_REQUIRE_FFCV=1`` so a missing ffcv fails these tests instead of skipping them.
"""
import sys

import numpy as np
import pytest
import torch

import datamodels.training.ffcv_loader as fl
from datamodels.data.dataset import Dataset
from datamodels.runs.launchers import fill_store
from datamodels.store.store import DONE, Store
from datamodels.training.ensemble_trainer import train_ensemble
from datamodels.training.recipe import recipe_from_dict
from tests._requirements import require_module

FFCV_HINT = "pip install 'modeldiff[ffcv]' (needs pkg-config, libopencv-dev, libturbojpeg0-dev)"


@pytest.fixture(scope="module")
def ffcv():
    threads = torch.get_num_threads()
    module = require_module("ffcv.loader", "MODELDIFF_REQUIRE_FFCV", FFCV_HINT)
    torch.set_num_threads(threads)  # importing ffcv sets it to 1
    yield module
    assert torch.get_num_threads() == threads, "the FFCV path changed torch's thread count"


def _rgb8(n_train=300, n_test=40, seed=0) -> Dataset:
    """Random 8-bit RGB images (stored as uint8 in a beton, like CIFAR-10's)."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 256, (n_train + n_test, 3, 8, 8), dtype=np.uint8)).float() / 255
    y = rng.integers(0, 4, n_train + n_test)
    return Dataset.from_tensors(x[:n_train], y[:n_train], x[n_train:], y[n_train:], name="rgb8")


def _read_beton(path):
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.ndarray import NDArrayDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    loader = Loader(str(path), batch_size=100, num_workers=torch.get_num_threads(), order=OrderOption.SEQUENTIAL,
                    drop_last=False,
                    pipelines={"image": [NDArrayDecoder(), ToTensor()], "label": [IntDecoder(), ToTensor()]})
    xs, ys = zip(*[(x.clone(), y.clone()) for x, y in loader])
    return torch.cat(xs), torch.cat(ys).view(-1)


@pytest.mark.slow
def test_beton_round_trips_images_and_labels(ffcv, digits, tmp_path):
    # digits' pixels (k/16) are not multiples of 1/255: stored as float32
    path = fl.write_beton(digits, tmp_path / "digits.beton")
    x, y = _read_beton(path)
    assert x.dtype == torch.float32 and torch.equal(x, digits.x_train) and torch.equal(y, digits.y_train)
    # 8-bit RGB pixels (CIFAR-like) are stored as uint8, losslessly
    rgb = _rgb8(n_train=70, n_test=5)
    x, y = _read_beton(fl.write_beton(rgb, tmp_path / "rgb.beton"))
    assert x.dtype == torch.uint8 and torch.equal(x.float() / 255, rgb.x_train) and torch.equal(y, rgb.y_train)
    x, _ = _read_beton(fl.write_beton(rgb, tmp_path / "rgb_test.beton", split="test"))
    assert torch.equal(x.float() / 255, rgb.x_test)


def test_interleave_puts_each_steps_batches_side_by_side():
    orders = np.arange(2 * 5).reshape(2, 5)  # model 0: 0..4, model 1: 5..9, batch 2 -> steps of 4
    assert fl.interleave(orders, 2).tolist() == [0, 1, 5, 6, 2, 3, 7, 8, 4, 9]


@pytest.mark.slow
@pytest.mark.parametrize("data_name, arch", [("digits", "digits_cnn"), ("rgb8", "linear")])
def test_ffcv_training_equals_tensor_training_float64(ffcv, digits, tmp_path, data_name, arch):
    data = digits if data_name == "digits" else _rgb8()
    recipe = recipe_from_dict({
        "model": {"arch": arch, "width": 4}, "precision": "float64", "epochs": 2, "batch_size": 50,
        "optim": {"lr": 0.05}, "augment": {"flip": True, "translate": 1, "cutout": 2}, "loader": "ffcv",
    })
    store = Store.create_or_resume(tmp_path / "store", recipe, data, 3, 0.5, seed=1)  # m % 50 != 0: a short last step
    masks, seeds = torch.from_numpy(np.array(store.masks)), [int(s) for s in store.seeds]
    batches = fl.ffcv_batch_factory(store, data, masks, seeds, "cpu")
    assert batches is not None and (tmp_path / "store" / "data_train.beton").is_file()
    x, y = next(iter(batches(0)))
    x2, y2 = next(iter(batches(0)))  # an epoch's batches depend on the epoch alone, not on earlier calls
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (3, 50, *data.image_shape) and x.dtype == torch.float64
    assert y.shape == (3, 50) and y.dtype == torch.int64
    via_ffcv = train_ensemble(recipe, data, masks, seeds, batches=batches)
    via_tensors = train_ensemble(recipe, data, masks, seeds)
    torch.testing.assert_close(via_ffcv.test_logits, via_tensors.test_logits, rtol=0, atol=1e-9)
    torch.testing.assert_close(via_ffcv.train_margins, via_tensors.train_margins, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_store_trained_through_ffcv_learns_and_reuses_its_beton(ffcv, digits, tmp_path):
    recipe = recipe_from_dict({"model": {"arch": "digits_cnn", "width": 8}, "epochs": 4, "batch_size": 32,
                               "optim": {"lr": 0.05}, "augment": {"translate": 1}, "loader": "ffcv"})
    store = Store.create_or_resume(tmp_path / "store", recipe, digits, 4, 0.5, seed=0)
    summary = fill_store(store, ensemble_size=2)  # two chunks: the second reuses the beton
    assert summary["done"] == 4 and summary["pending"] == 0
    store = Store.open(tmp_path / "store")
    assert (store.status == DONE).all() and float(np.min(store.accuracy)) > 0.5  # chance is 0.1
    beton = tmp_path / "store" / "data_train.beton"
    mtime = beton.stat().st_mtime_ns
    assert fl.ensure_beton(beton, digits) == beton and beton.stat().st_mtime_ns == mtime


def test_missing_ffcv_gives_one_notice_and_the_portable_path(digits, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # makes `import ffcv` raise ImportError
    monkeypatch.setattr(fl, "_notice_given", False)
    recipe = recipe_from_dict({"model": {"arch": "linear"}, "epochs": 1, "loader": "ffcv"})
    store = Store.create_or_resume(tmp_path / "store", recipe, digits, 2, 0.5, seed=0)
    masks = torch.from_numpy(np.array(store.masks))
    assert fl.ffcv_batch_factory(store, digits, masks, [1, 2], "cpu") is None
    assert fl.ffcv_batch_factory(store, digits, masks, [1, 2], "cpu") is None
    assert caplog.text.count("ffcv is not installed; using the portable in-memory loader") == 1  # a logged warning
    assert fill_store(store)["done"] == 2  # the runner falls back to the in-memory loader
