import json

import numpy as np
import pytest

from modeldiff import ModelDiff
from modeldiff.diff.subpopulations import class_composition, subpopulations


def test_groups_are_the_extreme_examples_with_their_classes():
    components = np.array([[0.1, -0.9, 0.5, 0.0, -0.2, 0.7],
                           [0.0, 0.3, -0.4, 0.8, 0.1, -0.1]])
    proj = np.array([[1.0, 0.1], [-3.0, 0.2], [np.nan, np.nan], [0.5, -2.0], [2.0, 0.0]])
    subs = subpopulations(components, proj, n_train_top=2, n_test_top=3,
                          train_labels=[0, 1, 1, 2, 0, 1], test_labels=[2, 2, 0, 1, 1],
                          class_names=["cat", "dog", "frog"])
    first = subs[0]
    assert first.train_positive.tolist() == [5, 2]
    assert first.train_positive_weights.tolist() == [0.7, 0.5]
    assert first.train_negative.tolist() == [1, 4]
    assert first.test_top.tolist() == [1, 4, 0]           # |projection|, NaN row never chosen
    assert first.test_top_projections.tolist() == [-3.0, 2.0, 1.0]
    assert [(c.name, c.count) for c in first.train_positive_classes] == [("dog", 2)]
    assert [(c.name, c.count) for c in first.train_negative_classes] == [("cat", 1), ("dog", 1)]
    assert [(c.name, c.count) for c in first.test_top_classes] == [("frog", 2), ("dog", 1)]
    assert subs[1].train_positive.tolist() == [3, 1]
    assert subs[1].test_top.tolist()[0] == 3
    json.dumps([s.to_dict() for s in subs])   # JSON-ready


def test_class_composition_fractions_and_order():
    comp = class_composition([3, 1, 3, 3, 1, 0])
    assert [(c.label, c.count) for c in comp] == [(3, 3), (1, 2), (0, 1)]
    assert comp[0].fraction == pytest.approx(0.5)
    assert comp[0].name == "3"


def test_from_a_fit_finds_the_planted_examples():
    rng = np.random.default_rng(0)
    B = rng.normal(size=(120, 400))
    S = rng.choice(400, 20, replace=False)
    T = rng.choice(120, 30, replace=False)
    v = np.zeros(400)
    v[S] = 1
    u = np.zeros(120)
    u[T] = 3
    md = ModelDiff(2).fit((B + np.outer(u, v)).astype(np.float32), B.astype(np.float32))
    labels = np.zeros(400, int)
    labels[S] = 7
    sub = subpopulations(md, n_train_top=20, n_test_top=30, train_labels=labels)[0]
    assert np.isin(sub.train_positive, S).mean() >= 0.9
    assert sub.train_positive_classes[0].label == 7 and sub.train_positive_classes[0].fraction >= 0.9
    assert np.isin(sub.test_top, T).mean() >= 0.9


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="must be"):
        subpopulations(np.zeros((2, 5)), np.zeros((4, 3)))
