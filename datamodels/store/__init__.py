"""The store: one directory per algorithm run (masks, outputs, weights, metadata), resumable.

Contract: :class:`Store` (see :mod:`datamodels.store.store`); metadata and resume checks in
:mod:`datamodels.store.metadata`.
"""
from datamodels.store.store import DIVERGED, DONE, PENDING, Store, draw_masks_and_seeds

__all__ = ["Store", "PENDING", "DONE", "DIVERGED", "draw_masks_and_seeds"]
