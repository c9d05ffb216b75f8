"""Where ensembles run: ``local`` (this process, or one worker process per device / group of
cores) and ``ray`` (Ray tasks; ``address="auto"`` joins a running cluster). Workers write disjoint
rows of one store; the coordinator (the caller) holds the store's lock and shows progress."""
from __future__ import annotations

import multiprocessing as mp
import os

from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from datamodels.base.progress import progress_bar, step_bar
from datamodels.data.dataset import Dataset
from datamodels.runs.names import ENSEMBLE_SIZE, LAUNCHERS
from datamodels.runs.runner import plan_chunks, train_chunk
from datamodels.store.store import Store

log = get_logger(__name__)


def run_local(store: Store, chunks, device: str, workers: int, dataset: Dataset | None, bar,
              address: str | None = None) -> list[int]:
    """Train ``chunks`` here (``workers <= 1``) or in ``workers`` spawned processes; returns worker pids.

    Every launcher (registry ``LAUNCHERS``) takes these arguments; ``address`` is Ray's only."""
    if not chunks:
        return []
    if workers <= 1:
        data = dataset if dataset is not None else store.load_dataset()  # loaded once for all chunks
        together = _backend(store) in ("ensemble", "vmap")
        for k, chunk in enumerate(chunks, 1):  # a step counter inside each chunk: no silent minutes
            how = f"{len(chunk)} models at once" if together else f"{len(chunk)} models, one at a time"
            with step_bar(f"  chunk {k} of {len(chunks)} ({how})", disable=bar.disable) as steps:
                total, size = chunk_steps(store, data, chunk), len(chunk)

                def step(n, steps=steps, total=total, size=size):
                    steps.update(n)
                    if total is not None and steps.n >= total:  # the evaluation and commit have no steps
                        steps.set_postfix_str(f"evaluating and saving {size} models")
                done = train_chunk(str(store.path), chunk, device, data, progress=step)
            bar.update(len(done))
        return [os.getpid()]
    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = _worker_devices(device, workers)
    pids = set()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(threads, dataset)) as pool:
        jobs = [pool.apply_async(_worker_train_chunk, (str(store.path), c, devices[k % workers]))
                for k, c in enumerate(chunks)]
        for job in jobs:
            rows, pid = job.get()
            pids.add(pid)
            bar.update(len(rows))
    return sorted(pids)


def chunk_steps(store: Store, data: Dataset, chunk) -> int | None:
    """Optimiser steps a chunk reports when its models train together (ensemble, vmap); None otherwise."""
    from datamodels.training.backends.common import steps_per_epoch

    if _backend(store) not in ("ensemble", "vmap"):
        return None
    m = int(store.masks[int(chunk[0])].sum())
    return steps_per_epoch(m, store.recipe) * store.recipe.train_epochs


def _backend(store: Store) -> str | None:
    """The backend the store's recipe trains with (None when the recipe is refused: the chunk says why)."""
    from datamodels.training.backends import choose_backend

    try:
        return choose_backend(store.recipe)[0]
    except UserError:
        return None


_GIVEN_DATASET: list = []  # in a pool worker: the dataset the caller passed (set by the initializer)
_STORE_DATASET: dict = {}  # in a worker process: the last store's dataset, loaded once, not per chunk


def _init_worker(threads: int, dataset: Dataset | None = None) -> None:
    import torch

    torch.set_num_threads(threads)
    if dataset is not None:
        _GIVEN_DATASET.append(dataset)


def _store_dataset(store_path: str) -> Dataset:
    """The dataset of the store at ``store_path``, loaded once per worker process."""
    if store_path not in _STORE_DATASET:
        _STORE_DATASET.clear()
        _STORE_DATASET[store_path] = Store.open(store_path).load_dataset()
    return _STORE_DATASET[store_path]


def _worker_train_chunk(store_path: str, chunk, device: str) -> tuple[list[int], int]:
    data = _GIVEN_DATASET[0] if _GIVEN_DATASET else _store_dataset(store_path)
    return train_chunk(store_path, chunk, device, data), os.getpid()


def _worker_devices(device: str, workers: int) -> list[str]:
    if device == "cuda":
        import torch

        n = torch.cuda.device_count()
        return [f"cuda:{k % n}" for k in range(workers)]
    return [device] * workers


