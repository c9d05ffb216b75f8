"""A store of the models at a chosen fit, made from another store's kept checkpoints without retraining.

:func:`store_at_checkpoint` writes a new store whose model ``i`` is model ``i`` of the parent at
one of its checkpoints (recipe ``keep_checkpoints``): same masks, seeds and recipe; its outputs
(test logits and margins, training margins, accuracy) and its fit records (training loss on its own
subset, epochs and steps) are computed from the checkpoint's weights, exactly as training computes
them. Every command that takes a store (attribution, diagnostics, counterfactuals, a study's stages)
then runs on the models at that fit. A parent row without the checkpoint (the model never reached
that loss, or its weights are not kept) stays pending in the new store, so it is left out, and
counted. The new store records ``checkpoint_of`` (parent, tags) and cannot be trained further.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from datamodels.base.atomic import atomic_write_text
from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from datamodels.store.fit_rows import fit_row
from datamodels.store.store import Store

log = get_logger(__name__)


def tags_at_loss(store: Store, target: float, rule: str = "first_below") -> dict[int, str]:
    """``{row: tag}``: for each valid model, its first kept checkpoint (by epoch) whose training loss is
    at or below ``target`` (``rule="first_below"``, as ``until`` stops; a model that never got there is
    left out), or its kept checkpoint whose loss is closest to ``target`` (``rule="closest"``)."""
    rec = store.fit_values("checkpoint_records")
    if rec is None:
        raise UserError(f"store {store.path} keeps no checkpoints: train it with keep_checkpoints (e.g. ['all'])")
    tags, out = store.checkpoint_tags(), {}
    rec = np.asarray(store.arrays["checkpoint_records"])
    for i in store.valid_indices(warn=False):
        j = pick_checkpoint(rec[int(i), :, 0], rec[int(i), :, 2], target, rule)
        if j is not None:
            out[int(i)] = tags[j]
    return out


def pick_checkpoint(epochs, losses, target: float, rule: str = "first_below") -> int | None:
    """Index of the checkpoint to take among one model's ``epochs[C]`` / ``losses[C]`` (NaN = not kept):
    the earliest at or below ``target`` (``first_below``), or the one closest to it (``closest``);
    None when there is none."""
    epochs, losses = np.asarray(epochs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    kept = np.isfinite(losses) & np.isfinite(epochs)
    if not kept.any():
        return None
    if rule == "closest":
        return int(np.argmin(np.where(kept, np.abs(losses - target), np.inf)))
    if rule != "first_below":
        raise ValueError(f"rule must be first_below or closest, got {rule!r}")
    below = kept & (losses <= target)
    if not below.any():
        return None
    return int(np.argmin(np.where(below, epochs, np.inf)))


def store_at_checkpoint(store: Store, out, tags, data=None) -> Store:
    """A new store at ``out`` holding model ``i`` of ``store`` at checkpoint ``tags[i]``.

    ``tags``: one tag for every model, or ``{row: tag}`` (rows not named stay pending). A store
    already at ``out`` made from the same parent and tags is reused."""
    from datamodels.training.fit import FitRecord

    data = data if data is not None else store.load_dataset()
    rows = store.valid_indices(warn=False)
    pick = {int(i): tags for i in rows} if isinstance(tags, str) else {int(i): t for i, t in tags.items()}
    for tag in set(pick.values()):
        if tag not in store.checkpoint_tags():
            raise UserError(f"store {store.path} keeps no checkpoint {tag!r}: its checkpoints are "
                            f"{', '.join(store.checkpoint_tags()) or 'none'} (recipe keep_checkpoints)")
    pick = {i: t for i, t in pick.items() if store.checkpoint_path(t, i).is_file()}
    meta = store.metadata
    record = {"store": str(Path(store.path).resolve()), "tags": {str(i): t for i, t in sorted(pick.items())}}
    out = Path(out)
    if (out / "metadata.json").is_file():
        old = json.loads((out / "metadata.json").read_text()).get("checkpoint_of")
        if old == record:
            return Store.open(out, data)
        raise UserError(f"{out} holds another store: choose a new folder for the models at this checkpoint")
    new = Store.create_or_resume(out, store.recipe, data, meta["n_models"], meta["subset_fraction"], meta["seed"],
                                 meta.get("save_weights"), meta["train_margins"])
    new.metadata["checkpoint_of"] = record
    atomic_write_text(out / "metadata.json", json.dumps(new.metadata, indent=1))
    curves = store.fit_values("loss_curve", rows=list(pick)) if pick else None
    for k, (i, tag) in enumerate(sorted(pick.items())):
        state = store.load_checkpoint(tag, i)
        ev = evaluate_state(store, state, data, np.asarray(store.masks[i]))
        _, epoch, step, _ = _record(store, tag, i)
        curve = np.full(store.recipe.train_epochs, np.nan)
        curve[:epoch] = curves[k][:epoch]
        fit = FitRecord(torch.tensor([ev["train_loss"]]), torch.tensor([ev["train_accuracy"]]), torch.tensor([epoch]),
                        torch.tensor([step]), torch.tensor([0], dtype=torch.uint8), torch.from_numpy(curve)[None])
        new.write_row(i, test_logits=ev["test_logits"], test_margins=ev["test_margins"], accuracy=ev["accuracy"],
                      diverged=False, train_margins=ev["train_margins"] if meta["train_margins"] else None,
                      state_dict=state, fit=fit_row(fit, 0, []))
    missing = len(rows) - len(pick)
    if missing:
        log.warning(f"note: {missing} of {len(rows)} models of {store.path} have no such checkpoint; "
                    f"{out} holds the other {len(pick)}")
    return Store.open(out, data)


def _record(store: Store, tag: str, i: int) -> tuple:
    k = store.checkpoint_tags().index(tag)
    epoch, step, loss = store.arrays["checkpoint_records"][i, k]
    return tag, int(epoch), int(step), float(loss)


@torch.no_grad()
def evaluate_state(store: Store, state: dict, data, mask: np.ndarray, device="cpu") -> dict:
    """Outputs and fit of one model of ``store``'s recipe with weights ``state`` (``mask``: its subset)."""
    from datamodels.margins import margin
    from datamodels.training.backends.common import autocast, predict_module
    from datamodels.training.fit import subset_fit
    from datamodels.training.losses import make_loss
    from datamodels.training.models import stack_singles

    recipe = store.recipe
    dtype = torch.float64 if recipe.precision == "float64" else torch.float32
    net = store.build_net(1)
    net.load_state_dict(stack_singles([state]) if recipe.model.builtin else state)
    net = net.to(device, dtype).eval()
    module = _Single(net) if recipe.model.builtin else net
    test_logits = predict_module(module, data.x_test, device, dtype, recipe)
    train_logits = predict_module(module, data.x_train, device, dtype, recipe)
    x_all = data.x_train.to(device, dtype) if data.x_train.is_floating_point() else data.x_train.to(device)
    with autocast(recipe, device):
        loss, acc = subset_fit(lambda x: module(x[0]).unsqueeze(0), x_all, data.y_train.to(device),
                               torch.from_numpy(np.flatnonzero(mask)).unsqueeze(0), make_loss(recipe))
    return {"test_logits": test_logits.numpy(), "test_margins": margin(test_logits, data.y_test).numpy(),
            "accuracy": float((test_logits.argmax(-1) == data.y_test).float().mean()),
            "train_margins": margin(train_logits, data.y_train).numpy(), "train_loss": float(loss[0]),
            "train_accuracy": float(acc[0])}


class _Single(torch.nn.Module):
    """A one-model grouped ensemble as a plain module ``x[B, ...] -> [B, K]``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.unsqueeze(0))[0]
