"""Datasets behind one small interface: tensors in [0, 1], labels, class names, an identity hash.

``digits`` (the embedded default) is scikit-learn's 1,797 handwritten 8x8 digits with a fixed,
stratified split: 20 % test, ``sklearn.model_selection.train_test_split(random_state=0)``,
giving 1,437 training and 360 test images. ``cifar10`` reads an ImageFolder tree of JPEG/PNG files
(``train/<class>/*.jpg``, ``test/<class>/*.jpg``) or torchvision's own CIFAR-10 folder.
Any other data: :meth:`Dataset.from_tensors`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from modeldiff.errors import UserError

DIGITS_TEST_FRACTION = 0.2  # share of each class held out for testing
DIGITS_SPLIT_SEED = 0  # fixed: the split is part of the dataset's identity


@dataclass
class Dataset:
    """An image classification dataset held as tensors.

    Attributes:
        x_train: ``[n_train, C, H, W]`` float32 in [0, 1].
        y_train: ``[n_train]`` int64 class indices.
        x_test, y_test: likewise for the test split.
        class_names: ``K`` names.
        identity: sha256 hex digest of the pixels, labels and name (changes when the data does).
        mean, std: per-channel statistics of ``x_train`` (the model normalises with them).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    identity: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4:
                raise UserError(f"x_{split} must be [n, C, H, W]; got shape {tuple(x.shape)}")
            if len(x) != len(y):
                raise UserError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)} labels")
        self.x_train = self.x_train.float().contiguous()
        self.x_test = self.x_test.float().contiguous()
        self.y_train = self.y_train.long().contiguous()
        self.y_test = self.y_test.long().contiguous()
        k = int(max(self.y_train.max(), self.y_test.max())) + 1
        if not self.class_names:
            self.class_names = [str(i) for i in range(k)]
        if len(self.class_names) < k:
            raise UserError(f"labels go up to {k - 1} but only {len(self.class_names)} class names were given")
        if not self.mean:
            self.mean = tuple(self.x_train.mean(dim=(0, 2, 3)).tolist())
            self.std = tuple(self.x_train.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        if not self.identity:
            self.identity = _identity(self)

    @classmethod
    def from_tensors(cls, x_train, y_train, x_test, y_test, class_names=None, name="custom") -> "Dataset":
        """Wrap user tensors (``[n, C, H, W]`` in [0, 1] and integer labels) as a Dataset."""
        as_t = lambda a: torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
        return cls(name, as_t(x_train), as_t(y_train), as_t(x_test), as_t(y_test), list(class_names or []))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _identity(ds: Dataset) -> str:
    h = hashlib.sha256(ds.name.encode())
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def load_digits() -> Dataset:
    """scikit-learn's digits: 1,437 train / 360 test, ``[n, 1, 8, 8]`` in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED)
    tr, te = np.sort(tr), np.sort(te)
    return Dataset("digits", torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]),
                   torch.from_numpy(y[te]), [str(d) for d in range(10)])


def load_dataset(name: str, data_dir: str | None = None, **options) -> Dataset:
    """Load a dataset by name: ``digits`` or ``cifar10`` (see :mod:`datamodels.data.cifar10`)."""
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        from datamodels.data.cifar10 import load_cifar10

        return load_cifar10(data_dir, **options)
    raise UserError(f"unknown dataset {name!r}: use 'digits' or 'cifar10', or Dataset.from_tensors for your own data")
