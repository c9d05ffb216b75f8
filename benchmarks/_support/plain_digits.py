"""The reference side of the training benchmark: a plain one-model PyTorch loop on digits.

Same architecture, recipe, subset size and augmentation as the ensemble trainer, written the way
a user would write it without modeldiff (nn.Sequential, one model at a time). Run as a script it
is also the "one process per model" worker: start, load data, train one model, write one row.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def plain_cnn(width=16, num_classes=10, mean=0.3, std=0.4) -> nn.Module:
    w = width
    block = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*block(1, w), *block(w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 2 * w),
                                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * w * 4, num_classes))

        def forward(self, x):
            return self.body((x - mean) / std)

    return Net()


def check_benchmarkable(recipe) -> None:
    """Exit with one line unless the plain reference can train ``recipe`` (digits_cnn on digits, float32/bfloat16)."""
    if recipe.model.arch != "digits_cnn" or recipe.data.name != "digits" or recipe.precision == "float64":
        raise SystemExit(f"error: the plain reference loop covers float32/bfloat16 digits_cnn recipes on digits, not "
                         f"{recipe.model.arch} on {recipe.data.name} at {recipe.precision}: pick such a recipe")


def train_plain(recipe, data, mask: np.ndarray, seed: int) -> float:
    """Train one model on ``data.x_train[mask]``; returns its test accuracy."""
    from contextlib import nullcontext

    from datamodels.training.augment import apply_augment
    from datamodels.training.schedule import lr_at

    check_benchmarkable(recipe)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if recipe.precision == "bfloat16" else nullcontext
    torch.manual_seed(seed)
    net = plain_cnn(recipe.model.width, data.num_classes, data.mean[0], data.std[0])
    opt = torch.optim.SGD(net.parameters(), lr=recipe.optim.lr, momentum=recipe.optim.momentum,
                          nesterov=recipe.optim.nesterov, weight_decay=recipe.optim.weight_decay)
    x, y = data.x_train[torch.from_numpy(mask)], data.y_train[torch.from_numpy(mask)]
    m, b = len(y), recipe.batch_size
    total, step = recipe.epochs * math.ceil(m / b), 0
    t = recipe.augment.translate
    for _ in range(recipe.epochs):
        order = torch.randperm(m)
        for start in range(0, m, b):
            idx = order[start:start + b]
            xb = x[idx]
            shift = torch.randint(-t, t + 1, (len(idx), 2))
            xb = apply_augment(xb, recipe.augment, torch.rand(len(idx)) < 0.5, shift, torch.zeros(len(idx), 2).long())
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, recipe.optim)
            with autocast():
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), y[idx], label_smoothing=recipe.optim.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    net.eval()
    with torch.no_grad(), autocast():
        return (net(data.x_test).argmax(1) == data.y_test).float().mean().item()


def load_recipe_for_benchmark(recipe_path: str, precision: str | None):
    """``recipe_path`` ("default" or a YAML file), with ``precision`` overridden when given."""
    from datamodels.training.recipe import resolve_recipe

    recipe = resolve_recipe(recipe_path)
    return recipe.replace(precision=precision) if precision else recipe


def main(row: int, out_file: str, n_models: int, fraction: float, recipe_path: str, precision: str) -> None:
    """One process per model: train model ``row`` and write its accuracy into ``out_file``."""
    from datamodels.data.dataset import load_digits
    from datamodels.store.store import draw_masks_and_seeds

    torch.set_num_threads(1)
    recipe, data = load_recipe_for_benchmark(recipe_path, precision or None), load_digits()
    masks, seeds = draw_masks_and_seeds(0, n_models, data.n_train, fraction)
    acc = train_plain(recipe, data, masks[row], int(seeds[row]))
    out = np.load(out_file, mmap_mode="r+")
    out[row] = acc
    out.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6])
