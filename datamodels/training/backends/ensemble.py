"""The ``ensemble`` backend: the grouped-convolution trainer for the built-in architectures
(:func:`datamodels.training.ensemble_trainer.train_ensemble`) behind the common result type."""
from __future__ import annotations

from datamodels.base.errors import UserError
from datamodels.training.backends.common import TrainResult, check_data
from datamodels.training.optimizers import vmap_refusal


def train_grouped(recipe, data, masks, seeds, device="cpu", init_state=None, train_margins=True, progress=None,
                  batches=None, search_path=None) -> TrainResult:
    """Train ``M = len(seeds)`` built-in models as one grouped-convolution ensemble."""
    from datamodels.training.ensemble_trainer import train_ensemble
    from datamodels.training.models import extract_single

    if not recipe.model.builtin:
        raise UserError(f"trainer ensemble trains the built-in architectures only, not model.target "
                        f"{recipe.model.target!r}: use trainer vmap, loop or auto")
    reason = vmap_refusal(recipe.optim)
    if reason:  # the grouped parameters are stacked models too
        raise UserError(f"trainer ensemble refused: {reason}")
    check_data(recipe, data)
    res = train_ensemble(recipe, data, masks, seeds, device, init_state=init_state, train_margins=train_margins,
                         batches=batches, progress=progress)
    net = res.net
    return TrainResult(res.test_logits, res.test_margins, res.train_margins, res.accuracy, res.diverged,
                       lambda i: extract_single(net, i), "ensemble", res.fit)
