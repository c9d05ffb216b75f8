"""The ensemble trainer: M models at once in one process, each with its own subset mask and seed.

All M models share the recipe; model ``i`` trains on the examples where ``masks[i]`` is true, in
an order and with augmentations drawn from a generator seeded by ``seeds[i]`` alone, and starts
from weights drawn from ``seeds[i]``. Its numbers therefore do not depend on the other members
(tested in float64). Data stay on the device; batches are gathered by index.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from datamodels.data.dataset import Dataset
from datamodels.margins import margin
from datamodels.training.augment import apply_augment, draw_epoch, stack_paste
from datamodels.training.fit import FitRecord, FitTracker, subset_fit
from datamodels.training.losses import make_loss
from datamodels.training.models import EnsembleNet, extract_single, init_ensemble, insert_single
from datamodels.training.optimizers import make_optimizer
from datamodels.training.recipe import Recipe
from datamodels.training.schedule import lr_at

EVAL_BATCH = 1024  # test examples per forward pass during evaluation (per model)


@dataclass
class EnsembleResult:
    """Outputs of one ensemble, row ``i`` = model ``i``."""

    net: EnsembleNet  # trained, eval mode
    test_logits: torch.Tensor  # [M, n_test, K] float32
    test_margins: torch.Tensor  # [M, n_test] float32
    train_margins: torch.Tensor | None  # [M, n_train] float32
    accuracy: torch.Tensor  # [M] test accuracy in [0, 1]
    diverged: torch.Tensor  # [M] bool: loss became NaN/inf at some step
    fit: FitRecord | None = None  # training loss, epochs/steps run, checkpoints (datamodels.training.fit)


def _dtype(recipe: Recipe) -> torch.dtype:
    return torch.float64 if recipe.precision == "float64" else torch.float32


def _autocast(recipe: Recipe, device: torch.device):
    if recipe.precision == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_ensemble(recipe: Recipe, data: Dataset, masks: torch.Tensor, seeds, device="cpu",
                   init_state: dict | None = None, train_margins: bool = True, batches=None,
                   progress=None, data_on_device: tuple | None = None) -> EnsembleResult:
    """Train ``M = len(seeds)`` models of a built-in architecture as one grouped-convolution net.

    The optimiser must be element-wise (checked by the ``ensemble`` backend), so that model ``i``'s
    update never depends on the other models' numbers.

    Args:
        masks: ``[M, n_train]`` bool; every row must keep the same number ``m`` of examples.
        seeds: ``M`` integers, one per model (initialisation, order, augmentation).
        init_state: a one-model state dict to start from (pretraining), else random init.
        batches: optional iterator factory ``batches(epoch) -> iterable of (x[M, b, C, H, W],
            y[M, b])`` replacing the on-device gather (the FFCV path uses it).
        progress: optional callable ``progress(n_steps_done)``.

    With ``recipe.until`` every member trains until all have met the target (or ``max_epochs``), and a
    member that met it earlier is restored to its weights of that epoch; the fit records and kept
    checkpoints are in ``result.fit`` (:mod:`datamodels.training.fit`).
    """
    device = torch.device(device)
    masks = torch.as_tensor(masks, dtype=torch.bool)
    counts = masks.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("every mask in one ensemble must keep the same number of training examples")
    n_models, m = len(seeds), int(counts[0])
    dtype = _dtype(recipe)
    if data_on_device is None:
        data_on_device = (data.x_train.to(device, dtype), data.y_train.to(device))
    x_all, y_all = data_on_device
    subsets = [torch.nonzero(mask).squeeze(1) for mask in masks]
    gens = [torch.Generator().manual_seed(int(s) * 7919 + 1) for s in seeds]  # disjoint from init stream

    net = init_ensemble(recipe.model, seeds, data.num_classes, data.image_shape, data.mean, data.std,
                        init_state, recipe.init.reset_head).to(device, dtype)
    net = net.to(memory_format=torch.channels_last)  # grouped convolutions run ~20 % faster on CPU
    opt = make_optimizer(list(net.parameters()), recipe.optim)  # sgd: SGD(lr, momentum, nesterov, weight_decay)
    user_loss = None if recipe.loss == "cross_entropy" else make_loss(recipe)
    steps_per_epoch = math.ceil(m / recipe.batch_size)
    tracker = FitTracker(recipe, n_models, steps_per_epoch)
    total = steps_per_epoch * tracker.epochs  # under until: the schedule is laid over max_epochs
    order = torch.stack(subsets).to(device)  # [M, m] each model's own subset (the fit is measured on it)
    fit_loss = make_loss(recipe)
    diverged = torch.zeros(n_models, dtype=torch.bool, device=device)
    state = lambda i: extract_single(net, i)  # noqa: E731

    def measure():
        """Every member's eval-mode loss and accuracy on its own subset ``([M], [M])``."""
        net.eval()
        with _autocast(recipe, device):
            out = subset_fit(net, x_all, y_all, order, fit_loss, max(32, EVAL_BATCH // n_models))
        net.train()
        return out

    step = 0
    net.train()
    for epoch in range(tracker.epochs):
        if batches is not None:
            epoch_batches = batches(epoch)
        else:
            epoch_batches = _gather_batches(recipe, data, subsets, gens, x_all, y_all, device)
        live = (~tracker.stopped).to(device)
        tracker.checks_in_epoch(epoch)
        for in_epoch, (xb, yb) in enumerate(epoch_batches, 1):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, recipe.optim)
            with _autocast(recipe, device):
                logits = net(xb)
            if user_loss is None:
                losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none",
                                         label_smoothing=recipe.optim.label_smoothing).view(n_models, -1).mean(1)
            else:  # a per-example loss: one call on all models' examples
                losses = user_loss(logits.flatten(0, 1), yb.flatten()).view(n_models, -1).mean(1)
            finite = torch.isfinite(losses)
            diverged |= ~finite & live  # a model that met its target is restored from its snapshot below
            opt.zero_grad(set_to_none=True)
            torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
            opt.step()
            step += 1
            if progress is not None:
                progress(1)
            if tracker.after_step(epoch, in_epoch, measure, state):
                break
        if bool(tracker.stopped.all()):
            break
        measured = measure() if tracker.needs_eval(epoch) else (None, None)
        if tracker.after_epoch(epoch, *measured, state):
            break
    for i, state in tracker.snapshots.items():  # models that met the target: their weights at that epoch
        insert_single(net, i, state)
    result = evaluate(net, data, diverged, device, dtype, train_margins, recipe)
    result.fit = FitRecord.of(tracker)
    return result


