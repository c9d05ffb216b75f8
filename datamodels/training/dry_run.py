"""One dry step of a recipe's user code before a store exists: the user loss on a tiny batch, the user
optimizer's construction and one ``step()``, and the user model on an evaluation-sized batch.

Without it, an optimizer that rejects its settings or a loss that fails would raise only inside the
first training chunk, after the store folder was made, leaving an empty store that then refuses
the fixed recipe (a resume must match the settings it was made with).
"""
from __future__ import annotations

import torch

from datamodels.base.errors import call_user
from datamodels.registry import is_target


def dry_run(recipe, data) -> None:
    """Run the recipe's user loss, optimizer and model once on ``data`` (a :class:`Dataset`); any
    failure is one :class:`~datamodels.base.errors.UserError` line naming the target. Built-ins are skipped."""
    from datamodels.training.backends.common import EVAL_BATCH, dtype_of
    from datamodels.training.losses import make_loss
    from datamodels.training.model_factory import DataSpec, check_output, init_module
    from datamodels.training.optimizers import make_optimizer, needs_closure

    dtype, spec = dtype_of(recipe), DataSpec.of(data)
    if is_target(recipe.loss):
        logits = torch.zeros(2, data.num_classes, dtype=dtype, requires_grad=True)
        y = data.y_train[:2]
        value = make_loss(recipe)(logits, y)  # checked: per-example losses [B]
        call_user(lambda: value.sum().backward(), what=f"loss {recipe.loss!r} (backward pass)",
                  hint="it must be differentiable in the logits")
    module = None
    if is_target(recipe.optim.name):
        module = init_module(recipe.model, spec, seed=0)
        params = [p for p in module.parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.full_like(p, 1e-3)
        opt = make_optimizer(params, recipe.optim)

        def closure():  # what the loop backend passes to a SAM-style step: zero, recompute, backpropagate
            opt.zero_grad()
            value = sum((p * p).sum() for p in params) * 1e-3
            value.backward()
            return value

        step = (lambda: opt.step(closure)) if needs_closure(opt) else opt.step
        call_user(step, what=f"optimizer {recipe.optim.name!r} (one step)", hint="fix the optimizer or optim.*")
    if not recipe.model.builtin:
        module = module if module is not None else init_module(recipe.model, spec, seed=0)
        n = min(EVAL_BATCH, data.n_test)
        x = data.x_test[:n]
        check_output(module, x.float() if x.is_floating_point() else x, data.num_classes,
                     f"model.target {recipe.model.target!r} (evaluation batch of {n}: the model must accept "
                     f"batches of up to {EVAL_BATCH} examples)")
