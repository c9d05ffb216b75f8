"""The digits split is fixed, stratified and deterministic; user tensors are accepted as they are."""
import numpy as np
import pytest
import torch

from datamodels.base.errors import UserError
from datamodels.data.dataset import Dataset, load_dataset, load_digits


def test_digits_split_is_deterministic_and_stratified():
    a, b = load_digits(), load_digits()
    assert a.identity == b.identity
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert (a.n_train, a.n_test) == (1437, 360)
    assert a.x_train.shape[1:] == (1, 8, 8) and 0 <= a.x_train.min() and a.x_train.max() <= 1
    train_share = np.bincount(a.y_train.numpy(), minlength=10) / a.n_train
    test_share = np.bincount(a.y_test.numpy(), minlength=10) / a.n_test
    assert np.abs(train_share - test_share).max() < 0.01


def test_identity_changes_with_data():
    d = load_digits()
    x = d.x_train.clone()
    x[0, 0, 0, 0] += 0.5
    other = Dataset.from_tensors(x, d.y_train, d.x_test, d.y_test, d.class_names, name="digits")
    assert other.identity != d.identity


def test_from_tensors_checks_shapes():
    with pytest.raises(UserError, match="same per-example shape"):  # any shape, but one for both splits
        Dataset.from_tensors(np.zeros((4, 8, 8)), [0, 1, 0, 1], np.zeros((2, 1, 8, 8)), [0, 1])
    with pytest.raises(UserError, match=r"\[n, \*input_shape\]"):
        Dataset.from_tensors(np.zeros(4), [0, 1, 0, 1], np.zeros(2), [0, 1])
    with pytest.raises(UserError, match="labels"):
        Dataset.from_tensors(np.zeros((4, 1, 8, 8)), [0, 1, 0], np.zeros((2, 1, 8, 8)), [0, 1])
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("mnist")
