"""Load attribution matrices for ModelDiff from the formats the project writes.

``.h5`` / ``.hdf5``: a modeldiff influence dataset (docs/CONTRACTS.md), read with
``datamodels.attribution.influence_io.read_influence`` (scores, labels, indices, identity);
``.npy``: a plain ``[n_test, n_train]`` array, memory-mapped (never copied into RAM);
``.pt``: a tensor, or a dict holding one under ``"scores"``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodels.base.errors import UserError


@dataclass
class LoadedScores:
    """An attribution matrix and what is known about its rows and columns."""
    path: str
    scores: object                     # [n_test, n_train]: numpy array, memmap or tensor
    test_labels: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    test_indices: np.ndarray | None = None
    train_indices: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def load_scores(path) -> LoadedScores:
    """Read one attribution file, dispatching on its extension; problems raise `UserError`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"attribution file {p} does not exist")
    ext = p.suffix.lower()
    if ext in (".h5", ".hdf5"):
        from datamodels.attribution.influence_io import read_influence  # lazy: h5py
        ds = read_influence(p)
        meta = {k: getattr(ds, k) for k in ("method", "dataset_name", "dataset_identity", "n_models", "store_path")}
        meta["lds"] = None if np.isnan(ds.lds) else float(ds.lds)
        return LoadedScores(str(p), ds.scores, ds.test_labels, ds.train_labels, ds.test_indices,
                            ds.train_indices, meta)
    if ext == ".npy":
        try:
            scores = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise UserError(f"{p} is not a plain numeric .npy array ({err})") from err
        return LoadedScores(str(p), scores)
    if ext == ".pt":
        import torch
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a bad file
            raise UserError(f"{p} could not be read by torch.load ({type(err).__name__}: {err})") from err
        if isinstance(obj, dict) and "scores" in obj:
            obj = obj["scores"]
        if not isinstance(obj, torch.Tensor):
            raise UserError(f"{p} holds a {type(obj).__name__}; save the [n_test, n_train] scores "
                            "tensor itself, or a dict with it under 'scores'")
        return LoadedScores(str(p), obj)
    raise UserError(f"{p}: unknown attribution file type {ext!r}; use .h5/.hdf5 (influence dataset), "
                    ".npy or .pt")


def check_same_examples(a: LoadedScores, b: LoadedScores) -> None:
    """Refuse two attribution files that describe different test or training examples."""
    ida, idb = a.meta.get("dataset_identity"), b.meta.get("dataset_identity")
    if ida and idb and ida != idb:
        raise UserError(f"{a.path} and {b.path} come from different datasets (identity {ida[:12]} vs "
                        f"{idb[:12]}); attribute both algorithms on the same data")
    for name in ("test_indices", "train_indices"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and (x.shape != y.shape or not np.array_equal(x, y)):
            raise UserError(f"{a.path} and {b.path} have different {name}; both must cover the same "
                            "examples in the same order")


def rows_as_tensor(x, i: int, j: int, device, dtype):
    """Rows ``i:j`` of a tensor, numpy array, memmap or h5py dataset as a tensor on ``device``.

    No copy when ``x`` already has the device and dtype (numpy arrays and memmaps are wrapped).
    """
    import torch
    if isinstance(x, torch.Tensor):
        return x[i:j].to(device=device, dtype=dtype)
    block = np.asarray(x[i:j])
    with warnings.catch_warnings():  # read-only memmaps: callers never write through this view
        warnings.simplefilter("ignore", UserWarning)
        try:
            t = torch.from_numpy(block)
        except (ValueError, TypeError):  # negative strides, dtypes torch lacks
            t = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float64))
    return t.to(device=device, dtype=dtype)
