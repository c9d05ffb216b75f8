"""User code named by import targets in the backend tests (models, losses, optimizers, train_fns)."""
import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(input_shape, num_classes, hidden=16):
    """Flatten -> Linear -> LayerNorm -> ReLU -> Linear."""
    d = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def small_cnn(input_shape, num_classes, width=4):
    """conv-BatchNorm-ReLU-pool-linear for [C, H, W] images (BatchNorm: buffers under vmap)."""
    c, h, w = input_shape
    return nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(width * (h // 2) * (w // 2), num_classes))


def dropout_mlp(input_shape, num_classes, hidden=16):
    d = math.prod(input_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, num_classes))


class TokenBag(nn.Module):
    """Token ids [B, T] (int64) -> mean embedding -> logits."""

    def __init__(self, num_classes, vocab=20, dim=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.emb(x).mean(1))


def token_bag(num_classes, vocab=20):
    return TokenBag(num_classes, vocab)


def not_a_module(num_classes):
    return 3


def wrong_shape(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))


def squared_error(logits, y):
    """Per-example squared error against one-hot targets [B]."""
    return ((logits.softmax(-1) - F.one_hot(y, logits.shape[-1]).to(logits.dtype)) ** 2).sum(-1)


def mean_loss(logits, y):  # wrong: a scalar, not per-example
    return F.cross_entropy(logits, y)


class NormScaledSGD(torch.optim.Optimizer):
    """A LARS-like optimizer (update scaled by the whole tensor's norm): not element-wise."""

    def __init__(self, params, lr=0.1, trust=0.01):
        super().__init__(params, {"lr": lr, "trust": trust})

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p -= g["lr"] * g["trust"] * p.norm() / (p.grad.norm() + 1e-12) * p.grad


class SignSGD(torch.optim.Optimizer):
    """Element-wise (declares it): p -= lr * sign(grad)."""

    elementwise = True

    def __init__(self, params, lr=0.01, scale=1.0):
        super().__init__(params, {"lr": lr, "scale": scale})

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p -= g["lr"] * g["scale"] * p.grad.sign()


def train_fn(model, x, y, *, seed, device, recipe, epochs=3):
    """A plain Adam loop with its own shuffling (global RNG, seeded by the caller)."""
    opt = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def raising_train_fn(model, x, y, *, seed, device, recipe):
    raise RuntimeError("boom")


def nan_train_fn(model, x, y, *, seed, device, recipe):
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    return model


def dict_train_fn(model, x, y, *, seed, device, recipe):
    return model.state_dict()


def shape_train_fn(model, x, y, *, seed, device, recipe):
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(x.shape[1:]), 3)).to(dtype)  # 3 classes, not 10


def until_train_fn(model, x, y, *, seed, device, recipe):
    """Trains epoch by epoch until ``recipe.until.train_loss`` (eval-mode loss on x, y) or
    ``recipe.until.max_epochs``; reports the epochs and steps it ran."""
    opt = torch.optim.SGD(model.parameters(), lr=recipe.optim.lr)
    steps, epochs = 0, 0
    while epochs < recipe.until.max_epochs:
        epochs += 1
        model.train()
        for start in range(0, len(x), recipe.batch_size):
            opt.zero_grad()
            F.cross_entropy(model(x[start:start + recipe.batch_size]), y[start:start + recipe.batch_size]).backward()
            opt.step()
            steps += 1
        model.eval()
        with torch.no_grad():
            if float(F.cross_entropy(model(x), y)) <= recipe.until.train_loss:
                break
    return model, {"epochs": epochs, "steps": steps}
