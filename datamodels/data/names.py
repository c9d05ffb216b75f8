"""Names of the built-in datasets (torch-free: recipe help, ``modeldiff demo --dataset`` and
:func:`datamodels.data.dataset.load_dataset` read this one registry; anything else is a data
target ``"pkg.mod:load"``)."""
from __future__ import annotations

from datamodels.registry import Registry

DATASETS = Registry("dataset")
DATASETS.register("digits", "scikit-learn's 8x8 digits, embedded (1,437 train / 360 test)")
DATASETS.register("cifar10", "CIFAR-10 from a folder (data.data_dir or $MODELDIFF_CIFAR10_DIR)")
