"""A user's own training function as a backend: ``trainer: {target: "pkg.mod:train_fn", kwargs: {...}}``.

Contract: ``train_fn(model, x, y, *, seed: int, device: str, recipe, **kwargs) -> nn.Module`` is
called once per model with

- ``model``: the recipe's model, initialised from ``seed`` (as every backend does), on ``device``,
  in the recipe's dtype, train mode;
- ``x[m, *input_shape]``, ``y[m]``: the model's training subset (dataset order) on ``device``
  (floating inputs in the recipe's dtype; integer inputs unchanged);
- the global torch RNG seeded with ``torch.manual_seed(seed)`` (restored afterwards).

It trains however it likes (its own loop, optimiser, augmentation, schedule) and returns the
trained module (``model`` itself or another), or ``(module, info)`` with ``info`` a mapping that
reports ``epochs`` and ``steps`` run (recorded in the store; -1 when not reported). A recipe with
``until: {train_loss: L, max_epochs: E}`` hands the target to ``train_fn`` in ``recipe.until``
(:class:`~datamodels.training.fit.UntilConfig`, whose ``checks_per_epoch`` says how finely the
recipe wants the fit checked); whether the returned model met it is measured
here, as for every backend: its eval-mode loss and accuracy on ``x, y`` (the recipe's loss), so a
model that did not is recorded as having reached ``max_epochs`` first. The module is checked: an ``nn.Module`` with finite weights
mapping ``x[B, *input_shape]`` to logits ``[B, K]``. Calling ``train_fn`` by hand the same way gives
the same model (tests/test_backends_user_fn.py).
"""
from __future__ import annotations

import torch
from torch import nn

from datamodels.base.errors import UserError, call_user
from datamodels.registry import accepted_kwargs, resolve_target
from datamodels.training.backends.common import (
    as_input,
    augments,
    autocast,
    dtype_of,
    finish,
    params_finite,
    predict_module,
    seeded,
)
from datamodels.training.model_factory import DataSpec, check_output, init_module


def resolve_train_fn(recipe):
    """The recipe's train_fn (checked to be callable and to take the contract's keywords)."""
    target = recipe.trainer["target"]
    fn = resolve_target(target, what="trainer.target")
    if not callable(fn):
        raise UserError(f"trainer.target {target!r} is a {type(fn).__name__}, not a function "
                        f"train_fn(model, x, y, *, seed, device, recipe)")
    accepted = accepted_kwargs(fn)
    if accepted is not None:
        missing = [k for k in ("seed", "device", "recipe", *recipe.trainer["kwargs"]) if k not in accepted]
        if missing:
            raise UserError(f"trainer.target {target!r} does not take the keyword(s) {', '.join(missing)}: its "
                            f"signature must be train_fn(model, x, y, *, seed, device, recipe, ...)")
    return fn


def train_user_fn(recipe, data, masks, seeds, device="cpu", init_state=None, train_margins=True, progress=None,
                  search_path=None):
    """Train ``M = len(seeds)`` models with the recipe's train_fn, one after the other."""
    target = recipe.trainer["target"]
    if augments(recipe):
        raise UserError(f"augment is applied by the built-in training loops only; trainer.target {target!r} gets "
                        f"the raw subset: set augment to all off and augment inside train_fn")
    fn = resolve_train_fn(recipe)
    masks = torch.as_tensor(masks, dtype=torch.bool)
    dtype, spec = dtype_of(recipe), DataSpec.of(data)
    states, test_logits, train_logits, fit = [], [], [], _FitRows(recipe, len(seeds))
    for mask, seed in zip(masks, seeds):
        model = init_module(recipe.model, spec, seed, init_state, recipe.init.reset_head, search_path)
        model = model.to(device, dtype).train()
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        x = as_input(data.x_train[mask], device, dtype)
        y = data.y_train[mask].to(device)
        with seeded(seed, device):
            trained = call_train_fn(fn, target, model, x, y, int(seed), str(device), recipe)
        trained, info = _split_info(trained, target)
        check_trained(trained, target, data, device, dtype, spec, expected)
        states.append({k: v.detach().cpu().clone() for k, v in trained.state_dict().items()})
        fit.add(len(states) - 1, trained, x, y, info, device)
        test_logits.append(predict_module(trained, data.x_test, device, dtype, recipe))
        if train_margins:
            train_logits.append(predict_module(trained, data.x_train, device, dtype, recipe))
        if progress is not None:
            progress(1)
    return finish(torch.stack(test_logits), torch.stack(train_logits) if train_margins else None, data,
                  torch.zeros(len(seeds), dtype=torch.bool), lambda i: states[i], "train_fn", fit=fit.record())


