"""Learning-rate schedules as a multiplier of the peak rate at each SGD step.

``optim.schedule`` names one (checked against :data:`SCHEDULES`) or is an import target of
either a function ``fn(t, optim) -> multiplier`` of the training progress ``t = step / total_steps``
in ``[0, 1)``, or a PyTorch scheduler class (``"torch.optim.lr_scheduler:CosineAnnealingLR"``) with its
keyword arguments in ``optim.schedule_kwargs``. A PyTorch scheduler is run once on a stand-in
optimiser whose rate is 1, so its rate at each step is the multiplier of ``optim.lr``; when it
needs the length of training and ``schedule_kwargs`` does not give it, ``total_steps`` (OneCycleLR)
or ``T_max`` (CosineAnnealingLR) is the number of optimiser steps and ``max_lr`` is 1.

Default: ``triangle`` with ``warmup_fraction`` 0.2 for every optimiser (SGD, Adam, AdamW alike):
a linear warm-up over the first 20 % of steps to ``optim.lr``, then a linear decay to 0. Set
``schedule: constant`` for a fixed rate.
"""
from __future__ import annotations

import inspect
import json
import math

from datamodels.base.errors import UserError, call_user
from datamodels.registry import Registry

DEFAULT_SCHEDULE = "triangle"
DEFAULT_TEXT = ("triangle: linear warm-up over the first 20 % of steps (optim.warmup_fraction) to optim.lr, then "
                "linear decay to 0, for every optimizer; constant | cosine | step | a PyTorch LR scheduler class")

# the schedule under a fit target (datamodels.training.fit), for --help (no torch import here)
UNTIL_TEXT = ("training to a fit (recipe key until: {train_loss: L and/or train_accuracy: A, max_epochs: E}): each "
              "model stops at the first epoch end where its eval-mode loss (the recipe's loss, no augmentation) on its "
              "own training subset is <= L; the learning-rate schedule is laid over max_epochs, so a model that never "
              "meets the target trains as epochs: E would, and one that meets it stops part-way through the schedule; "
              "models that reach max_epochs first are kept and counted. keep_checkpoints: [5, {train_loss: 0.5}, all] "
              "keeps checkpoints; `modeldiff checkpoint` makes a store of the models at one")

SCHEDULES = Registry("optim.schedule")
SCHEDULES.register("constant", lambda t, cfg: 1.0, help="the peak rate throughout")


@SCHEDULES.register("triangle", help="linear warm-up over warmup_fraction of training, then linear decay to 0")
def _triangle(t: float, cfg) -> float:
    """Linear warm-up over ``warmup_fraction`` of training, then linear decay to zero."""
    w = cfg.warmup_fraction
    return t / w if (w > 0 and t < w) else (1 - t) / (1 - w) if w < 1 else 1.0


SCHEDULES.register("cosine", lambda t, cfg: 0.5 * (1 + math.cos(math.pi * t)), help="half a cosine from 1 to 0")
SCHEDULES.register("step", lambda t, cfg: 0.1 ** ((t >= 0.5) + (t >= 0.75)),  # /10 at 50 % and 75 %
                   help="divided by 10 at 50 % and at 75 % of training")

_TABLES: dict[tuple, list[float]] = {}


def is_torch_scheduler(obj) -> bool:
    """True for a PyTorch learning-rate scheduler class."""
    if not isinstance(obj, type):
        return False
    import torch

    return issubclass(obj, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))


def schedule_function(cfg):
    """The recipe's schedule resolved: a built-in or user multiplier function, or a PyTorch class."""
    fn = SCHEDULES.get(cfg.schedule, key="optim.schedule")
    if not callable(fn):
        raise UserError(f"optim.schedule {cfg.schedule!r} is a {type(fn).__name__}: give a schedule name, a function "
                        f"fn(t, optim) -> multiplier or a PyTorch LR scheduler class")
    if is_torch_scheduler(fn) and issubclass(fn, __import__("torch").optim.lr_scheduler.ReduceLROnPlateau):
        raise UserError("optim.schedule ReduceLROnPlateau follows a validation metric, which training here does not "
                        "compute: choose a schedule of the step count")
    return fn


def _torch_table(cls, cfg, total: int) -> list[float]:
    """Multipliers of ``cls`` (a PyTorch scheduler) for ``total`` steps, computed once per settings."""
    kwargs = dict(cfg.schedule_kwargs)
    key = (cfg.schedule, json.dumps(kwargs, sort_keys=True, default=str), total)
    if key in _TABLES:
        return _TABLES[key]
    import warnings

    import torch

    accepted = set(inspect.signature(cls).parameters)
    if "total_steps" in accepted and "total_steps" not in kwargs and "epochs" not in kwargs:
        kwargs["total_steps"] = total
    if "T_max" in accepted and "T_max" not in kwargs:
        kwargs["T_max"] = total
    if "max_lr" in accepted and "max_lr" not in kwargs:
        kwargs["max_lr"] = 1.0
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1.0)
    sched = call_user(cls, opt, **kwargs, what=f"optim.schedule {cfg.schedule!r} (built with {kwargs})",
                      hint="check optim.schedule_kwargs")
    table = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(total):
            table.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
    _TABLES[key] = table
    return table


def check_schedule(cfg, total: int = 10) -> None:
    """Resolve the schedule and run it for ``total`` steps (one line naming the problem otherwise)."""
    for step in range(total):
        call_user(lr_at, step, total, cfg, what=f"optim.schedule {cfg.schedule!r}")


def lr_at(step: int, total_steps: int, cfg) -> float:
    """Learning rate for ``step`` in ``[0, total_steps)`` (``cfg``: the recipe's ``optim`` section)."""
    fn = schedule_function(cfg)
    if is_torch_scheduler(fn):
        table = _torch_table(fn, cfg, max(total_steps, 1))
        return cfg.lr * max(table[min(step, len(table) - 1)], 0.0)
    t = step / max(total_steps, 1)
    return cfg.lr * max(fn(t, cfg), 0.0)
