"""The ``loop`` backend: one model at a time, any module, any optimiser (SAM-style ones included).

Each model follows the shared per-model semantics (:mod:`datamodels.training.backends.common`);
random operations inside the model (dropout) draw from the global RNG seeded with the model's seed.
An optimiser whose ``step`` takes a closure (:func:`~datamodels.training.optimizers.needs_closure`)
gets one that recomputes the batch's loss and gradients.
"""
from __future__ import annotations

import torch

from datamodels.training.backends.common import (
    as_input,
    autocast,
    check_data,
    check_model,
    dtype_of,
    epoch_draw,
    finish,
    gather_batch,
    model_generator,
    params_finite,
    predict_module,
    seeded,
    steps_per_epoch,
)
from datamodels.training.fit import FitRecord, FitTracker, subset_fit
from datamodels.training.losses import make_loss
from datamodels.training.model_factory import DataSpec, init_module
from datamodels.training.optimizers import make_optimizer, needs_closure, set_lr
from datamodels.training.schedule import lr_at


def train_loop(recipe, data, masks, seeds, device="cpu", init_state=None, train_margins=True, progress=None,
               search_path=None):
    """Train ``M = len(seeds)`` models one after the other; returns a
    :class:`~datamodels.training.backends.common.TrainResult`.

    ``masks``: ``[M, n_train]`` bool (rows may keep different numbers of examples).
    """
    check_data(recipe, data)
    masks = torch.as_tensor(masks, dtype=torch.bool)
    dtype, spec = dtype_of(recipe), DataSpec.of(data)
    x_all, y_all = as_input(data.x_train, device, dtype), data.y_train.to(device)
    loss_fn = make_loss(recipe)
    states, test_logits, train_logits, diverged, fits = [], [], [], [], []
    for mask, seed in zip(masks, seeds):
        module = init_module(recipe.model, spec, seed, init_state, recipe.init.reset_head, search_path)
        module = module.to(device, dtype)
        if not states:
            check_model(module, recipe, data, device, dtype)
        tracker = FitTracker(recipe, 1, steps_per_epoch(int(mask.sum()), recipe))
        with seeded(seed, device):
            bad = train_one(module, recipe, data, torch.nonzero(mask).squeeze(1).to(device), seed, x_all, y_all,
                            loss_fn, device, progress, tracker)
        fits.append(FitRecord.of(tracker))
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        states.append(state)
        diverged.append(bad or not params_finite(state))
        test_logits.append(predict_module(module, data.x_test, device, dtype, recipe))
        if train_margins:
            train_logits.append(predict_module(module, data.x_train, device, dtype, recipe))
    return finish(torch.stack(test_logits), torch.stack(train_logits) if train_margins else None, data,
                  torch.tensor(diverged), lambda i: states[i], "loop", fit=FitRecord.stack(fits))


def train_one(module, recipe, data, subset, seed, x_all, y_all, loss_fn, device, progress=None, tracker=None) -> bool:
    """Train one module in place on the dataset rows ``subset``; True when its loss became non-finite.

    ``tracker``: a one-model :class:`~datamodels.training.fit.FitTracker` (made here when None) that
    measures the fit (at epoch ends, and inside epochs under ``until.checks_per_epoch``), stops at the
    recipe's ``until`` target and keeps checkpoints."""
    opt = make_optimizer([p for p in module.parameters() if p.requires_grad], recipe.optim)
    closure_step = needs_closure(opt)
    gen, m = model_generator(seed), len(subset)
    tracker = tracker or FitTracker(recipe, 1, steps_per_epoch(m, recipe))
    total = steps_per_epoch(m, recipe) * tracker.epochs  # under until: the schedule is laid over max_epochs
    diverged, step = False, 0
    state = lambda i: {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}  # noqa: E731

    def measure():
        """The module's eval-mode loss and accuracy on its subset ``([1], [1])``."""
        module.eval()
        with autocast(recipe, device):
            out = subset_fit(lambda x: module(x[0]).unsqueeze(0), x_all, y_all, subset.unsqueeze(0), loss_fn)
        module.train()
        return out

    module.train()
    for epoch in range(tracker.epochs):
        draw = epoch_draw(gen, m, recipe, data)
        order = subset[draw.order.to(subset.device)].unsqueeze(0)
        tracker.checks_in_epoch(epoch)
        for in_epoch, start in enumerate(range(0, m, recipe.batch_size), 1):
            xb, yb = gather_batch(x_all, y_all, order, [draw], start, recipe)
            xb, yb = xb[0], yb[0]
            set_lr(opt, lr_at(step, total, recipe.optim))

            def closure(xb=xb, yb=yb):
                opt.zero_grad(set_to_none=True)
                with autocast(recipe, device):
                    logits = module(xb)
                loss = loss_fn(logits, yb).mean()
                if bool(torch.isfinite(loss)):  # a diverged model stops receiving gradients (it is flagged)
                    loss.backward()
                return loss

            loss = closure()
            diverged |= not bool(torch.isfinite(loss))
            opt.step(closure) if closure_step else opt.step()
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
    if 0 in tracker.snapshots:  # the weights it stopped at (closest / nearest: maybe an earlier check)
        module.load_state_dict(tracker.snapshots[0])
    module.eval()
    return diverged