def _split_info(returned, target):
    """``(module, info)`` of what train_fn returned: a module, or ``(module, {epochs, steps})``."""
    if isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[1], dict):
        info = returned[1]
        unknown = sorted(set(info) - {"epochs", "steps"})
        if unknown:
            raise UserError(f"trainer.target {target!r} reported unknown key(s) {', '.join(unknown)}: its info may "
                            f"hold epochs and steps")
        for key, value in info.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserError(f"trainer.target {target!r} reported {key}={value!r}: a count >= 0 is expected")
        return returned[0], info
    return returned, {}


class _FitRows:
    """The :class:`~datamodels.training.fit.FitRecord` of train_fn models, one row at a time."""

    def __init__(self, recipe, n_models: int):
        from datamodels.training.fit import NO_TARGET, FitTracker
        from datamodels.training.losses import make_loss

        self.recipe, self.loss_fn = recipe, make_loss(recipe)
        self.tracker = FitTracker(recipe, n_models, 1)  # curve width: the most epochs
        self.status = torch.full((n_models,), NO_TARGET, dtype=torch.uint8)
        self.loss = torch.full((n_models,), float("nan"), dtype=torch.float64)
        self.acc, self.epochs, self.steps = self.loss.clone(), torch.full((n_models,), -1), torch.full((n_models,), -1)

    def add(self, i, module, x, y, info, device) -> None:
        from datamodels.training.fit import HIT_MAX, REACHED, subset_fit

        module.eval()
        with autocast(self.recipe, device):
            loss, acc = subset_fit(lambda xb: module(xb[0]).unsqueeze(0), x, y,
                                   torch.arange(len(y), device=y.device).unsqueeze(0), self.loss_fn)
        self.loss[i], self.acc[i] = loss[0], acc[0]
        self.epochs[i], self.steps[i] = info.get("epochs", -1), info.get("steps", -1)
        until = self.recipe.until
        if until.active:
            self.status[i] = REACHED if bool(until.met(loss, acc)[0]) else HIT_MAX

    def record(self):
        from datamodels.training.fit import FitRecord

        return FitRecord(self.loss, self.acc, self.epochs, self.steps, self.status, self.tracker.curve, {})


def call_train_fn(fn, target, model, x, y, seed, device, recipe):
    return call_user(fn, model, x, y, what=f"trainer.target {target!r}", hint="fix train_fn", seed=seed,
                     device=device, recipe=recipe, **recipe.trainer["kwargs"])


def check_trained(trained, target, data, device, dtype, spec, expected: dict | None = None) -> None:
    """Refuse a returned object that is not a finite ``nn.Module`` giving logits ``[B, K]``, or whose parameter
    names and shapes differ from ``expected`` (``{name: shape}`` of the model target's module): every later
    command rebuilds the model from the model target and loads the saved weights into it."""
    if not isinstance(trained, nn.Module):
        raise UserError(f"trainer.target {target!r} returned {type(trained).__name__}: train_fn must return the "
                        f"trained torch.nn.Module")
    if expected is not None:
        got = {k: tuple(v.shape) for k, v in trained.state_dict().items()}
        if got != expected:
            missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
            shape = [k for k in expected if k in got and got[k] != expected[k]]
            what = (f"missing {', '.join(missing[:3])}" if missing else f"extra {', '.join(extra[:3])}" if extra
                    else f"{shape[0]} has shape {list(got[shape[0]])}, not {list(expected[shape[0]])}")
            raise UserError(f"trainer.target {target!r} returned a model whose parameters differ from the model "
                            f"target's ({what}): train_fn must train and return the model it is given (or one of "
                            f"the same architecture), or later commands could not rebuild it")
    if not params_finite(trained.state_dict()):
        raise UserError(f"trainer.target {target!r} returned a model with NaN or infinite weights: lower its "
                        f"learning rate or fix train_fn")
    check_output(trained, as_input(data.x_test[:2], device, dtype), spec.num_classes, f"trainer.target {target!r}")
