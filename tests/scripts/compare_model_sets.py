"""Run as a script: models trained here with a plain PyTorch loop (two optimisers), saved as state
dicts with their masks, then compared as two ``ModelSet.from_folder`` model sets.

    python tests/scripts/compare_model_sets.py OUT_FOLDER
"""
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datamodels.data.dataset import load_digits
from modeldiff import ModelSet, compare


def make_net(num_classes, input_shape):
    """A small MLP: x[B, 1, 8, 8] -> logits [B, num_classes]."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 32), nn.ReLU(),
                         nn.Linear(32, num_classes))


def train_folder(folder: Path, data, make_optimizer, n_models: int, seed: int) -> np.ndarray:
    """Train ``n_models`` nets, each on a random half of the training set; returns their masks."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_models, data.n_train), dtype=bool)
    for i in range(n_models):
        masks[i, rng.choice(data.n_train, data.n_train // 2, replace=False)] = True
        torch.manual_seed(seed * 1000 + i)
        net = make_net(data.num_classes, data.input_shape)
        opt = make_optimizer(net.parameters())
        x, y = data.x_train[masks[i]], data.y_train[masks[i]]
        for _ in range(4):
            for s in range(0, len(x), 32):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[s:s + 32]), y[s:s + 32]).backward()
                opt.step()
        torch.save(net.state_dict(), folder / f"model_{i:03d}.pt")
    return masks


if __name__ == "__main__":
    out = Path(sys.argv[1])
    data = load_digits()
    sets = []
    for name, make_optimizer, seed in (("adam", lambda p: torch.optim.Adam(p, lr=3e-3), 1),
                                       ("sgd", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 2)):
        masks = train_folder(out / f"models_{name}", data, make_optimizer, 8, seed)
        sets.append(ModelSet.from_folder(out / f"models_{name}", make_net, masks, data, name=name))
    result = compare(sets[0], sets[1], out=out / "comparison", components=2, search=False,
                     counterfactual={"auto_candidates": 1, "n_test": 40, "bootstrap": 100})
    assert result.algorithms["a"].label == "adam" and result.algorithms["b"].models == 8
    assert 0.5 < result.algorithms["b"].accuracy <= 1
    assert result.components["b_minus_a"].shape == (2, data.n_train)
    assert result.confirmed == {"a_minus_b": [], "b_minus_a": []}
    assert all(path.is_file() for path in result.reports.values())
    assert result.to_dict()["algorithms"]["a"]["label"] == "adam"
    print("ok", result.algorithms["a"].accuracy, result.algorithms["b"].accuracy)
