"""Optimisers by name (``sgd``, ``adam``, ``adamw``) or import target, checked before training.

:func:`make_optimizer` builds the recipe's optimiser over any parameters. :func:`vmap_refusal`
says whether the optimiser is exact when applied to the *stacked* parameters of ``M`` models
(``[M, ...]`` tensors, the vmap backend): true for element-wise updates (each number's update
depends only on its own gradient and state, and the step count), false when a norm or statistic
is taken across a whole tensor (LARS, LAMB, Adafactor, global-norm clipping, SAM's ascent step).
"""
from __future__ import annotations

import inspect

import torch

from datamodels.base.errors import UserError, call_user
from datamodels.registry import Registry, accepted_kwargs

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("sgd", torch.optim.SGD)
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("adamw", torch.optim.AdamW)

# The recipe keys each built-in takes and their values when a recipe leaves them empty (sgd: the
# defaults of earlier releases; adam/adamw: torch's). The recipe (datamodels/training/recipe.py)
# validates and fills in from this table; a user optimizer (import target) takes any keys.
BUILTIN_DEFAULTS = {
    "sgd": {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
}
assert list(BUILTIN_DEFAULTS) == OPTIMIZERS.names()

# torch optimisers whose update is element-wise (verified stacked == one by one in tests/test_backends_vmap.py)
ELEMENTWISE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad,
               torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta, torch.optim.Rprop)


def optimizer_class(cfg) -> type:
    """The optimiser class ``cfg.name`` names (a built-in or an import target)."""
    cls = OPTIMIZERS.get(cfg.name, key="optim.name")
    if not callable(cls):
        raise UserError(f"optim.name {cfg.name!r} is a {type(cls).__name__}, not an optimizer class")
    return cls


def check_optimizer(cfg) -> type:
    """Resolve the class and check the recipe's keys against its signature (naming a bad key)."""
    cls = optimizer_class(cfg)
    accepted = accepted_kwargs(cls)
    if accepted is not None:
        for key in ("lr", *cfg.constructor_kwargs()):
            if key not in accepted:
                raise UserError(f"recipe key 'optim.{key}' is not an argument of optimizer {cfg.name!r}: it takes "
                                f"{', '.join(sorted(accepted - {'params'})) or 'no keyword arguments'}")
    return cls


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``params`` (a list of tensors), peak learning rate ``cfg.lr``."""
    cls = check_optimizer(cfg)
    opt = call_user(cls, params, what=f"optimizer {cfg.name!r} built with lr={cfg.lr} and {cfg.constructor_kwargs()}",
                    hint="fix its settings (optim.*)", lr=cfg.lr, **cfg.constructor_kwargs())
    if not hasattr(opt, "param_groups") or not callable(getattr(opt, "step", None)):
        raise UserError(f"optimizer {cfg.name!r} returned {type(opt).__name__}, which has no step() and "
                        f"param_groups: give a torch.optim.Optimizer subclass")
    return opt


def vmap_refusal(cfg) -> str | None:
    """``None`` when the optimiser is exact on stacked parameters, else the reason (one line)."""
    cls = optimizer_class(cfg)
    flag = getattr(cls, "elementwise", None)
    if flag is True:
        return None
    if flag is False:
        return (f"optimizer {cfg.name!r} declares elementwise = False (its update takes norms or statistics over "
                f"whole tensors, like LARS/LAMB or SAM's ascent step), so stacking the models' parameters would "
                f"mix them: use trainer: loop")
    if isinstance(cls, type) and cls in ELEMENTWISE:
        return None
    return (f"optimizer {cfg.name!r} is not known to be element-wise, so applying it to the stacked parameters "
            f"of several models may not be exact (norms over whole tensors as in LARS/LAMB, global-norm clipping, "
            f"SAM's ascent step): use trainer: loop, or set the class attribute elementwise = True if every "
            f"number's update depends only on its own gradient and state")


def needs_closure(opt) -> bool:
    """True for a user optimiser whose ``step`` takes a ``closure`` (SAM-style: it re-evaluates the
    loss itself); torch's own optimisers are stepped without one (their closure is optional)."""
    if type(opt).__module__.startswith("torch.optim") and not isinstance(opt, torch.optim.LBFGS):
        return False
    flag = getattr(opt, "needs_closure", None)
    if flag is not None:
        return bool(flag)
    try:
        return "closure" in inspect.signature(opt.step).parameters
    except (TypeError, ValueError):
        return False


def set_lr(opt, lr: float) -> None:
    """Set the learning rate of every parameter group (the schedule's value for this step)."""
    for group in opt.param_groups:
        group["lr"] = lr


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else ""
