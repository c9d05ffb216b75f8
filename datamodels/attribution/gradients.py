"""Per-example gradients of the model output and TRAK's out-to-loss weights (torch.func).

The model output is pluggable (:class:`ModelOutput`, like traker's ``AbstractModelOutput``). The
default, :class:`ClassificationMargin`, follows traker's ``ImageClassificationModelOutput``: the
margin ``f(z) = logit_y − logsumexp_{j≠y} logit_j`` (``datamodels.margins.margin``) and the
out-to-loss weight ``Q = 1 − softmax(logits)_y``. Gradients are taken with respect to every
parameter (``named_parameters`` order) with the model in eval mode; projected gradients are
divided by ``sqrt(n_params)`` like traker's ``normalize_factor``. Inputs keep their dtype when
they are not floating point (token ids go to the model as integers).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from datamodels.attribution.projectors import Projector
from datamodels.base.errors import UserError
from datamodels.base.progress import progress_bar
from datamodels.margins import margin
from datamodels.registry import Registry, record


class ModelOutput:
    """What TRAK attributes, in the style of trak's ``AbstractModelOutput`` and kronfluence's ``Task``:
    a per-example output of the model and its out-to-loss weight, both computed from the model and
    the batch as the dataset yields it.

    ``model(*inputs)`` calls the network (inside per-example gradients, a functional call with the
    parameters being differentiated); ``batch`` is ``(x[B, *input_shape], y[B])``. A multi-input
    model unpacks ``x`` itself (e.g. ``model(x[:, 0], x[:, 1])`` for token ids and a mask).
    Subclass it (or give an object with these two methods, or a function
    ``fn(model, batch) -> (f[B], Q[B])``); the older form that receives the logits,
    ``output(out, y)``, is accepted through :class:`LogitsOutput`.
    """

    def output(self, model, batch) -> torch.Tensor:
        """``f[B]``: the quantity whose training-data attribution is wanted (differentiated)."""
        raise NotImplementedError

    def out_to_loss(self, model, batch) -> torch.Tensor:
        """``Q[B]``: derivative of the training loss with respect to ``f`` (no gradient taken)."""
        raise NotImplementedError


class ClassificationMargin(ModelOutput):
    """The default: margin ``logit_y − logsumexp_{j≠y} logit_j`` and ``Q = 1 − p(y | x)``."""

    def output(self, model, batch):
        x, y = batch
        return margin(model(x), y)

    def out_to_loss(self, model, batch):
        x, y = batch
        p = torch.softmax(model(x), dim=-1)
        return 1 - p.gather(1, y.view(-1, 1)).squeeze(1)


class LogitsOutput(ModelOutput):
    """Adapter for the form that receives the logits: an object with ``output(out, y)`` and
    ``out_to_loss(out, y)``, or a function ``fn(out, y) -> (f[B], Q[B])``."""

    def __init__(self, obj):
        self.obj = obj

    def _pair(self, model, batch, which: int):
        x, y = batch
        out = model(x)
        if callable(getattr(self.obj, "output", None)):
            return (self.obj.output if which == 0 else self.obj.out_to_loss)(out, y)
        return self.obj(out, y)[which]

    def output(self, model, batch):
        return self._pair(model, batch, 0)

    def out_to_loss(self, model, batch):
        return self._pair(model, batch, 1)


class FunctionOutput(ModelOutput):
    """A function ``fn(model, batch) -> (f[B], Q[B])`` as a :class:`ModelOutput`."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def output(self, model, batch):
        return self.fn(model, batch)[0]

    def out_to_loss(self, model, batch):
        return self.fn(model, batch)[1]


MODEL_OUTPUTS = Registry("TRAK model output")
MODEL_OUTPUTS.register("margin", ClassificationMargin)


