"""What every trainer backend shares: the result type, per-model data order and augmentation,
input casting, seeding, and evaluation into logits and margins.

One per-model semantics for all backends: model ``i`` is initialised from ``seeds[i]`` alone
(:func:`datamodels.training.model_factory.init_module`), sees the examples where ``masks[i]`` is
true in an order (and with augmentations) drawn from ``torch.Generator().manual_seed(seeds[i] * 7919
+ 1)`` (:func:`model_generator`, one :func:`~datamodels.training.augment.draw_epoch` per epoch), and
follows the recipe's learning-rate schedule (:func:`~datamodels.training.schedule.lr_at`), with the
loss averaged over its batch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from datamodels.base.errors import UserError
from datamodels.margins import margin
from datamodels.training.augment import apply_augment, draw_epoch, stack_paste

EVAL_BATCH = 1024  # examples per forward pass during evaluation


@dataclass
class TrainResult:
    """Outputs of ``M`` models trained by any backend; row ``i`` = model ``i``."""

    test_logits: torch.Tensor  # [M, n_test, K] float32, CPU
    test_margins: torch.Tensor  # [M, n_test] float32
    train_margins: torch.Tensor | None  # [M, n_train] float32, or None when not asked for
    accuracy: torch.Tensor  # [M] test accuracy in [0, 1]
    diverged: torch.Tensor  # [M] bool: the loss became non-finite at some step, or the weights did
    state_dict: Callable[[int], dict]  # state_dict(i): model i's one-model state dict (CPU tensors)
    backend: str = ""  # which backend trained them
    fit: object = None  # FitRecord: training loss, epochs and steps run, checkpoints (datamodels.training.fit)


def dtype_of(recipe) -> torch.dtype:
    """Weights' dtype: float64 for ``precision: float64``, else float32 (bfloat16 runs under autocast)."""
    return torch.float64 if recipe.precision == "float64" else torch.float32


def autocast(recipe, device) -> "contextmanager":
    device = torch.device(device)
    if recipe.precision == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def as_input(x: torch.Tensor, device, dtype) -> torch.Tensor:
    """``x`` on ``device``; floating inputs cast to ``dtype``, integer inputs (token ids) left as they are."""
    return x.to(device, dtype) if x.is_floating_point() else x.to(device)


def is_image(data) -> bool:
    return data.x_train.dim() == 4 and data.x_train.is_floating_point()


def augments(recipe) -> bool:
    return recipe.augment.active


def check_data(recipe, data) -> None:
    """Refuse settings the data cannot take (augmentation or built-in image models on non-image inputs)."""
    if not is_image(data):
        shape = f"{list(data.x_train.shape[1:])} ({str(data.x_train.dtype).replace('torch.', '')})"
        if augments(recipe):
            raise UserError(f"augment (flip/translate/cutout/paste) works on float images [C, H, W] only, but the inputs "
                            f"are {shape}: set augment to all off, or augment inside a trainer target")
        if recipe.model.builtin:
            raise UserError(f"built-in model {recipe.model.arch!r} takes float images [C, H, W] but the inputs are "
                            f"{shape}: give your own model as model.target")
    elif recipe.augment.paste.share > 0:
        from datamodels.data.patterns import check_region

        check_region(recipe.augment.paste.region, data.x_train.shape[-2:], what="augment.paste.region")


def check_model(module, recipe, data, device, dtype) -> None:
    """Refuse a user model whose output on two test inputs is not logits ``[2, K]`` (one line naming it)."""
    if not recipe.model.builtin:
        from datamodels.training.model_factory import check_output

        check_output(module, as_input(data.x_test[:2], device, dtype), data.num_classes,
                     f"model.target {recipe.model.target!r}")


def equal_subsets(masks: torch.Tensor) -> int:
    """``m``, the examples every mask keeps (backends that batch models together need it equal)."""
    counts = masks.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("every mask in one ensemble must keep the same number of training examples")
    return int(counts[0])


def model_generator(seed: int) -> torch.Generator:
    """Model ``seed``'s data-order and augmentation stream (disjoint from its initialisation)."""
    return torch.Generator().manual_seed(int(seed) * 7919 + 1)


def epoch_draw(gen: torch.Generator, m: int, recipe, data):
    """One epoch's :class:`~datamodels.training.augment.EpochDraw` for a model with ``m`` examples."""
    hw = tuple(data.x_train.shape[-2:]) if is_image(data) else (1, 1)
    return draw_epoch(gen, m, recipe.augment, hw)


def gather_batch(x_all, y_all, subset_order: torch.Tensor, draws, start: int, recipe):
    """Batch ``[start, start + B)`` of one epoch for ``M`` models at once.

    ``subset_order``: ``[M, m]`` dataset indices in each model's order for the epoch; ``draws``: the
    models' epoch draws. Returns ``x[M, b, *input_shape]`` (augmented) and ``y[M, b]``.
    """
    idx = subset_order[:, start:start + recipe.batch_size]
    xb = x_all[idx]
    if augments(recipe):
        sl = slice(start, start + recipe.batch_size)
        dev = xb.device
        flip = torch.stack([d.flip[sl] for d in draws]).to(dev).flatten()
        shift = torch.stack([d.shift[sl] for d in draws]).to(dev).flatten(0, 1)
        cut = torch.stack([d.cutout_at[sl] for d in draws]).to(dev).flatten(0, 1)
        paste = stack_paste(draws, sl)
        paste = None if paste is None else paste.to(dev).flatten()
        xb = apply_augment(xb.flatten(0, 1), recipe.augment, flip, shift, cut, paste).view(xb.shape)
    return xb, y_all[idx]


def steps_per_epoch(m: int, recipe) -> int:
    return math.ceil(m / recipe.batch_size)


@contextmanager
def seeded(seed: int, device):
    """Run with the global torch RNG seeded from ``seed`` alone (dropout and other random ops in a
    model or a train_fn), restoring the caller's RNG state afterwards."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def params_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def finish(test_logits, train_logits, data, diverged, state_dict, backend: str, finite=None, fit=None) -> TrainResult:
    """Assemble a :class:`TrainResult` from logits ``[M, n, K]`` (CPU float32)."""
    test_m = margin(test_logits, data.y_test)
    acc = (test_logits.argmax(-1) == data.y_test).float().mean(1)
    train_m = margin(train_logits, data.y_train) if train_logits is not None else None
    diverged = diverged.cpu() | ~torch.isfinite(test_m).all(1)
    if finite is not None:
        diverged |= ~finite.cpu()
    return TrainResult(test_logits, test_m, train_m, acc, diverged, state_dict, backend, fit)


@torch.no_grad()
def predict_module(module, x: torch.Tensor, device, dtype, recipe, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Logits ``[n, K]`` (float32, CPU) of one module (eval mode) on ``x[n, *input_shape]``."""
    module.eval()
    outs = []
    for start in range(0, len(x), batch):
        with autocast(recipe, device):
            outs.append(module(as_input(x[start:start + batch], device, dtype)).float().cpu())
    return torch.cat(outs)
