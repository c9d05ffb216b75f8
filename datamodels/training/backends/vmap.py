"""The ``vmap`` backend: ``M`` copies of any ``nn.Module`` trained at once with ``torch.func``.

The models' parameters and buffers are stacked into ``[M, ...]`` tensors once
(``torch.func.stack_module_state``) and stay stacked: every step runs
``vmap(functional_call(module, (params, buffers), x))`` on ``x[M, b, *input_shape]`` (model ``i``
sees its own batch), sums the per-model mean losses, backpropagates and applies the recipe's
optimiser to the stacked tensors. That is exact, i.e. model ``i`` gets the numbers it would get
alone, when the optimiser is element-wise (:func:`~datamodels.training.optimizers.vmap_refusal`);
other optimisers are refused. Buffers (BatchNorm running statistics) are updated per model.
Random operations inside the model (dropout) cannot be reproduced per model under vmap: such a
model is refused with :class:`VmapUnsupported` (``trainer: auto`` then falls back to ``loop``).
"""
from __future__ import annotations

import copy

import torch
from torch.func import functional_call, stack_module_state, vmap

from datamodels.training.backends.common import (
    EVAL_BATCH,
    as_input,
    autocast,
    check_data,
    check_model,
    dtype_of,
    epoch_draw,
    equal_subsets,
    finish,
    gather_batch,
    model_generator,
    steps_per_epoch,
)
from datamodels.training.losses import make_loss
from datamodels.training.model_factory import DataSpec, init_module
from datamodels.training.optimizers import make_optimizer, needs_closure, set_lr, vmap_refusal
from datamodels.training.schedule import lr_at
from modeldiff.errors import UserError


class VmapUnsupported(UserError):
    """The model or optimiser cannot be trained exactly under vmap (the reason is the message)."""


class Stacked:
    """``M`` models as one set of stacked tensors plus a stateless copy of the module.

    ``params``/``buffers``: ``{name: [M, ...]}``; ``forward(x[M, b, ...]) -> [M, b, K]``.
    """

    def __init__(self, modules):
        self.params, self.buffers = stack_module_state(modules)
        self.base = copy.deepcopy(modules[0]).to("meta")
        self.n_models = len(modules)
        names = {id(t): n for n, t in modules[0].named_parameters()}  # the names stack_module_state uses
        names.update({id(t): n for n, t in modules[0].named_buffers()})
        self.keys = {k: names.get(id(v), k) for k, v in modules[0].state_dict(keep_vars=True).items()}

    def _call(self, params, buffers, x):
        return functional_call(self.base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """Logits ``[M, b, K]`` of ``x[M, b, ...]`` (or of the same ``x[b, ...]`` for all when ``shared_input``)."""
        fn = vmap(self._call, in_dims=(0, 0, None if shared_input else 0), randomness="error")
        try:
            return fn(self.params, self.buffers, x)
        except RuntimeError as err:
            text = str(err)
            if "randomness" in text or "vmap" in text.lower() or "Batching rule not implemented" in text:
                raise VmapUnsupported(f"model {type(self.base).__name__} cannot run under vmap "
                                      f"({text.splitlines()[0][:160]}): use trainer: loop") from None
            raise

    def state_dict(self, i: int) -> dict:
        """Model ``i``'s state dict (CPU), loadable into the module."""
        out = {}
        for key, name in self.keys.items():
            source = self.params if name in self.params else self.buffers
            out[key] = source[name][i].detach().cpu().clone()
        return out

    def finite(self) -> torch.Tensor:
        """``[M]`` bool: every floating parameter and buffer of model ``i`` is finite."""
        ok = torch.ones(self.n_models, dtype=torch.bool)
        for t in (*self.params.values(), *self.buffers.values()):
            if t.is_floating_point():
                ok &= torch.isfinite(t.detach().reshape(self.n_models, -1)).all(1).cpu()
        return ok


def train_vmap(recipe, data, masks, seeds, device="cpu", init_state=None, train_margins=True, progress=None,
               search_path=None):
    """Train ``M = len(seeds)`` models at once; returns a
    :class:`~datamodels.training.backends.common.TrainResult`.

    ``masks``: ``[M, n_train]`` bool, every row keeping the same number of examples.
    """
    reason = vmap_refusal(recipe.optim)
    if reason:
        raise VmapUnsupported(f"trainer vmap refused: {reason}")
    check_data(recipe, data)
    masks = torch.as_tensor(masks, dtype=torch.bool)
    m, n_models = equal_subsets(masks), len(seeds)
    dtype, spec = dtype_of(recipe), DataSpec.of(data)
    modules = [init_module(recipe.model, spec, s, init_state, recipe.init.reset_head, search_path).to(device, dtype)
               for s in seeds]
    check_model(modules[0], recipe, data, device, dtype)
    net = Stacked(modules)
    del modules
    x_all, y_all = as_input(data.x_train, device, dtype), data.y_train.to(device)
    subsets = torch.stack([torch.nonzero(mask).squeeze(1) for mask in masks])  # [M, m]
    gens = [model_generator(s) for s in seeds]
    loss_fn = make_loss(recipe)
    per_model_loss = _per_model_loss(recipe, loss_fn)
    opt = make_optimizer([p for p in net.params.values() if p.requires_grad], recipe.optim)
    closure_step = needs_closure(opt)
    total = steps_per_epoch(m, recipe) * recipe.epochs
    diverged = torch.zeros(n_models, dtype=torch.bool, device=device)
    step = 0
    net.base.train()
    for _ in range(recipe.epochs):
        draws = [epoch_draw(g, m, recipe, data) for g in gens]
        order = torch.stack([s[d.order] for s, d in zip(subsets, draws)]).to(device)  # [M, m]
        for start in range(0, m, recipe.batch_size):
            xb, yb = gather_batch(x_all, y_all, order, draws, start, recipe)
            set_lr(opt, lr_at(step, total, recipe.optim))

            def closure(xb=xb, yb=yb):
                opt.zero_grad(set_to_none=True)
                with autocast(recipe, device):
                    logits = net.forward(xb)
                losses = per_model_loss(logits, yb)  # [M]
                finite = torch.isfinite(losses)
                torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
                return losses

            losses = closure()
            diverged |= ~torch.isfinite(losses.detach())
            opt.step(closure) if closure_step else opt.step()
            step += 1
            if progress is not None:
                progress(1)
    net.base.eval()
    test_logits = predict_stacked(net, data.x_test, device, dtype, recipe)
    train_logits = predict_stacked(net, data.x_train, device, dtype, recipe) if train_margins else None
    return finish(test_logits, train_logits, data, diverged, net.state_dict, "vmap", finite=net.finite())


def _per_model_loss(recipe, loss_fn):
    """``(logits[M, b, K], y[M, b]) -> [M]`` batch-mean loss per model."""
    if recipe.loss == "cross_entropy":  # per-example by construction: one call on the flattened batch
        return lambda logits, y: loss_fn(logits.flatten(0, 1), y.flatten()).view(y.shape).mean(1)
    return vmap(lambda logits, y: loss_fn(logits, y).mean())  # the user's loss sees one model's batch


@torch.no_grad()
def predict_stacked(net: Stacked, x: torch.Tensor, device, dtype, recipe, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Logits ``[M, n, K]`` (float32, CPU) of every model (eval mode) on the same ``x[n, ...]``."""
    net.base.eval()
    outs = []
    for start in range(0, len(x), batch):
        with autocast(recipe, device):
            outs.append(net.forward(as_input(x[start:start + batch], device, dtype), shared_input=True).float().cpu())
    return torch.cat(outs, 1)
