"""The FFCV data path (``recipe.loader: ffcv``): training images streamed from a ``.beton`` file.

:func:`write_beton` writes one split of a :class:`Dataset` as an FFCV file (pixels as an
``NDArrayField`` — ``uint8`` when the pixels are exact multiples of 1/255, else ``float32`` — and
the label as an ``IntField``), so reading it back gives the dataset's pixels bit for bit.
:func:`ffcv_batch_factory` gives :func:`datamodels.training.ensemble_trainer.train_ensemble` its ``batches``: one
FFCV loader serves all ``M`` models of an ensemble. Each step's loader batch holds ``b`` examples
of model 0, then ``b`` of model 1, ...; the order and the augmentation of model ``i`` come from a
generator seeded by ``seeds[i]`` alone, drawn exactly as the trainer's in-memory path draws them,
so a model trained through FFCV is the same model as one trained from tensors.

ffcv is optional: without it :func:`ffcv_batch_factory` says so once and returns ``None``, and the
trainer uses its portable in-memory path.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import numpy as np
import torch

from datamodels.base.log import get_logger
from datamodels.data.dataset import Dataset
from datamodels.training.augment import apply_augment, draw_epoch
from datamodels.training.recipe import Recipe

log = get_logger(__name__)

NOTICE = "ffcv is not installed; using the portable in-memory loader (pip install 'modeldiff[ffcv]')"
BETON_NAME = "data_{split}.beton"  # inside the store directory
_notice_given = False


def ffcv_available() -> bool:
    """True when ffcv imports; otherwise prints :data:`NOTICE` once per process and returns False.

    Importing ffcv sets torch's thread count to 1 (``ffcv.pipeline.compiler``); it is restored here.
    """
    global _notice_given
    threads = torch.get_num_threads()
    try:
        import ffcv  # noqa: F401
        from ffcv.loader import Loader  # noqa: F401  (imports the compiled extension and numba)
    except (ImportError, OSError) as err:
        if not _notice_given:
            detail = "" if isinstance(err, ModuleNotFoundError) and err.name == "ffcv" else f" ({err})"
            log.warning(NOTICE + detail)
            _notice_given = True
        return False
    finally:
        torch.set_num_threads(threads)
    return True


class _Split:
    """Indexable ``(pixels[C, H, W], label)`` view of one split, as FFCV's writer reads it."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _pixels_for_beton(x: torch.Tensor) -> np.ndarray:
    """``uint8`` when ``x == round(255 x) / 255`` exactly (lossless), else ``float32``."""
    x = x.float()
    as_u8 = x.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    if torch.equal(as_u8.float().div_(255.0), x):
        return as_u8.numpy()
    return x.numpy()


def write_beton(dataset: Dataset, path: str | os.PathLike, split: str = "train", num_workers: int = 2) -> Path:
    """Write ``dataset``'s ``split`` to the FFCV file ``path`` (atomically: a temporary file, then rename).

    Fields: ``image`` (``NDArrayField`` ``[C, H, W]``, uint8 or float32) and ``label`` (``IntField``).
    """
    from ffcv.fields import IntField, NDArrayField
    from ffcv.writer import DatasetWriter

    path = Path(path)
    x = _pixels_for_beton(getattr(dataset, f"x_{split}"))
    y = getattr(dataset, f"y_{split}").numpy()
    fields = {"image": NDArrayField(dtype=x.dtype, shape=tuple(x.shape[1:])), "label": IntField()}
    from datamodels.base.atomic import atomic_path, remove_stale_temporaries

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    with atomic_path(path) as tmp:
        DatasetWriter(str(tmp), fields, num_workers=max(1, num_workers)).from_indexed_dataset(_Split(x, y),
                                                                                              chunksize=256)
        os.chmod(tmp, 0o644)
    return path


def ensure_beton(path: str | os.PathLike, dataset: Dataset, split: str = "train") -> Path:
    """The beton at ``path``, written first unless a complete one for ``dataset`` is there.

    A lock file beside it makes concurrent workers (local or Ray, same machine) write it once.
    """
    from ffcv.reader import Reader

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(getattr(dataset, f"y_{split}"))
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.is_file():
                try:
                    if Reader(str(path)).num_samples == n:
                        return path
                except Exception:  # noqa: BLE001 — unreadable file: rewrite it
                    pass
            return write_beton(dataset, path, split)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def model_generator(seed: int) -> torch.Generator:
    """Model ``seed``'s order/augmentation generator — the same stream as the trainer's gather path."""
    return torch.Generator().manual_seed(int(seed) * 7919 + 1)


def _ensemble_order(first_order: np.ndarray):
    """An FFCV traversal order returning whatever order the batch factory set for the epoch.

    ffcv 1.0.2 takes a custom order as a ``TraversalOrder`` instance, which it calls with the loader.
    """
    from ffcv.traversal_order.base import TraversalOrder

    class EnsembleOrder(TraversalOrder):
        def __init__(self, order: np.ndarray):  # noqa: D107 — no loader needed
            self.order = order

        def __call__(self, loader):
            return self

        def sample_order(self, epoch: int) -> np.ndarray:
            return self.order

    return EnsembleOrder(first_order)