def run_ray(store: Store, chunks, device: str, workers: int, dataset: Dataset | None, bar,
            address: str | None = None) -> list[int]:
    """Train ``chunks`` as Ray tasks, at most ``workers`` at a time; returns the worker pids.

    Without ``address`` a local Ray instance with ``workers * threads`` CPUs is started here and shut
    down at the end; with one (``"auto"`` or ``host:port``) the running cluster is joined. Each task
    asks for ``threads`` CPUs (the cluster's CPUs shared among ``workers``) and one GPU on CUDA.
    """
    try:
        import ray
    except ImportError:
        raise UserError("the ray launcher needs Ray: pip install 'modeldiff[ray]'") from None
    if not chunks:
        return []
    workers = max(workers, 1)
    started_here = not ray.is_initialized()
    if started_here:
        local_threads = max(1, (os.cpu_count() or 1) // workers)
        ray.init(address=address, num_cpus=None if address else workers * local_threads, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    try:
        node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")] or [1]
        share = int(ray.cluster_resources().get("CPU", workers)) // workers
        threads = max(1, min(share, int(max(node_cpus))))  # a task must fit on one node
        gpus = 1 if device.startswith("cuda") else 0
        task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(_ray_train_chunk)
        data_ref = ray.put(dataset) if dataset is not None else None
        todo, running, pids = list(chunks), [], set()
        try:
            while todo or running:
                while todo and len(running) < workers:
                    running.append(task.remote(str(store.path), todo.pop(0), device, data_ref, threads))
                ready, running = ray.wait(running, num_returns=1)
                rows, pid = ray.get(ready[0])
                pids.add(pid)
                bar.update(len(rows))
        except BaseException:
            for ref in running:  # rows of cancelled chunks stay pending: a rerun trains them
                ray.cancel(ref, force=True)
            raise
        return sorted(pids)
    finally:
        if started_here:
            ray.shutdown()


def _ray_train_chunk(store_path, chunk, device, dataset, threads) -> tuple[list[int], int]:
    import torch

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        device = "cuda"  # Ray makes the task's one assigned GPU the only visible one
    data = dataset if dataset is not None else _store_dataset(store_path)
    return train_chunk(store_path, chunk, device, data), os.getpid()


def refuse_python_only_in_workers(store: Store, launcher: str, workers: int) -> None:
    """One :class:`UserError` line when the store's recipe names objects that live in this process only
    (Python-only keys: a callable defined in a notebook or in ``__main__``, a lambda) and the training
    would run in other processes (``workers > 1`` or a launcher other than ``local``), which cannot
    import them."""
    from datamodels.registry import PYTHON_ONLY, python_only_keys

    if launcher == "local" and workers <= 1:
        return
    keys = sorted(set(python_only_keys(store.metadata["recipe"])))
    if keys:
        where = f"the {launcher} launcher" if launcher != "local" else f"{workers} worker processes"
        names = ", ".join(k[len(PYTHON_ONLY):] for k in keys)
        raise UserError(f"the recipe of {store.path} uses objects defined in Python, not in an importable module "
                        f"({names}), which {where} cannot import: train with workers=1 and the local launcher, "
                        f"or move them into a module and name them 'pkg.mod:name'")


def fill_store(store: Store, device: str = "cpu", ensemble_size: int = ENSEMBLE_SIZE, launcher: str = "local",
               workers: int = 1, dataset: Dataset | None = None, address: str | None = None) -> dict:
    """Train every pending model of ``store`` (retraining corrupted rows) and return its summary.

    The summary is :meth:`Store.summary` plus ``worker_pids``: the processes that trained chunks.
    """
    from datamodels.runs.runner import exclusive

    LAUNCHERS.check(launcher, key="launcher")  # before the store is locked or touched
    if store.metadata.get("checkpoint_of"):
        raise UserError(f"{store.path} holds models taken from checkpoints of {store.metadata['checkpoint_of']['store']}"
                        f": it is not trained; train the parent store instead")
    refuse_python_only_in_workers(store, launcher, workers)
    with exclusive(store):
        store.make_writable().fix_ensemble_size(ensemble_size)
        corrupted = store.corrupted_indices()
        if len(corrupted):
            log.warning(f"found {len(corrupted)} damaged row(s) {corrupted[:10].tolist()}: retraining exactly these")
            for i in corrupted[:10]:
                log.warning(f"  row {i}: {'; '.join(store.damage()[int(i)])}")
            store.reset_rows(corrupted)
        pending = store.pending_indices()
        chunks = plan_chunks(pending, ensemble_size, store.n_models)
        with progress_bar(total=store.n_models, initial=store.n_models - len(pending), unit="model",
                          desc=f"training {store.recipe.name}", dynamic_ncols=True) as bar:
            run = LAUNCHERS.get(launcher, key="launcher")
            pids = run(store, chunks, device, workers, dataset, bar, address=address)
    summary = store.summary()
    if summary["fit_hit_max"]:  # never silently mixed: said where every caller sees it
        log.warning(f"warning: {store.fit_line()}")
    return {**summary, "worker_pids": pids}
