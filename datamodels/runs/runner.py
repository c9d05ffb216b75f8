"""Fill a store: split its pending models into ensembles and train them with a launcher.

Work unit: :func:`train_chunk` trains the models ``indices`` of a store as one ensemble and commits
their rows. Launchers (:mod:`datamodels.runs.launchers`) decide where chunks run: in this process,
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
from datamodels.training.backends import check_recipe, train_models
from datamodels.base.errors import UserError


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
    """Train models ``indices`` of the store at ``store_path`` with the recipe's trainer backend
    (:func:`datamodels.training.backends.train_models`) and commit their rows.

    Every row of ``indices`` is trained (so a model always trains in the same group, see
    :func:`plan_chunks`), but only pending rows are written: finished rows are never written
    twice. Returns the rows written.
    """
    store = Store.open(store_path, dataset)
    indices = [int(i) for i in indices]
    todo = [i for i in indices if store.status[i] == 0]
    if not todo:
        return []
    data = store.load_dataset()
    search_path = store.model_search_path()  # also puts the recorded folders of user targets on sys.path
    backend = check_recipe(store.recipe, data, dry=False)  # bad targets / settings: one line, before any row is written
    if backend in ("loop", "train_fn"):  # one model at a time: nothing to gain from retraining finished rows
        indices = todo
    masks = torch.from_numpy(np.array(store.masks[indices]))
    seeds = [int(s) for s in store.seeds[indices]]
    batches = None
    if store.recipe.loader == "ffcv" and backend == "ensemble":
        from datamodels.training.ffcv_loader import ffcv_batch_factory  # None (after a notice) when ffcv is missing

        batches = ffcv_batch_factory(store, data, masks, seeds, device)
    result = train_models(store.recipe, data, masks, seeds, device, init_state=load_init_state(store),
                          train_margins="train_margins" in store.arrays, batches=batches, progress=progress,
                          search_path=search_path)
    from datamodels.store.fit_rows import fit_row

    tags = store.checkpoint_tags()
    for j, i in enumerate(indices):
        if i not in todo:
            continue
        store.write_row(
            i, test_logits=result.test_logits[j].numpy(), test_margins=result.test_margins[j].numpy(),
            accuracy=float(result.accuracy[j]), diverged=bool(result.diverged[j]),
            train_margins=None if result.train_margins is None else result.train_margins[j].numpy(),
            state_dict=result.state_dict(j) if store.keeps_weights(i) else None,
            fit=None if result.fit is None else fit_row(result.fit, j, tags),
        )
    return todo


def plan_chunks(pending: np.ndarray, ensemble_size: int, n_models: int | None = None) -> list[list[int]]:
    """The aligned blocks ``[b*E, (b+1)*E)`` (``E = ensemble_size``) that hold a pending row.

    A model therefore always trains in the same group of ``E`` models, whatever was interrupted or
    damaged before: float32 grouped kernels give bit-identical results for the same group, so a
    resumed or repaired store equals an uninterrupted run (the other rows of a block are trained
    again but not written). ``n_models`` caps the last block (default: the largest pending row + 1).
    """
    pending = np.asarray(pending, dtype=np.int64)
    if pending.size == 0:
        return []
    n = int(pending.max()) + 1 if n_models is None else int(n_models)
    blocks = sorted({int(i) // ensemble_size for i in pending})
    return [list(range(b * ensemble_size, min((b + 1) * ensemble_size, n))) for b in blocks]


@contextmanager
def exclusive(store: Store):
    """Hold the store's lock for a training run (released by the OS even after ``kill -9``)."""
    lock_file = open(store.path / ".lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise UserError(f"another training run is filling {store.path} right now: wait for it or use another "
                        f"--out") from None
    try:
        yield
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()
