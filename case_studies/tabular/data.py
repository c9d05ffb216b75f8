"""The study's data target: scikit-learn's breast-cancer data as standardised feature vectors.

569 tumours, 30 features, classes malignant (0) / benign (1); a fixed stratified split
(``test_fraction`` held out, ``sklearn.model_selection.train_test_split(random_state=seed)``);
features are z-scored with the training split's mean and standard deviation.
Recipe: ``data: {target: "case_studies.tabular.data:load", kwargs: {test_fraction: 0.2}}``.
"""
from __future__ import annotations

import numpy as np

FEATURES = None  # the 30 feature names, filled on first load


def load(test_fraction: float = 0.2, seed: int = 0):
    """``(x_train [n, 30] float32, y_train [n], x_test, y_test, class_names)``."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    global FEATURES
    bunch = load_breast_cancer()
    FEATURES = [str(f) for f in bunch.feature_names]
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    mean, std = x[tr].mean(0), x[tr].std(0)
    z = ((x - mean) / std).astype(np.float32)
    return z[tr], y[tr], z[te], y[te], [str(c) for c in bunch.target_names]


def feature_names() -> list[str]:
    """The 30 feature names in column order (the study's ``report: {feature_names: ...}``)."""
    from sklearn.datasets import load_breast_cancer

    return [str(f) for f in load_breast_cancer().feature_names]


def feature_index(name: str) -> int:
    """Position of a feature by its scikit-learn name (e.g. ``"worst radius"``)."""
    from sklearn.datasets import load_breast_cancer

    names = [str(f) for f in load_breast_cancer().feature_names]
    if name not in names:
        raise ValueError(f"unknown feature {name!r}; features are {', '.join(names)}")
    return names.index(name)
