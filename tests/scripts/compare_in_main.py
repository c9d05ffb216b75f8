"""Run as a script: an own net factory and optimizer defined here (in __main__), compared on digits.

    python tests/scripts/compare_in_main.py OUT_FOLDER
"""
import sys

import torch
from torch import nn

from modeldiff import Algorithm, compare


def make_net(num_classes, input_shape):
    """A small MLP: x[B, 1, 8, 8] -> logits [B, num_classes]."""
    d = 1
    for s in input_shape:
        d *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, num_classes))


class PlainSGD(torch.optim.SGD):
    """SGD without momentum, defined in the script."""

    elementwise = True  # each number's update depends only on its own gradient

    def __init__(self, params, lr):
        super().__init__(params, lr=lr, momentum=0.0)


if __name__ == "__main__":
    out = sys.argv[1]
    fast = Algorithm(name="fast", model=make_net, optimizer=PlainSGD, lr=0.2, batch_size=16, epochs=2,
                     schedule="constant")
    slow = Algorithm(name="slow", model=make_net, optimizer=PlainSGD, lr=0.02, batch_size=64, epochs=2,
                     schedule=torch.optim.lr_scheduler.CosineAnnealingLR)
    result = compare(fast, slow, "digits", out=out, models=8, components=2, search=False,
                     counterfactual={"auto_candidates": 1, "n_test": 40, "bootstrap": 100})
    assert result.algorithms["a"].label == "fast" and result.algorithms["b"].models == 8
    assert 0.1 < result.algorithms["a"].accuracy <= 1
    assert result.components["a_minus_b"].shape == (2, 1437)
    assert result.confirmed == {"a_minus_b": [], "b_minus_a": []}  # the search was off
    assert all(path.is_file() for path in result.reports.values())
    assert len(result.directions["b_minus_a"].calibration) == 2
    print("ok", result.algorithms["a"].accuracy, result.verdict[:60])
