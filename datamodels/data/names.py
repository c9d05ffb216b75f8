"""Names of the built-in datasets (torch-free: recipe help, ``modeldiff demo --dataset`` and
:func:`datamodels.data.dataset.load_dataset` read this one registry, whose entries are the loaders,
imported on first use; anything else is a data target ``"pkg.mod:load"``)."""
from __future__ import annotations

from datamodels.registry import Registry

DATASETS = Registry("dataset")
DATASETS.lazy("digits", "datamodels.data.dataset:load_digits_builtin",
              help="scikit-learn's 8x8 digits, embedded (1,437 train / 360 test)")
DATASETS.lazy("cifar10", "datamodels.data.cifar10:load_cifar10",
              help="CIFAR-10 from a folder (data.data_dir or $MODELDIFF_CIFAR10_DIR)")
