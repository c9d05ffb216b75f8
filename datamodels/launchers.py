"""Where ensembles run: ``local`` (this process, or one worker process per device / group of
cores) and ``ray`` (Ray tasks; ``address="auto"`` joins a running cluster). Workers write disjoint
rows of one store; the coordinator (the caller) holds the store's lock and shows progress."""
from __future__ import annotations

import multiprocessing as mp
import os

from tqdm.auto import tqdm

from datamodels.data import Dataset
from datamodels.runner import plan_chunks, train_chunk
from datamodels.store import Store
from modeldiff.errors import UserError


def run_local(store: Store, chunks, device: str, workers: int, dataset: Dataset | None, bar: tqdm) -> None:
    if workers <= 1:
        for chunk in chunks:
            done = train_chunk(str(store.path), chunk, device, dataset)
            bar.update(len(done))
        return
    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = _worker_devices(device, workers)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
        jobs = [pool.apply_async(train_chunk, (str(store.path), c, devices[k % workers], dataset))
                for k, c in enumerate(chunks)]
        for job in jobs:
            bar.update(len(job.get()))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_devices(device: str, workers: int) -> list[str]:
    if device == "cuda":
        import torch

        n = torch.cuda.device_count()
        return [f"cuda:{k % n}" for k in range(workers)]
    return [device] * workers


def run_ray(store: Store, chunks, device: str, workers: int, dataset: Dataset | None, bar: tqdm,
            address: str | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("the ray launcher needs Ray: pip install 'modeldiff[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(workers, 1), include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    gpus = 1 if device.startswith("cuda") else 0
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    task = ray.remote(num_cpus=threads if address is None else 1, num_gpus=gpus)(_ray_train_chunk)
    data_ref = ray.put(dataset) if dataset is not None else None
    pending = [task.remote(str(store.path), c, device, data_ref, threads) for c in chunks]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        bar.update(len(ray.get(ready[0])))


def _ray_train_chunk(store_path, chunk, device, dataset, threads):
    import torch

    torch.set_num_threads(threads)
    return train_chunk(store_path, chunk, device, dataset)


def fill_store(store: Store, device: str = "cpu", ensemble_size: int = 16, launcher: str = "local",
               workers: int = 1, dataset: Dataset | None = None, address: str | None = None) -> dict:
    """Train every pending model of ``store`` (retraining corrupted rows) and return its summary."""
    from datamodels.runner import exclusive

    with exclusive(store):
        corrupted = store.corrupted_indices()
        if len(corrupted):
            print(f"found {len(corrupted)} corrupted row(s) {corrupted[:10].tolist()}: retraining them")
            store.reset_rows(corrupted)
        pending = store.pending_indices()
        chunks = plan_chunks(pending, ensemble_size)
        with tqdm(total=store.n_models, initial=store.n_models - len(pending), unit="model",
                  desc=f"training {store.recipe.name}", dynamic_ncols=True) as bar:
            if launcher == "local":
                run_local(store, chunks, device, workers, dataset, bar)
            elif launcher == "ray":
                run_ray(store, chunks, device, workers, dataset, bar, address)
            else:
                raise UserError(f"unknown launcher {launcher!r}: use local or ray")
    return store.summary()
