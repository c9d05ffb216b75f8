"""Data: datasets as tensors with labels, class names and an identity hash.

Contract: :class:`Dataset` (any per-example shape), :func:`load_dataset` (built-in names or a
user target ``"pkg.mod:load"``). Image pipelines (CIFAR-10 folders, FFCV) live beside it.
"""
from datamodels.data.dataset import Dataset, load_dataset, load_digits

__all__ = ["Dataset", "load_dataset", "load_digits"]
