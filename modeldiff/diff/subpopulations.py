"""Distinguishing subpopulations: who carries each ModelDiff component.

For each component: the training examples with the largest positive and the largest
negative weights, the test examples with the largest |projection|, and the class
composition of each group (when labels are given).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ClassCount:
    """How many examples of one class a group holds, and that share of the group."""
    label: int
    name: str
    count: int
    fraction: float


@dataclass
class Subpopulation:
    """The examples behind one component (all index arrays point into the original splits)."""
    component: int
    train_positive: np.ndarray          # [n_train_top] indices, largest weights first
    train_positive_weights: np.ndarray  # [n_train_top]
    train_negative: np.ndarray          # [n_train_top] indices, most negative weights first
    train_negative_weights: np.ndarray
    test_top: np.ndarray                # [n_test_top] indices, largest |projection| first
    test_top_projections: np.ndarray    # signed projections of those test rows
    train_positive_classes: list[ClassCount] = field(default_factory=list)
    train_negative_classes: list[ClassCount] = field(default_factory=list)
    test_top_classes: list[ClassCount] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        return out


def class_composition(labels, class_names=None) -> list[ClassCount]:
    """Counts per class among ``labels`` (1-D ints), most frequent first (ties: smaller label first)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return []
    values, counts = np.unique(labels, return_counts=True)
    order = np.lexsort((values, -counts))
    names = (lambda c: str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c))
    return [ClassCount(int(values[i]), names(int(values[i])), int(counts[i]), counts[i] / labels.size)
            for i in order]


def subpopulations(fit_or_components, test_projections=None, *, n_train_top: int = 16,
                   n_test_top: int = 16, train_labels=None, test_labels=None,
                   class_names=None) -> list[Subpopulation]:
    """One `Subpopulation` per component.

    Args:
        fit_or_components: a fitted `ModelDiff`, or ``components [k, n_train]``.
        test_projections: ``[n_test, k]`` (taken from the fit when one is given); NaN rows
            (excluded tests) are never selected.
        n_train_top, n_test_top: how many examples per group.
        train_labels, test_labels: ``[n_train]``, ``[n_test]`` int labels for the class composition.
        class_names: names indexed by label.
    """
    if hasattr(fit_or_components, "components_"):
        components = fit_or_components.components_
        test_projections = fit_or_components.test_projections_
    else:
        components = fit_or_components
    components = np.asarray(components)
    if test_projections is None:
        raise ValueError("test_projections is required when components are given as an array")
    test_projections = np.asarray(test_projections)
    if components.ndim != 2 or test_projections.ndim != 2 or test_projections.shape[1] != components.shape[0]:
        raise ValueError(f"components {components.shape} and test_projections {test_projections.shape} "
                         "must be [k, n_train] and [n_test, k]")
    n_train_top = min(n_train_top, components.shape[1])
    out = []
    for j, w in enumerate(components):
        pos = np.argsort(-w, kind="stable")[:n_train_top]
        neg = np.argsort(w, kind="stable")[:n_train_top]
        p = test_projections[:, j]
        size = np.where(np.isnan(p), -np.inf, np.abs(p))
        top = np.argsort(-size, kind="stable")[:min(n_test_top, int(np.isfinite(size).sum()))]
        comp = (lambda labels, idx: class_composition(np.asarray(labels)[idx], class_names)
                if labels is not None else [])
        out.append(Subpopulation(
            component=j, train_positive=pos, train_positive_weights=w[pos],
            train_negative=neg, train_negative_weights=w[neg],
            test_top=top, test_top_projections=p[top],
            train_positive_classes=comp(train_labels, pos),
            train_negative_classes=comp(train_labels, neg),
            test_top_classes=comp(test_labels, top)))
    return out