def _gather_batches(recipe, data, subsets, gens, x_all, y_all, device):
    """Yield ``(x[M, b, C, H, W], y[M, b])`` batches of one epoch, augmented on the device."""
    m = len(subsets[0])
    draws = [draw_epoch(g, m, recipe.augment, data.image_shape[1:]) for g in gens]
    order = torch.stack([s[d.order] for s, d in zip(subsets, draws)]).to(device)  # [M, m]
    flip = torch.stack([d.flip for d in draws]).to(device)
    shift = torch.stack([d.shift for d in draws]).to(device)
    cut = torch.stack([d.cutout_at for d in draws]).to(device)
    paste = stack_paste(draws)
    paste = None if paste is None else paste.to(device)
    aug = recipe.augment
    any_aug = aug.active
    for start in range(0, m, recipe.batch_size):
        idx = order[:, start:start + recipe.batch_size]
        xb = x_all[idx]  # [M, b, C, H, W]
        if any_aug:
            sl = slice(start, start + recipe.batch_size)
            shape = xb.shape
            xb = apply_augment(xb.flatten(0, 1), aug, flip[:, sl].flatten(), shift[:, sl].flatten(0, 1),
                               cut[:, sl].flatten(0, 1), None if paste is None else paste[:, sl].flatten()).view(shape)
        yield xb, y_all[idx]


@torch.no_grad()
def predict_logits(net: EnsembleNet, x: torch.Tensor, device, dtype=torch.float32, batch=EVAL_BATCH,
                   autocast=None) -> torch.Tensor:
    """Logits ``[M, n, K]`` of every model of ``net`` (eval mode) on the same inputs ``x[n, *input_shape]``
    (floating inputs cast to ``dtype``; integer inputs such as token ids are left as they are)."""
    net.eval()
    outs = []
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        xb = xb.to(device, dtype) if xb.is_floating_point() else xb.to(device)
        with autocast or nullcontext():
            out = net(xb.unsqueeze(0).expand(net.n_models, *xb.shape))
        outs.append(out.float().cpu())
    return torch.cat(outs, 1)


def evaluate(net, data: Dataset, diverged, device, dtype, train_margins, recipe) -> EnsembleResult:
    ac = _autocast(recipe, device)
    test_logits = predict_logits(net, data.x_test, device, dtype, autocast=ac)
    test_m = margin(test_logits, data.y_test)
    acc = (test_logits.argmax(-1) == data.y_test).float().mean(1)
    train_m = (margin(predict_logits(net, data.x_train, device, dtype, autocast=ac), data.y_train)
               if train_margins else None)
    bad_params = torch.stack([~torch.isfinite(p.detach().reshape(net.n_models, -1)).all(1)
                              for p in net.parameters()]).any(0)
    diverged = diverged.cpu() | bad_params.cpu() | ~torch.isfinite(test_m).all(1)
    return EnsembleResult(net, test_logits, test_m, train_m, acc, diverged)
