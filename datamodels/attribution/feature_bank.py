"""Where TRAK keeps its per-model features until scoring: one preallocated block per kind.

Each model adds ``F_m [n_train, k]`` and ``Φ_test,m [n_test, k]``. Kept as separate arrays, the
retained blocks interleave with each model's larger transients (per-example gradients, the float64
kernel) on the C heap, which then grows by about twice the features per model (measured: 17 MiB a
model for 7.4 MiB of features on the digits demo). With the number of models known up front, the
bank allocates ``[M, n, k]`` once (in memory when it fits ``budget_bytes``, else one memory-mapped
file per kind in a temporary folder), so every model's transients reuse the same freed space.
Without it (an iterator of unknown length) it grows model by model and spills when over budget.
"""
from __future__ import annotations

import tempfile

import numpy as np
import torch


class FeatureBank:
    """``add(features, test_features)`` per model, then ``pairs()`` yields ``(F_m, Φ_test,m)``.

    Args:
        n_models: how many models will be added (None: unknown, grow as they come).
        budget_bytes: above this total the features live in memory-mapped files, not in memory.
    """

    def __init__(self, n_models: int | None, budget_bytes: int):
        self.capacity, self.budget = n_models, budget_bytes
        self.count = 0
        self._train = self._test = None  # preallocated [M, n, k] blocks
        self._lists: tuple[list, list] = ([], [])  # grown model by model when the count is unknown
        self._spill: tempfile.TemporaryDirectory | None = None

    def add(self, features: torch.Tensor, test_features: torch.Tensor) -> None:
        """Keep model ``self.count``'s ``features [n_train, k]`` and ``test_features [n_test, k]``."""
        if self.capacity is not None and self.count >= self.capacity:
            raise ValueError(f"FeatureBank holds {self.capacity} models; one more was added")
        if self.capacity is not None:
            if self._train is None:
                on_disk = self.capacity * (_nbytes(features) + _nbytes(test_features)) > self.budget
                self._train = self._block(self.capacity, features, "train", on_disk)
                self._test = self._block(self.capacity, test_features, "test", on_disk)
            self._put(self._train, features)
            self._put(self._test, test_features)
        else:
            self._grow(features, test_features)
        self.count += 1

    def pairs(self):
        """``(F_m [n_train, k], Φ_test,m [n_test, k])`` for every model added (tensors or memmaps)."""
        if self._train is not None:
            return [(self._train[i], self._test[i]) for i in range(self.count)]
        return list(zip(*self._lists))

    def close(self) -> None:
        """Drop the blocks and delete any spill files."""
        self._train = self._test = None
        self._lists = ([], [])
        if self._spill is not None:
            self._spill.cleanup()
            self._spill = None

    def _block(self, m: int, like: torch.Tensor, kind: str, on_disk: bool):
        shape = (m, *like.shape)
        if on_disk:
            return np.memmap(self._file(kind), dtype=_np_dtype(like), mode="w+", shape=shape)
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    def _put(self, block, a: torch.Tensor) -> None:
        if isinstance(block, np.memmap):
            block[self.count] = a.detach().cpu().numpy()
        else:
            block[self.count].copy_(a)

    def _grow(self, features: torch.Tensor, test_features: torch.Tensor) -> None:
        train, test = self._lists
        per_model = _nbytes(features) + _nbytes(test_features)
        if self._spill is None and (len(train) + 1) * per_model > self.budget:
            train[:] = [self._to_file(a, "train") for a in train]
            test[:] = [self._to_file(a, "test") for a in test]
        if self._spill is not None:
            features, test_features = self._to_file(features, "train"), self._to_file(test_features, "test")
        train.append(features)
        test.append(test_features)

    def _file(self, kind: str) -> str:
        if self._spill is None:
            self._spill = tempfile.TemporaryDirectory(prefix="trak-features-")
        with tempfile.NamedTemporaryFile(dir=self._spill.name, prefix=kind, suffix=".f32", delete=False) as fh:
            return fh.name

    def _to_file(self, a, kind: str):
        if isinstance(a, np.memmap):
            return a
        arr = a.detach().cpu().numpy()
        mm = np.memmap(self._file(kind), dtype=arr.dtype, mode="w+", shape=arr.shape)
        mm[:] = arr
        return mm


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _np_dtype(t: torch.Tensor):
    return torch.empty((), dtype=t.dtype).numpy().dtype
