"""Per-example gradients of the margin and TRAK's out-to-loss weights (torch.func).

Conventions follow traker's ``ImageClassificationModelOutput``: the model output is the margin
``f(z) = logit_y − logsumexp_{j≠y} logit_j`` (``datamodels.margins.margin``), its gradient is
taken with respect to every parameter (``named_parameters`` order) with the model in eval mode,
and the out-to-loss weight is ``Q = 1 − softmax(logits)_y``. Projected gradients are divided by
``sqrt(n_params)`` like traker's ``normalize_factor``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from datamodels.margins import margin
from datamodels.attribution.projectors import Projector


def n_params(model: nn.Module) -> int:
    """Number of entries of all parameters (the gradient dimension)."""
    return sum(p.numel() for p in model.parameters())


def _margin_one(model, params, buffers, x, y):
    logits = torch.func.functional_call(model, (params, buffers), (x.unsqueeze(0),))
    return margin(logits, y.unsqueeze(0)).sum()


def per_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of each example's margin: ``{name: [B, *param.shape]}`` in parameter order.

    ``x[B, C, H, W]`` and ``y[B]`` must be on the model's device; the model should be in eval
    mode (batch norm then uses its running statistics, so examples do not interact).
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    grad_fn = torch.func.grad(_margin_one, argnums=1)
    return torch.func.vmap(grad_fn, in_dims=(None, None, None, 0, 0),
                           randomness="different")(model, params, buffers, x, y)


@torch.no_grad()
def out_to_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Q[B] = 1 − p(y | x)``: derivative of the cross-entropy loss with respect to the margin."""
    p = torch.softmax(model(x), dim=-1)
    return 1 - p.gather(1, y.view(-1, 1)).squeeze(1)


def featurize(model: nn.Module, x: torch.Tensor, y: torch.Tensor, projector: Projector,
              model_id: int, *, batch_size: int = 64, with_q: bool = True,
              progress: bool | str = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Projected, normalised margin gradients of ``n`` examples for one model.

    Args:
        model: one model (eval mode) on the device where the work is done.
        x: ``[n, C, H, W]`` inputs (any device; batches are moved to the model's device).
        y: ``[n]`` int64 labels.
        projector: maps ``[B, n_params] -> [B, k]``; ``model_id`` seeds its matrix.
        batch_size: examples per vmap call (results do not depend on it).
        with_q: also return the out-to-loss weights.
    Returns:
        ``phi[n, k]`` (model dtype, on the model's device) and ``q[n]`` or None.
    """
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    norm = math.sqrt(n_params(model))
    phis, qs = [], []
    starts = range(0, x.shape[0], batch_size)
    if progress:
        starts = tqdm(starts, desc=progress if isinstance(progress, str) else "featurize",
                      leave=False)
    for s in starts:
        xb = x[s:s + batch_size].to(device=device, dtype=dtype)
        yb = y[s:s + batch_size].to(device=device)
        g = per_example_grads(model, xb, yb)
        phis.append(projector.project(g, model_id) / norm)
        del g
        if with_q:
            qs.append(out_to_loss(model, xb, yb))
    phi = torch.cat(phis)
    return phi, (torch.cat(qs) if with_q else None)
