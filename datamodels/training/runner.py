"""Fill a store: split its pending models into ensembles and train them with a launcher.

Work unit: :func:`train_chunk` trains the models ``indices`` of a store as one ensemble and commits
their rows. Launchers (:mod:`datamodels.training.launchers`) decide where chunks run: in this process,
in local worker processes, or as Ray tasks. One coordinator holds the store's lock for the run,
so two ``train`` commands never fill the same store at once.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

import numpy as np
import torch

from datamodels.data.dataset import Dataset
from datamodels.store.store import Store
from datamodels.training.ensemble_trainer import train_ensemble
from modeldiff.errors import UserError


def load_init_state(store: Store) -> dict | None:
    init = store.recipe.init
    if init.kind != "checkpoint":
        return None
    if not os.path.isfile(init.checkpoint):
        raise UserError(f"init.checkpoint {init.checkpoint} does not exist: train the pretraining model first")
    state = torch.load(init.checkpoint, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


def train_chunk(store_path: str, indices, device: str = "cpu", dataset: Dataset | None = None,
                progress=None) -> list[int]:
    """Train models ``indices`` of the store at ``store_path`` as one ensemble and commit their rows.

    Rows already finished are skipped (never trained or written twice). Returns the rows written.
    """
    store = Store.open(store_path, dataset)
    indices = [int(i) for i in indices if store.status[int(i)] == 0]
    if not indices:
        return []
    data = store.load_dataset()
    masks = torch.from_numpy(np.array(store.masks[indices]))
    seeds = [int(s) for s in store.seeds[indices]]
    batches = None
    if store.recipe.loader == "ffcv":
        from datamodels.data.ffcv_loader import ffcv_batch_factory  # None (after a notice) when ffcv is missing

        batches = ffcv_batch_factory(store, data, masks, seeds, device)
    result = train_ensemble(store.recipe, data, masks, seeds, device, init_state=load_init_state(store),
                            train_margins="train_margins" in store.arrays, batches=batches, progress=progress)
    from datamodels.training.models import extract_single

    for j, i in enumerate(indices):
        store.write_row(
            i, test_logits=result.test_logits[j].numpy(), test_margins=result.test_margins[j].numpy(),
            accuracy=float(result.accuracy[j]), diverged=bool(result.diverged[j]),
            train_margins=None if result.train_margins is None else result.train_margins[j].numpy(),
            state_dict=extract_single(result.net, j) if store.keeps_weights(i) else None,
        )
    return indices


def plan_chunks(pending: np.ndarray, ensemble_size: int) -> list[list[int]]:
    """Consecutive groups of at most ``ensemble_size`` pending rows."""
    return [pending[i:i + ensemble_size].tolist() for i in range(0, len(pending), ensemble_size)]


@contextmanager
def exclusive(store: Store):
    """Hold the store's lock for a training run (released by the OS even after ``kill -9``)."""
    lock_file = open(store.path / ".lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise UserError(f"another training run is filling {store.path} right now: wait for it or use another --out") from None
    try:
        yield
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()