def _takes_model(fn) -> bool:
    """True when ``fn``'s first parameter is called ``model`` (the ``(model, batch)`` form)."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "model"


def resolve_model_output(spec: Any) -> tuple[ModelOutput, str]:
    """``(model_output, recorded_name)`` from ``"margin"``, an import target or an object: a
    :class:`ModelOutput` (class or instance), an object or function of the ``(model, batch)`` form
    (first parameter named ``model``), or one of the older ``(out, y)`` form (adapted by
    :class:`LogitsOutput`)."""
    obj, name = spec, None
    if spec is None:
        spec = "margin"
    if isinstance(spec, str):
        name = spec
        obj = MODEL_OUTPUTS.get(spec, key="model_output")
    if isinstance(obj, type):
        if name is None:
            name = _name_of(obj)
        obj = obj()
    name = name or _name_of(type(obj) if hasattr(obj, "output") else obj)
    if callable(getattr(obj, "output", None)) and callable(getattr(obj, "out_to_loss", None)):
        return (obj if _takes_model(obj.output) else LogitsOutput(obj)), name
    if callable(obj):
        return (FunctionOutput(obj) if _takes_model(obj) else LogitsOutput(obj)), name
    raise UserError(f"model_output {spec!r} must be 'margin', a ModelOutput (output(model, batch) and "
                    f"out_to_loss(model, batch)), a function (model, batch) -> (output, out_to_loss), or the older "
                    f"(out, y) forms of these")


def _name_of(obj) -> str:
    return record(obj)


def n_params(model: nn.Module) -> int:
    """Number of entries of all parameters (the gradient dimension)."""
    return sum(p.numel() for p in model.parameters())


def per_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      model_output: ModelOutput | None = None) -> dict[str, torch.Tensor]:
    """Gradients of each example's output: ``{name: [B, *param.shape]}`` in parameter order.

    ``x[B, *input_shape]`` and ``y[B]`` must be on the model's device; the model should be in eval
    mode (batch norm then uses its running statistics, so examples do not interact).
    ``model_output``: what is differentiated (default: the classification margin).
    """
    fo = model_output or ClassificationMargin()

    def one(model, params, buffers, x, y):
        def net(*inputs):
            return torch.func.functional_call(model, (params, buffers), inputs)

        return fo.output(net, (x.unsqueeze(0), y.unsqueeze(0))).sum()

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    grad_fn = torch.func.grad(one, argnums=1)
    return torch.func.vmap(grad_fn, in_dims=(None, None, None, 0, 0),
                           randomness="different")(model, params, buffers, x, y)


@torch.no_grad()
def out_to_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                model_output: ModelOutput | None = None) -> torch.Tensor:
    """``Q[B]``; for the margin ``1 − p(y | x)``, the derivative of the cross-entropy loss with respect to it."""
    return (model_output or ClassificationMargin()).out_to_loss(model, (x, y))


def featurize(model: nn.Module, x: torch.Tensor, y: torch.Tensor, projector: Projector,
              model_id: int, *, batch_size: int = 64, with_q: bool = True,
              progress: bool | str = False,
              model_output: ModelOutput | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Projected, normalised output gradients of ``n`` examples for one model.

    Args:
        model: one model (eval mode) on the device where the work is done.
        x: ``[n, *input_shape]`` inputs (any device; batches are moved to the model's device;
            floating inputs are cast to the model's dtype, integer inputs keep theirs).
        y: ``[n]`` labels.
        model_output: the differentiated output and its out-to-loss weight (default: margin).
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
        starts = progress_bar(starts, desc=progress if isinstance(progress, str) else "featurize",
                      leave=False)
    for s in starts:
        xb = x[s:s + batch_size]
        xb = xb.to(device=device, dtype=dtype) if xb.is_floating_point() else xb.to(device=device)
        yb = y[s:s + batch_size].to(device=device)
        g = per_example_grads(model, xb, yb, model_output)
        phis.append(projector.project(g, model_id) / norm)
        del g
        if with_q:
            qs.append(out_to_loss(model, xb, yb, model_output))
    phi = torch.cat(phis)
    return phi, (torch.cat(qs) if with_q else None)
