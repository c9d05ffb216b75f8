"""Influence datasets: attribution matrices as self-describing HDF5 files.

Format (``format = "modeldiff-influence"``, ``format_version = 1``), readable with h5py alone::

    import h5py, json
    with h5py.File("scores.h5", "r") as f:
        scores = f["scores"][:]             # [n_test, n_train] float32; row i = test example
        train_idx = f["train_indices"][:]   # [n_train] int64, positions in the dataset's train split
        test_idx = f["test_indices"][:]     # [n_test] int64, positions in the dataset's test split
        y_train = f["train_labels"][:]      # [n_train] int64
        y_test = f["test_labels"][:]        # [n_test] int64
        meta = dict(f.attrs)                # attributes below
        params = json.loads(meta["method_params"])

Datasets: ``scores`` is chunked (one chunk holds whole rows, at most ~4 MiB), optionally
gzip-compressed; ``scores[i, j]`` is the estimated effect of training example
``train_indices[j]`` on the margin (correct logit − logsumexp of the others) of test example
``test_indices[i]``; larger = more helpful. Root attributes:

============== ======= ==========================================================
``format``     str     always ``"modeldiff-influence"``
``format_version`` int always ``1``
``method``     str     ``"trak"`` or ``"datamodels"`` (or another estimator name)
``method_params`` str  JSON object of the estimator's hyper-parameters
``dataset_name`` str   e.g. ``"digits"``
``dataset_identity`` str sha256 hex of the dataset's pixels + labels + split
``recipe_yaml`` str    the training recipe of the models, YAML ("" if unknown)
``n_models``   int     number of trained models the scores were estimated from
``lds``        float   linear datamodeling score if measured, else NaN
``package_version`` str modeldiff version that wrote the file
``created``    str     ISO 8601 creation time (UTC)
``store_path`` str     the model store the scores came from ("" if none)
============== ======= ==========================================================

Files are written to a hidden temporary beside the target (``.<name>.tmp-<pid>-<random>``, see
:mod:`datamodels.base.atomic`) and renamed on success, so a path that exists is always complete; the
temporary is removed on every exit path, and ones left by killed runs are removed by the next
command writing there. :class:`InfluenceWriter` streams row blocks (``write_rows(start, block)``)
so a 50,000 x 10,000 matrix never has to sit in memory.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodels.base.errors import UserError

FORMAT = "modeldiff-influence"
FORMAT_VERSION = 1
_CHUNK_BYTES = 4 << 20  # bytes per scores chunk: whole rows, ~4 MiB balances row reads vs overhead

# attribute name -> (python type check, description used in error messages)
_ATTRS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "format": (str, "string"),
    "format_version": ((int, np.integer), "integer"),
    "method": (str, "string"),
    "method_params": (str, "JSON string"),
    "dataset_name": (str, "string"),
    "dataset_identity": (str, "string"),
    "recipe_yaml": (str, "string"),
    "n_models": ((int, np.integer), "integer"),
    "lds": ((float, np.floating), "float"),
    "package_version": (str, "string"),
    "created": (str, "ISO 8601 string"),
    "store_path": (str, "string"),
}
_ARRAYS = ("scores", "train_indices", "test_indices", "train_labels", "test_labels")


@dataclass
class InfluenceDataset:
    """An attribution matrix and what it describes; ``scores`` is ``[n_test, n_train]`` float32."""

    scores: np.ndarray
    train_indices: np.ndarray
    test_indices: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    method: str
    method_params: dict[str, Any] = field(default_factory=dict)
    dataset_name: str = ""
    dataset_identity: str = ""
    recipe_yaml: str = ""
    n_models: int = 0
    lds: float = float("nan")
    package_version: str = ""
    created: str = ""
    store_path: str = ""


def _package_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("modeldiff")  # the distribution both packages ship in
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _or_unknown(labels, n: int):
    return np.full(n, -1) if labels is None else labels  # -1: label not recorded


def _as_index(a: Any, n: int, name: str) -> np.ndarray:
    arr = np.arange(n, dtype=np.int64) if a is None else np.asarray(a, dtype=np.int64).reshape(-1)
    if arr.shape[0] != n:
        raise UserError(f"{name} has {arr.shape[0]} entries but scores need {n}")
    return arr


class InfluenceWriter:
    """Context manager that writes an influence dataset block by block, atomically.

    >>> with InfluenceWriter(path, n_test, n_train, method="trak", ...) as w:
    ...     w.write_rows(0, block)            # block: [rows, n_train]
    ...     w.set_attr("lds", 0.31)

    The file appears at ``path`` only when the ``with`` block exits without error and every
    row was written; otherwise the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike, n_test: int, n_train: int, *, method: str,
                 method_params: dict[str, Any] | None = None, train_indices=None,
                 test_indices=None, train_labels=None, test_labels=None,
                 dataset_name: str = "", dataset_identity: str = "", recipe_yaml: str = "",
                 n_models: int = 0, lds: float = float("nan"), store_path: str = "",
                 compression: str | None = None):
        if n_test <= 0 or n_train <= 0:
            raise UserError(f"influence scores need a positive shape, got [{n_test}, {n_train}]")
        self.path = Path(path)
        self.n_test, self.n_train = int(n_test), int(n_train)
        self._tmp: Path | None = None
        self._written = np.zeros(self.n_test, dtype=bool)
        self._file = None
        self._compression = compression
        self._arrays = {
            "train_indices": _as_index(train_indices, self.n_train, "train_indices"),
            "test_indices": _as_index(test_indices, self.n_test, "test_indices"),
            "train_labels": _as_index(_or_unknown(train_labels, self.n_train), self.n_train,
                                      "train_labels"),
            "test_labels": _as_index(_or_unknown(test_labels, self.n_test), self.n_test,
                                     "test_labels"),
        }
        self._attrs = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": str(method),
            "method_params": json.dumps(method_params or {}, sort_keys=True, default=str),
            "dataset_name": str(dataset_name), "dataset_identity": str(dataset_identity),
            "recipe_yaml": str(recipe_yaml), "n_models": int(n_models), "lds": float(lds),
            "package_version": _package_version(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "store_path": str(store_path),
        }

    def __enter__(self) -> "InfluenceWriter":
        import tempfile

        import h5py

        from datamodels.base.atomic import TMP_MARK

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}{TMP_MARK}{os.getpid()}-", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(name)
        try:
            # no chunk cache: every block reaches the disk in write_rows (a full disk fails there, not
            # later inside a close that HDF5 cannot recover from)
            self._file = h5py.File(self._tmp, "w", rdcc_nbytes=0)
            self._create_datasets()
        except BaseException:
            self._discard()
            raise
        return self

    def _discard(self) -> None:
        """Close (ignoring errors) and remove the temporary file."""
        if self._file is not None:
            try:
                # The file is discarded: first give back the space it holds, so that HDF5 can flush
                # and close cleanly even on a full disk (a failed close leaves the library in a state
                # that crashes the interpreter at exit).
                os.truncate(self._tmp, 0)
            except OSError:
                pass
            self._scores = None  # no dataset handle may outlive the file (h5py would free it at exit)
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - a failed close must not hide the first error
                pass
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def _create_datasets(self) -> None:
        rows = max(1, min(self.n_test, _CHUNK_BYTES // (4 * self.n_train)))
        cols = min(self.n_train, _CHUNK_BYTES // 4)
        self._scores = self._file.create_dataset(
            "scores", shape=(self.n_test, self.n_train), dtype="float32", chunks=(rows, cols),
            compression=self._compression, fletcher32=True)  # a flipped bit is an error on read
        for name, arr in self._arrays.items():
            self._file.create_dataset(name, data=arr)

    def write_rows(self, start: int, block) -> None:
        """Write ``block[rows, n_train]`` (numpy or torch) into test rows ``start:start+rows``."""
        if hasattr(block, "detach"):
            block = block.detach().cpu().numpy()
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_train:
            raise ValueError(f"block must be [rows, {self.n_train}], got {list(block.shape)}")
        stop = start + block.shape[0]
        if start < 0 or stop > self.n_test:
            raise ValueError(f"rows {start}:{stop} outside [0, {self.n_test})")
        check_finite_scores(block, start)
        self._scores[start:stop] = block
        self._written[start:stop] = True

    def set_attr(self, name: str, value: Any) -> None:
        """Change one attribute before the file is closed (e.g. ``lds`` once measured)."""
        if name not in _ATTRS or name in ("format", "format_version", "package_version"):
            raise ValueError(f"cannot set attribute {name!r}")
        if name == "method_params":
            value = json.dumps(value, sort_keys=True, default=str)
        self._attrs[name] = value

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if not self._written.all():
                    missing = np.flatnonzero(~self._written)
                    raise RuntimeError(f"{missing.size} score rows were never written "
                                       f"(first: {missing[0]}); the file was not created")
                for k, v in self._attrs.items():
                    self._file.attrs[k] = v
                self._file.flush()  # a full disk fails here, while the file can still be discarded cleanly
                self._file.close()
                self._file = None
                os.replace(self._tmp, self.path)
        finally:
            self._discard()


def write_influence(path: str | os.PathLike, scores, **kwargs: Any) -> Path:
    """Write a whole ``scores[n_test, n_train]`` matrix; kwargs as :class:`InfluenceWriter`."""
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise UserError(f"scores must be a [n_test, n_train] matrix, got shape {scores.shape}")
    with InfluenceWriter(path, scores.shape[0], scores.shape[1], **kwargs) as w:
        step = max(1, _CHUNK_BYTES // (4 * scores.shape[1]))
        for s in range(0, scores.shape[0], step):
            w.write_rows(s, scores[s:s + step])
    return Path(path)


def check_finite_scores(block: np.ndarray, start: int = 0) -> None:
    """Refuse attribution scores ``block[rows, n_train]`` (test rows ``start:``) holding NaN or ±inf."""
    finite = np.isfinite(block)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(1))
        raise UserError(f"the attribution scores of {len(rows)} of {block.shape[0]} test rows (first: row "
                        f"{start + int(rows[0])}) are NaN or infinite, so none were kept: a model with non-finite "
                        f"weights or outputs, or non-finite inputs, was used; check the models (modeldiff verify) "
                        f"and the data")


def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def read_influence(path: str | os.PathLike, *, load_scores: bool = True) -> InfluenceDataset:
    """Read and validate an influence dataset; a wrong file raises :class:`UserError`.

    ``load_scores=False`` leaves ``scores`` as an empty ``[0, n_train]`` array (metadata only).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise UserError(f"influence dataset {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path} is not an HDF5 file ({err}); expected a modeldiff "
                        "influence dataset written by `modeldiff attribute`") from err
    with f:
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
        where = f"{path}: "
        if attrs.get("format") != FORMAT:
            raise UserError(where + f"attribute 'format' is {attrs.get('format')!r}, expected "
                            f"{FORMAT!r}; this is not a modeldiff influence dataset")
        for name, (typ, desc) in _ATTRS.items():
            if name not in attrs:
                raise UserError(where + f"missing attribute {name!r} ({desc}); rewrite the file "
                                "with datamodels.attribution.influence_io.write_influence")
            if not isinstance(attrs[name], typ) or isinstance(attrs[name], bool):
                raise UserError(where + f"attribute {name!r} should be of type {desc}, got "
                                f"{type(attrs[name]).__name__} {attrs[name]!r}")
        if int(attrs["format_version"]) != FORMAT_VERSION:
            raise UserError(where + f"format_version {attrs['format_version']} is not supported "
                            f"(this modeldiff reads version {FORMAT_VERSION})")
        try:
            params = json.loads(attrs["method_params"])
        except json.JSONDecodeError as err:
            raise UserError(where + f"attribute 'method_params' is not valid JSON ({err})") from err
        for name in _ARRAYS:
            if name not in f:
                raise UserError(where + f"missing dataset {name!r}")
        ds = f["scores"]
        if ds.ndim != 2:
            raise UserError(where + f"dataset 'scores' should be 2-D, got shape {ds.shape}")
        n_test, n_train = ds.shape
        arrays = {}
        for name, n in (("train_indices", n_train), ("test_indices", n_test),
                        ("train_labels", n_train), ("test_labels", n_test)):
            a = f[name][:]
            if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
                raise UserError(where + f"dataset {name!r} should be [{n}] integers, got "
                                f"shape {a.shape} dtype {a.dtype}")
            arrays[name] = a.astype(np.int64)
        try:
            scores = (ds[:].astype(np.float32, copy=False) if load_scores
                      else np.empty((0, n_train), np.float32))
        except OSError as err:  # the fletcher32 checksum of a chunk does not match: a flipped bit
            raise UserError(where + f"the scores are damaged (a stored checksum does not match: {err}); "
                            f"recompute them with modeldiff attribute") from None
    return InfluenceDataset(
        scores=scores, method=attrs["method"], method_params=params,
        dataset_name=attrs["dataset_name"], dataset_identity=attrs["dataset_identity"],
        recipe_yaml=attrs["recipe_yaml"], n_models=int(attrs["n_models"]), lds=float(attrs["lds"]),
        package_version=attrs["package_version"], created=attrs["created"],
        store_path=attrs["store_path"], **arrays)


def update_attrs(path: str | os.PathLike, **attrs: Any) -> None:
    """Set attributes (e.g. ``lds``) on an existing, valid influence dataset in place."""
    import shutil

    import h5py

    from datamodels.base.atomic import atomic_path

    read_influence(path, load_scores=False)
    for k in attrs:
        if k not in _ATTRS or k in ("format", "format_version"):
            raise ValueError(f"cannot set attribute {k!r}")
    with atomic_path(path) as tmp:  # a copy is changed and renamed: the file is never half-updated
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v, sort_keys=True, default=str) if k == "method_params" else v
