"""Diagnostics of a sample of a store's models, each on its own training subset (``store.masks[i]``).

Models come from :meth:`Store.load_model` (plain one-model nets, eval mode: batch norm uses its
running statistics, so the loss is a function of the parameters only). The loss is the recipe's
(cross-entropy with its label smoothing, or the recipe's own loss), on the un-augmented training
images of the subset; weight decay is not included (see :mod:`modeldiff.diagnostics.hvp`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from datamodels.base.errors import UserError
from modeldiff.diagnostics.hvp import TrainingLoss, cross_entropy_loss
from modeldiff.diagnostics.model import DiagnosticSettings, diagnose_model, optimizer_terms
from modeldiff.diagnostics.summary import summarize


def recipe_loss(recipe):
    """The recipe's per-example loss ``(logits[B, K], y[B]) -> [B]``."""
    try:
        from datamodels.training.losses import make_loss
    except ImportError:  # releases before pluggable losses: cross-entropy only
        return cross_entropy_loss(recipe.optim.label_smoothing)
    return make_loss(recipe)


def sgd_momentum(recipe) -> tuple[float, bool]:
    """``(β, nesterov)`` of an SGD recipe (unset keys: momentum 0.9, Nesterov); ``(0, False)`` otherwise."""
    o = recipe.optim
    if getattr(o, "name", "sgd") != "sgd":
        return 0.0, False
    beta = 0.9 if o.momentum is None else float(o.momentum)
    nesterov = True if o.nesterov is None else bool(o.nesterov)
    return beta, nesterov and beta > 0


def mean_learning_rate(recipe, n_examples: int) -> float:
    """Mean of the schedule's learning rate over all SGD steps of a model trained on ``n_examples``."""
    from datamodels.training.schedule import lr_at

    total = math.ceil(n_examples / recipe.batch_size) * recipe.train_epochs
    return float(np.mean([lr_at(s, total, recipe.optim) for s in range(total)]))


def pick_models(store, n_models: int | None) -> list[int]:
    """The first ``n_models`` finished models with saved weights (all when ``None``)."""
    rows = [int(i) for i in store.valid_indices() if store.has_weights(int(i))]
    if not rows:
        raise UserError(f"{store.path} has no finished models with saved weights: train into it first")
    return rows if n_models is None else rows[:n_models]


def diagnose_store(store, n_models: int | None = None, settings: DiagnosticSettings | None = None,
                   device="cpu", dtype: torch.dtype | None = None, batch_size: int = 1024,
                   progress=None, step=None) -> dict:
    """Per-model diagnostics of ``store`` and their summary (mean, ci_low, ci_high over models).

    Args:
        n_models: first N finished models with weights (default all).
        dtype: compute precision (default: the store's).
        batch_size: examples per chunk of every pass (memory bound).
        progress: optional callable ``progress(model_index)`` after each model.
        step: optional callable ``step(model_index, hvp_count)`` after each Hessian-vector product
            (so a long model never runs silently).
    Returns:
        ``{"store", "name", "recipe_name", "models": [entry, ...], "summary": {key: {...}}}``.
    """
    st = settings or DiagnosticSettings()
    recipe = store.recipe
    data = store.load_dataset()
    loss_fn = recipe_loss(recipe)
    beta, nesterov = sgd_momentum(recipe)
    entries = []
    for i in pick_models(store, n_models):
        mask = torch.as_tensor(np.array(store.masks[i]), dtype=torch.bool)
        x, y = data.x_train[mask], data.y_train[mask]
        model = store.load_model(i, device)
        loss = TrainingLoss(model, x, y, loss_fn, batch_size=batch_size, device=device, dtype=dtype)
        if step is not None:
            loss.on_hvp = lambda k, i=i: step(i, k)
        entry = {"model": i}
        entry.update(diagnose_model(loss, st, seed=st.seed + 1000 * i))
        entry.update(optimizer_terms(entry, recipe.optim.lr, recipe.batch_size, beta, nesterov,
                                     eta_eff=mean_learning_rate(recipe, int(mask.sum()))))
        if getattr(recipe.optim, "name", "sgd") != "sgd":
            entry["eos_threshold_momentum"] = math.nan
        entries.append(entry)
        del model, loss
        if progress is not None:
            progress(i)
    return {"store": str(store.path), "name": recipe.name, "models": entries, "summary": summarize(entries)}
