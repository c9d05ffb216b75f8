"""Trainer backends: how ``M`` models of one recipe are trained, all with one per-model semantics.

``recipe.trainer`` picks one (registry :data:`TRAINERS`):

- ``ensemble``: the grouped-convolution trainer (built-in architectures);
- ``vmap``: any ``nn.Module``, ``M`` at once with ``torch.func`` (element-wise optimisers only);
- ``loop``: one model at a time, any module and optimiser (SAM-style closures included);
- ``{target: "pkg.mod:train_fn", kwargs: {...}}``: the user's own function, once per model;
- ``auto``: the fastest exact one (:func:`choose_backend`), logged on one line.

Every backend returns a :class:`~datamodels.training.backends.common.TrainResult`; model ``i``'s
numbers depend only on ``masks[i]`` and ``seeds[i]`` (see :mod:`~datamodels.training.backends.common`).
"""
from __future__ import annotations

import sys

from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from datamodels.registry import Registry

log = get_logger(__name__)

TRAINERS = Registry("trainer")  # each entry: train(recipe, data, masks, seeds, **kw) -> TrainResult
TRAINERS.lazy("auto", "datamodels.training.backends:train_models",
              help="the fastest exact backend for the recipe (choose_backend), logged on one line")
TRAINERS.lazy("ensemble", "datamodels.training.backends.ensemble:train_grouped",
              help="grouped-convolution ensemble (built-in architectures)")
TRAINERS.lazy("vmap", "datamodels.training.backends.vmap:train_vmap",
              help="any nn.Module, M at once with torch.func (element-wise optimizers)")
TRAINERS.lazy("loop", "datamodels.training.backends.loop:train_loop",
              help="one model at a time, any module and optimizer")

_LOGGED: set = set()


def choose_backend(recipe) -> tuple[str, str]:
    """``(backend, reason)`` for the recipe: the one it names, or for ``auto`` the fastest exact one."""
    from datamodels.training.optimizers import vmap_refusal

    trainer = recipe.trainer
    if isinstance(trainer, dict):
        return "train_fn", f"trainer.target {trainer['target']}"
    if trainer != "auto":
        return trainer, "asked for"
    refusal = vmap_refusal(recipe.optim)
    if refusal:
        return "loop", f"optimizer {recipe.optim.name} is not element-wise"
    if recipe.model.builtin:
        return "ensemble", f"built-in {recipe.model.arch} with element-wise optimizer {recipe.optim.name}"
    return "vmap", f"user model with element-wise optimizer {recipe.optim.name}"


def check_recipe(recipe, data=None, *, dry: bool = True) -> str:
    """Resolve every import target of the recipe and check its settings before anything is trained or
    written (one :class:`UserError` line naming the problem). Returns the backend ``auto`` would use.
    With ``data`` and ``dry``, the user's loss, optimizer and model also run once
    (:func:`datamodels.training.dry_run.dry_run`); training workers, whose coordinator did that, pass
    ``dry=False``."""
    from datamodels.training.backends.common import check_data
    from datamodels.training.losses import make_loss
    from datamodels.training.optimizers import check_optimizer, vmap_refusal
    from datamodels.training.schedule import check_schedule

    backend, _ = choose_backend(recipe)
    check_schedule(recipe.optim)
    if backend == "train_fn":
        from datamodels.training.backends.user_fn import resolve_train_fn

        resolve_train_fn(recipe)
    else:
        check_optimizer(recipe.optim)
        make_loss(recipe)
        if backend in ("vmap", "ensemble"):
            reason = vmap_refusal(recipe.optim)
            if reason:
                raise UserError(f"trainer {backend} refused: {reason}")
        if backend == "ensemble" and not recipe.model.builtin:
            raise UserError(f"trainer ensemble trains the built-in architectures only, not model.target "
                            f"{recipe.model.target!r}: use trainer vmap, loop or auto")
        if data is not None:
            check_data(recipe, data)
    if recipe.loader == "ffcv" and backend != "ensemble":
        raise UserError(f"loader ffcv feeds the ensemble backend only, not {backend}: use loader: tensor")
    if data is not None and not recipe.model.builtin:  # import, build and run the user model once, up front
        from datamodels.training.model_factory import check_user_model

        check_user_model(recipe.model, data)
    if dry and data is not None and backend != "train_fn":  # user loss, optimizer and model run once: no empty store
        from datamodels.training.dry_run import dry_run

        dry_run(recipe, data)
    return backend


def train_models(recipe, data, masks, seeds, device="cpu", init_state=None, train_margins=True, progress=None,
                 batches=None, search_path=None):
    """Train ``M = len(seeds)`` models (model ``i`` on ``masks[i]`` from ``seeds[i]``) with the recipe's
    backend; returns a :class:`~datamodels.training.backends.common.TrainResult`.

    ``batches``: the FFCV batch factory (ensemble backend only). ``search_path``: folder to import a
    user model from (recorded by a store).
    """
    backend, reason = choose_backend(recipe)
    if recipe.trainer == "auto":
        _log_once(recipe, backend, reason)
    kw = dict(device=device, init_state=init_state, train_margins=train_margins, progress=progress,
              search_path=search_path)
    if backend == "train_fn":
        from datamodels.training.backends.user_fn import train_user_fn

        return train_user_fn(recipe, data, masks, seeds, **kw)
    train = TRAINERS.get(backend, key="trainer")
    if backend == "ensemble":
        return train(recipe, data, masks, seeds, batches=batches, **kw)
    if batches is not None:
        raise UserError(f"loader ffcv feeds the ensemble backend only, not {backend}: use loader: tensor")
    if backend == "vmap":
        from datamodels.training.backends.vmap import VmapUnsupported

        try:
            return train(recipe, data, masks, seeds, **kw)
        except VmapUnsupported as err:
            if recipe.trainer != "auto":
                raise
            _log_once(recipe, "loop", f"vmap cannot train this model: {err}")
            train = TRAINERS.get("loop")
    return train(recipe, data, masks, seeds, **kw)


def recipe_targets(recipe) -> dict:
    """``{"model.target": {"target", "path"}, ...}``: every import target of the recipe's model,
    optimizer, loss and trainer, with the folder it is imported from (recorded by a store so later
    commands find the user's modules from any working directory; path None when not importable now)."""
    from datamodels.registry import is_target, target_record

    named = {"model.target": recipe.model.target, "optim.name": recipe.optim.name, "loss": recipe.loss,
             "trainer.target": recipe.trainer.get("target") if isinstance(recipe.trainer, dict) else None}
    out = {}
    for key, target in named.items():
        if is_target(target):
            try:
                out[key] = target_record(target)
            except Exception:  # noqa: BLE001 - not importable now: recorded without a folder
                out[key] = {"target": target, "path": None}
    return out


def add_import_paths(folders) -> None:
    """Append recorded folders to ``sys.path`` (after everything else, so nothing is shadowed)."""
    for folder in folders:
        if folder and folder not in sys.path:
            sys.path.append(folder)


def _log_once(recipe, backend: str, reason: str) -> None:
    key = (recipe.name, backend)
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info(f"trainer auto -> {backend} ({reason})")
