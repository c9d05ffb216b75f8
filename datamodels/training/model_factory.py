"""Build one model from a recipe's ``model`` section: a built-in architecture or a user target.

Every backend initialises model ``i`` the same way, from ``seeds[i]`` alone: the global torch RNG is
seeded with ``torch.manual_seed(seed)`` (inside a forked RNG state, so nothing outside changes) and
the model is built. A user callable ``make_net(**kwargs)`` receives ``num_classes`` and
``input_shape`` when its signature accepts them, and must return an ``nn.Module`` mapping
``x[B, *input_shape]`` to logits ``[B, K]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from datamodels.base.errors import UserError, call_user
from datamodels.registry import Registry, accepted_kwargs, resolve_target
from datamodels.training.models import ARCHITECTURES, build_model

MODELS = Registry("model")
for _name, _cls in ARCHITECTURES.items():
    MODELS.register(_name, _cls)


@dataclass(frozen=True)
class DataSpec:
    """What building a model needs to know about the data."""

    num_classes: int
    input_shape: tuple  # one example's shape, e.g. (C, H, W), (d,), (T,)
    mean: tuple = ()  # per-channel statistics (built-in image models normalise with them)
    std: tuple = ()

    @classmethod
    def of(cls, data) -> "DataSpec":
        """From a :class:`~datamodels.data.dataset.Dataset`."""
        return cls(data.num_classes, tuple(data.x_train.shape[1:]), tuple(data.mean), tuple(data.std))

    @classmethod
    def from_metadata(cls, d: dict) -> "DataSpec":
        """From a store's ``metadata["dataset"]`` record."""
        shape = d.get("input_shape") or d.get("image_shape")
        return cls(int(d["num_classes"]), tuple(shape), tuple(d.get("mean") or ()), tuple(d.get("std") or ()))


def build_module(cfg, spec: DataSpec, search_path: str | None = None) -> nn.Module:
    """One untrained model (float32, CPU) for the recipe's ``model`` section ``cfg``."""
    if cfg.builtin:
        if len(spec.input_shape) != 3:
            raise UserError(f"built-in model {cfg.arch!r} takes images [C, H, W] but the inputs have shape "
                            f"{list(spec.input_shape)}: give your own model as model.target")
        return build_model(cfg, 1, spec.num_classes, spec.input_shape, spec.mean, spec.std)
    fn = resolve_target(cfg.target, what="model.target", search_path=search_path)
    if not callable(fn):
        raise UserError(f"model.target {cfg.target!r} is a {type(fn).__name__}, not a callable returning an nn.Module")
    kwargs = dict(cfg.kwargs)
    accepted = accepted_kwargs(fn)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown == ["width"]:  # model.width lands in kwargs (recipe.ModelConfig): say so in its words
            raise UserError(f"model.target {cfg.target!r} takes no 'width' argument, so model.width cannot be "
                            f"passed to it: remove model.width and size the model through model.kwargs (it accepts "
                            f"{', '.join(sorted(accepted)) or 'no keyword arguments'})")
        if unknown:
            raise UserError(f"model.target {cfg.target!r} does not take model.kwargs {', '.join(unknown)}: it accepts "
                            f"{', '.join(sorted(accepted)) or 'no keyword arguments'}")
    for key, value in (("num_classes", spec.num_classes), ("input_shape", tuple(spec.input_shape))):
        if accepted is None and key not in kwargs or accepted is not None and key in accepted:
            kwargs.setdefault(key, value)
    module = call_user(fn, what=f"model.target {cfg.target!r}", hint="fix it or model.kwargs", **kwargs)
    if not isinstance(module, nn.Module):
        raise UserError(f"model.target {cfg.target!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def init_module(cfg, spec: DataSpec, seed: int, init_state: dict | None = None, reset_head: bool = True,
                search_path: str | None = None) -> nn.Module:
    """Model ``seed``'s starting point: built under ``torch.manual_seed(seed)`` (the caller's RNG state
    is left untouched), then optionally loaded from ``init_state`` (a one-model state dict), with a
    built-in model's ``head.*`` kept fresh when ``reset_head``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        module = build_module(cfg, spec, search_path)
    if init_state is not None:
        state = module.state_dict()
        fresh_head = {k: v for k, v in state.items() if k.startswith("head.")} if reset_head else {}
        try:
            module.load_state_dict({**{k: v.clone() for k, v in init_state.items()}, **fresh_head})
        except RuntimeError as err:
            raise UserError(f"init.checkpoint does not fit model {cfg.label!r}: {_first_line(err)}") from None
    return module


def check_output(module: nn.Module, x: torch.Tensor, num_classes: int, what: str) -> None:
    """Refuse (one line naming ``what``) a module whose output on ``x[b, *input_shape]`` is not finite
    logits ``[b, K]``."""
    with torch.no_grad():
        was = module.training
        module.eval()
        out = call_user(module, x, what=f"{what}: the model on inputs of shape {list(x.shape)}",
                        hint="it must map x[B, *input_shape] to logits [B, K]")
        module.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), num_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{what}: the model returned {got} for inputs of shape {list(x.shape)}; it must return "
                        f"logits [B, K] = {[len(x), num_classes]}")
    if out.is_floating_point() and not bool(torch.isfinite(out).all()) and (
            not x.is_floating_point() or bool(torch.isfinite(x).all())):
        raise UserError(f"{what}: the untrained model returned NaN or infinite logits for finite inputs of shape "
                        f"{list(x.shape)}: every model would diverge; check its initialisation and forward")


def check_user_model(cfg, data, search_path: str | None = None) -> None:
    """Build the user model of ``cfg`` once (seed 0, the caller's RNG untouched) and check that it maps two
    test inputs ``x[2, *input_shape]`` of ``data`` to logits ``[2, K]``: a bad target (not importable, wrong
    type or output shape, a ``model.width`` it cannot take) is refused in one line before a store exists."""
    module = init_module(cfg, DataSpec.of(data), seed=0, search_path=search_path)
    x = data.x_test[:2]
    check_output(module, x.float() if x.is_floating_point() else x, data.num_classes, f"model.target {cfg.target!r}")


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else ""