def interleave(orders: np.ndarray, batch_size: int) -> np.ndarray:
    """``orders[M, m]`` → one sequence whose chunks of ``M * b`` are step-wise ``[model 0's b, model 1's b, ...]``.

    The last chunk holds each model's remaining ``m mod b`` examples (``b = batch_size``).
    """
    n_models, m = orders.shape
    full = (m // batch_size) * batch_size
    head = orders[:, :full].reshape(n_models, -1, batch_size).transpose(1, 0, 2).reshape(-1)
    return np.concatenate([head, orders[:, full:].reshape(-1)])


class FFCVBatches:
    """``batches(epoch)`` → ``(x[M, b, C, H, W], y[M, b])`` per step, on ``device``, augmented.

    ``x`` is in the recipe's dtype (float64 for ``precision: float64``, else float32), in [0, 1].
    """

    def __init__(self, beton: str | os.PathLike, recipe: Recipe, image_shape, masks: torch.Tensor, seeds,
                 device, num_workers: int | None = None):
        import numba
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.ndarray import NDArrayDecoder
        from ffcv.loader import Loader
        from ffcv.transforms import ToTensor

        self.recipe, self.device = recipe, torch.device(device)
        self.dtype = torch.float64 if recipe.precision == "float64" else torch.float32
        self.image_hw = tuple(image_shape[1:])
        self.subsets = [torch.nonzero(mask).squeeze(1) for mask in torch.as_tensor(masks, dtype=torch.bool)]
        counts = {len(s) for s in self.subsets}
        if len(counts) != 1:
            raise ValueError("every mask in one ensemble must keep the same number of training examples")
        self.m, self.n_models = counts.pop(), len(self.subsets)
        self.gens = [model_generator(s) for s in seeds]
        self._epoch_states = [[g.get_state() for g in self.gens]]  # [e]: generator states when epoch e starts
        self.order = _ensemble_order(torch.stack(self.subsets).numpy().reshape(-1))
        # FFCV sets torch's (global) thread count to its own: keep the one this process was given.
        threads = num_workers or min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
        self.loader = Loader(str(beton), batch_size=self.n_models * recipe.batch_size, num_workers=threads,
                             order=self.order, indices=self.order.order, drop_last=False, os_cache=True,
                             pipelines={"image": [NDArrayDecoder(), ToTensor()],
                                        "label": [IntDecoder(), ToTensor()]})

    def _draws(self, epoch: int):
        """Each model's draws for ``epoch``: the trainer's stream, and the same however often it is asked."""
        aug = self.recipe.augment
        while len(self._epoch_states) <= epoch:  # replay the epochs before it once
            for g, state in zip(self.gens, self._epoch_states[-1]):
                g.set_state(state)
                draw_epoch(g, self.m, aug, self.image_hw)
            self._epoch_states.append([g.get_state() for g in self.gens])
        for g, state in zip(self.gens, self._epoch_states[epoch]):
            g.set_state(state)
        return [draw_epoch(g, self.m, aug, self.image_hw) for g in self.gens]

    def __call__(self, epoch: int):
        aug = self.recipe.augment
        draws = self._draws(epoch)
        orders = torch.stack([s[d.order] for s, d in zip(self.subsets, draws)]).numpy()  # [M, m]
        params = None
        if aug.active:
            keys = ("flip", "shift", "cutout_at") + (("paste",) if aug.paste.share > 0 else ())
            params = tuple(torch.stack([getattr(d, k) for d in draws]).to(self.device)  # [M, m] / [M, m, 2]
                           for k in keys)
        return self._epoch(interleave(orders, self.recipe.batch_size), params)

    def _epoch(self, order: np.ndarray, aug_params):
        self.order.order = order  # read by the loader's iter() just below
        n, start = self.n_models, 0
        for images, labels in self.loader:
            k = len(labels) // n  # b, or m mod b on the last step
            x = images.view(n, k, *images.shape[1:])
            if x.dtype == torch.uint8:
                x = x.to(self.device).float().div_(255.0).to(self.dtype)
            else:  # copy: FFCV reuses its batch buffers
                x = x.to(self.device, self.dtype, copy=True)
            y = labels.view(n, k).to(self.device, torch.int64)
            if aug_params is not None:
                flip, shift, cut, *paste = (p[:, start:start + k] for p in aug_params)
                x = apply_augment(x.flatten(0, 1), self.recipe.augment, flip.flatten(), shift.flatten(0, 1),
                                  cut.flatten(0, 1), paste[0].flatten() if paste else None).view(x.shape)
            start += k
            yield x, y


def ffcv_batch_factory(store, data: Dataset, masks: torch.Tensor, seeds, device) -> FFCVBatches | None:
    """Batches for :func:`train_ensemble` read through FFCV from ``STORE/data_train.beton``.

    Args:
        store: the :class:`datamodels.store.store.Store` being filled (its folder holds the beton).
        data: the store's dataset (the beton is written from ``data.x_train`` once, then reused).
        masks: ``[M, n_train]`` bool, every row with the same count ``m``.
        seeds: ``M`` model seeds.
    Returns ``None`` (after a one-line notice) when ffcv is not installed.
    """
    if not ffcv_available():
        return None
    beton = ensure_beton(Path(store.path) / BETON_NAME.format(split="train"), data, "train")
    return FFCVBatches(beton, store.recipe, data.image_shape, masks, seeds, device)
