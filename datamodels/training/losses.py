"""Training losses by name (``cross_entropy``) or import target; all give per-example losses.

A loss is ``fn(logits[B, K], y[B]) -> [B]``. Backends average it over the batch, per model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from datamodels.base.errors import UserError, call_user
from datamodels.registry import Registry

LOSSES = Registry("loss")


@LOSSES.register("cross_entropy")
def cross_entropy(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example cross-entropy ``[B]`` of ``logits[B, K]`` (computed in float32 or wider)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)


def make_loss(recipe):
    """``fn(logits[B, K], y[B]) -> [B]`` for the recipe's ``loss`` (a user loss's output is checked)."""
    if recipe.loss == "cross_entropy":
        smoothing = recipe.optim.label_smoothing
        return lambda logits, y: cross_entropy(logits, y, smoothing)
    fn = LOSSES.get(recipe.loss, key="loss")
    if not callable(fn):
        raise UserError(f"loss {recipe.loss!r} is a {type(fn).__name__}, not a function fn(logits, y) -> [B]")
    name = recipe.loss

    def checked(logits, y):
        out = call_user(fn, logits, y, what=f"loss {name!r}",
                        hint="it must map (logits[B, K], y[B]) to per-example losses [B]")
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(y.shape):
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(f"loss {name!r} returned {got} for a batch of {list(y.shape)}: it must return "
                            f"per-example losses [B] (reduction='none')")
        return out

    return checked
