"""CIFAR-10 loading: layouts, deterministic subsets, the decoded-pixel cache, clear errors.

Layout, cache and error tests run on small synthetic folders (PNG is lossless, so pixels are
compared exactly). The real-data tests read ``MODELDIFF_CIFAR10_DIR`` (CI sets it; they fail,
not skip, when it is set and wrong).
"""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import datamodels.data.cifar10 as c10
from datamodels.base.errors import UserError
from datamodels.data.cifar10 import load_cifar10
from datamodels.data.dataset import load_dataset
from tests._requirements import require_cifar10_dir

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDIFF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _image_folder(root, classes=("cat", "ant"), n_train=4, n_test=2, seed=0):
    """PNG ImageFolder tree; returns {split: {class: uint8[n, 3, 8, 8] in sorted-file order}}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in (("train", n_train), ("test", n_test)):
        pixels[split] = {}
        for name in classes:
            (root / split / name).mkdir(parents=True)
            imgs = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
            for k, img in enumerate(imgs[::-1]):  # written in reverse: the loader must sort by name
                Image.fromarray(img).save(root / split / name / f"{n - 1 - k:03d}.png")
            pixels[split][name] = imgs.transpose(0, 3, 1, 2)
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    return pixels


def test_image_folder_layout_labels_order_and_subsets(tmp_path):
    pixels = _image_folder(tmp_path / "data")
    d = load_cifar10(tmp_path / "data")
    assert d.name == "cifar10" and d.class_names == ["ant", "cat"]  # sorted folder names
    assert d.x_train.shape == (8, 3, 8, 8) and d.x_train.dtype == torch.float32
    assert d.y_train.tolist() == [0] * 4 + [1] * 4 and d.y_test.tolist() == [0, 0, 1, 1]
    expected = np.concatenate([pixels["train"]["ant"], pixels["train"]["cat"]])
    assert torch.equal(d.x_train, torch.from_numpy(expected).float() / 255)
    sub = load_cifar10(tmp_path / "data", per_class_train=3, per_class_test=1)
    assert sub.y_train.tolist() == [0] * 3 + [1] * 3
    assert torch.equal(sub.x_train[:3], d.x_train[:3]) and torch.equal(sub.x_train[3:], d.x_train[4:7])
    assert sub.identity != d.identity


def test_cache_hit_and_invalidation(tmp_path, private_cache, monkeypatch):
    _image_folder(tmp_path / "data")
    first = load_cifar10(tmp_path / "data")
    assert len(list(private_cache.glob("cifar10-*.npy"))) == 2  # train and test

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds these files")

    real_decode = c10.decode_files
    monkeypatch.setattr(c10, "decode_files", no_decoding)
    second = load_cifar10(tmp_path / "data")
    assert second.identity == first.identity and torch.equal(second.x_test, first.x_test)

    # a changed file changes the key: decoded again, and the new pixels are seen
    target = tmp_path / "data" / "test" / "cat" / "000.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(target)
    os.utime(target, ns=(1, 1))
    calls = []
    monkeypatch.setattr(c10, "decode_files", lambda files, **kw: calls.append(len(files)) or real_decode(files, **kw))
    third = load_cifar10(tmp_path / "data")
    assert calls == [4]  # only the test split changed
    assert third.identity != first.identity and float(third.x_test[2].abs().sum()) == 0.0


def test_torchvision_layout(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    rng = np.random.default_rng(1)
    folder = tmp_path / "tv" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = {"train": rng.permutation(np.repeat(np.arange(10), 3)), "test": np.repeat(np.arange(10), 2)}
    pixels = {s: rng.integers(0, 256, (len(y), 3 * 32 * 32), dtype=np.uint8) for s, y in labels.items()}
    for k in range(5):  # torchvision reads data_batch_1..5; the first holds everything
        rows = slice(None) if k == 0 else slice(0, 0)
        batch = {"data": pixels["train"][rows], "labels": labels["train"][rows].tolist()}
        (folder / f"data_batch_{k + 1}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": pixels["test"], "labels": labels["test"].tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR10_CLASSES}))
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args: True)  # md5 sums are of the real files

    d = load_cifar10(folder, per_class_train=2)  # the batches folder itself, or its parent, both work
    keep = np.concatenate([np.flatnonzero(labels["train"] == c)[:2] for c in range(10)])
    keep.sort()
    assert d.class_names == CIFAR10_CLASSES and d.n_train == 20 and d.n_test == 20
    assert torch.equal(d.y_train, torch.from_numpy(labels["train"][keep]))
    assert torch.equal(d.x_train, torch.from_numpy(pixels["train"][keep]).view(-1, 3, 32, 32).float() / 255)
    assert load_cifar10(tmp_path / "tv", per_class_train=2).identity == d.identity


def test_errors_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELDIFF_CIFAR10_DIR", raising=False)
    with pytest.raises(UserError, match="MODELDIFF_CIFAR10_DIR"):
        load_cifar10()
    with pytest.raises(UserError, match="MODELDIFF_CIFAR10_DIR"):
        load_dataset("cifar10")
    with pytest.raises(UserError, match="does not exist"):
        load_cifar10(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither train/ and test/"):
        load_cifar10(tmp_path / "empty")
    _image_folder(tmp_path / "odd")
    (tmp_path / "odd" / "test" / "bee").mkdir()
    with pytest.raises(UserError, match="same"):
        load_cifar10(tmp_path / "odd")
    with pytest.raises(UserError, match="per_class_train"):
        load_cifar10(tmp_path / "odd", per_class_train=0)


# -- the real files (MODELDIFF_CIFAR10_DIR) ---------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_dir():
    return require_cifar10_dir()


@pytest.mark.slow
def test_real_subset_shapes_labels_and_pixels(cifar_dir, monkeypatch):
    monkeypatch.setenv("MODELDIFF_CIFAR10_DIR", str(cifar_dir))
    d = load_dataset("cifar10", per_class_train=20, per_class_test=10)  # the folder comes from the env var
    assert d.name == "cifar10" and d.class_names == CIFAR10_CLASSES
    assert d.x_train.shape == (200, 3, 32, 32) and d.x_test.shape == (100, 3, 32, 32)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    assert d.y_train.tolist() == np.repeat(np.arange(10), 20).tolist()
    assert d.y_test.tolist() == np.repeat(np.arange(10), 10).tolist()
    # the first training image is the first sorted file of the first class, RGB, channels first
    first = sorted(os.listdir(cifar_dir / "train" / "airplane"))[0]
    rgb = np.asarray(Image.open(cifar_dir / "train" / "airplane" / first).convert("RGB"))
    assert torch.equal(d.x_train[0], torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255)
    assert len(set(d.mean)) == 3 and all(0 < s < 0.5 for s in d.std)


@pytest.mark.slow
def test_real_subset_is_deterministic_with_a_stable_identity(cifar_dir, private_cache, tmp_path, monkeypatch):
    a = load_cifar10(cifar_dir, per_class_train=20, per_class_test=10)  # decodes
    b = load_cifar10(cifar_dir, per_class_train=20, per_class_test=10)  # cache hit
    monkeypatch.setenv("MODELDIFF_CACHE_DIR", str(tmp_path / "other-cache"))
    c = load_cifar10(cifar_dir, per_class_train=20, per_class_test=10)  # decoded again elsewhere
    assert a.identity == b.identity == c.identity
    assert torch.equal(a.x_train, c.x_train) and torch.equal(a.y_test, c.y_test)
    assert len(list(private_cache.glob("cifar10-*.npy"))) == 2
    bigger = load_cifar10(cifar_dir, per_class_train=21, per_class_test=10)
    assert bigger.identity != a.identity
    assert torch.equal(bigger.x_train[bigger.y_train == 3][:20], a.x_train[a.y_train == 3])
