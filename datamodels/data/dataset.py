"""Datasets behind one small interface: inputs of any per-example shape, labels, class names, an identity hash.

``digits`` (the embedded default) is scikit-learn's 1,797 handwritten 8x8 digits with a fixed,
stratified split: 20 % test, ``sklearn.model_selection.train_test_split(random_state=0)``,
giving 1,437 training and 360 test images. ``cifar10`` reads an ImageFolder tree of JPEG/PNG files
(``train/<class>/*.jpg``, ``test/<class>/*.jpg``) or torchvision's own CIFAR-10 folder.
Any other data: :meth:`Dataset.from_tensors`, or a data target ``"my_pkg.data:load"`` named in a
recipe (``data: {target: ..., kwargs: {...}}``; see :func:`load_from_config`), which a store
records so that every later command reloads the data by itself.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from datamodels.base.errors import UserError, call_user
from datamodels.data.names import DATASETS

DIGITS_TEST_FRACTION = 0.2  # share of each class held out for testing
DIGITS_SPLIT_SEED = 0  # fixed: the split is part of the dataset's identity
BUILTIN_DATASETS = tuple(DATASETS)  # "digits", "cifar10" (datamodels/data/names.py)


@dataclass
class Dataset:
    """A classification dataset held as tensors, with any per-example input shape.

    Attributes:
        x_train: ``[n_train, *input_shape]``: images ``[C, H, W]`` in [0, 1], tabular vectors ``[d]``,
            token ids ``[T]``... Floating inputs are stored as float32, uint8 images as float32 in
            [0, 1]; other integer inputs (token ids) keep their integer dtype.
        y_train: ``[n_train]`` int64 class indices.
        x_test, y_test: likewise for the test split.
        class_names: ``K`` names.
        identity: sha256 hex digest of the inputs, labels and name (changes when the data does): the
            data's fingerprint, recorded by every store.
        mean, std: per-channel statistics of ``x_train`` for float images ``[n, C, H, W]`` (the built-in
            image models normalise with them); empty for other data.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    identity: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise UserError(f"x_{split} and y_{split} must be tensors (use Dataset.from_tensors for numpy arrays)")
            if x.dim() < 2:
                raise UserError(f"x_{split} must be [n, *input_shape] (e.g. [n, d] for tabular data); "
                                f"got shape {tuple(x.shape)}")
            if y.dim() != 1:
                raise UserError(f"y_{split} must be [n] class indices; got shape {tuple(y.shape)}")
            if y.is_floating_point() and not bool((y == y.round()).all()):
                raise UserError(f"y_{split} must hold integer class indices; got non-integer values")
            if len(x) != len(y):
                raise UserError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)} labels")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise UserError(f"x_train examples have shape {tuple(self.x_train.shape[1:])} but x_test examples "
                            f"{tuple(self.x_test.shape[1:])}: both splits need the same per-example shape")
        if self.x_train.is_floating_point() != self.x_test.is_floating_point():
            raise UserError("x_train and x_test must both be floating point or both integer")
        self.x_train = _as_input(self.x_train)
        self.x_test = _as_input(self.x_test)
        for split in ("train", "test"):
            check_finite_rows(getattr(self, f"x_{split}"), f"x_{split}")
        self.y_train = self.y_train.long().contiguous()
        self.y_test = self.y_test.long().contiguous()
        if len(self.y_train) == 0 or len(self.y_test) == 0:
            raise UserError("both splits need at least one example")
        if min(int(self.y_train.min()), int(self.y_test.min())) < 0:
            raise UserError("labels must be class indices 0..K-1; got a negative label")
        k = int(max(self.y_train.max(), self.y_test.max())) + 1
        if not self.class_names:
            self.class_names = [str(i) for i in range(k)]
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) < k:
            raise UserError(f"labels go up to {k - 1} but only {len(self.class_names)} class names were given")
        if not self.mean and self.is_image:
            self.mean = tuple(self.x_train.mean(dim=(0, 2, 3)).tolist())
            self.std = tuple(self.x_train.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        if not self.identity:
            self.identity = _identity(self)

    @classmethod
    def from_tensors(cls, x_train, y_train, x_test, y_test, class_names=None, name="custom") -> Dataset:
        """Wrap user arrays (numpy or torch) as a Dataset.

        ``x_*``: ``[n, *input_shape]`` (images ``[n, C, H, W]`` in [0, 1], tabular ``[n, d]``, token ids
        ``[n, T]`` integers); ``y_*``: ``[n]`` integer labels ``0..K-1``.
        """
        return cls(name, _tensor(x_train, "x_train"), _tensor(y_train, "y_train"), _tensor(x_test, "x_test"),
                   _tensor(y_test, "y_test"), list(class_names or []))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(C, H, W)``, ``(d,)`` or ``(T,)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` for image data (kept for the built-in image models); the input shape otherwise."""
        return self.input_shape

    @property
    def is_image(self) -> bool:
        """Float inputs ``[n, C, H, W]``: what image-only pieces (patches, overlays, built-in CNNs) need."""
        return self.x_train.dim() == 4 and self.x_train.is_floating_point()

    @property
    def x_dtype(self) -> str:
        return str(self.x_train.dtype).replace("torch.", "")


def _tensor(a, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except Exception as err:  # noqa: BLE001 - any conversion failure is the user's input
        raise UserError(f"{what} cannot be read as an array ({type(err).__name__}: {err})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise UserError(f"{what} must be a numeric array; got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def check_finite_rows(x: torch.Tensor, what: str) -> None:
    """Refuse ``x[n, ...]`` (floating) holding NaN or ±inf, in one line naming ``what`` and the first row."""
    if not x.is_floating_point() or len(x) == 0:
        return
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        kind = "NaN" if bool(torch.isnan(x[rows[0]]).any()) else "infinite"
        more = f" ({len(rows)} rows in all: {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''})" \
            if len(rows) > 1 else ""
        raise UserError(f"{what} row {rows[0]} has {kind} values{more}: every model trained on it would diverge "
                        f"and every attribution would be NaN; fix or drop those rows in the data loader")


def _as_input(x: torch.Tensor) -> torch.Tensor:
    """Floating inputs become float32; uint8 images ``[n, C, H, W]`` become float32 in [0, 1] (as
    torchvision's ``ToTensor``); other integer (and bool) inputs, e.g. token ids, keep their dtype."""
    if x.dtype == torch.uint8 and x.dim() == 4:
        return (x.float() / 255.0).contiguous()
    return (x.float() if x.is_floating_point() else x).contiguous()


def _identity(ds: Dataset) -> str:
    h = hashlib.sha256(ds.name.encode())
    if not ds.is_image or ds.x_train.dtype != torch.float32:  # images hash as they always have
        h.update(f"{ds.x_dtype}{list(ds.input_shape)}".encode())
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def load_digits() -> Dataset:
    """scikit-learn's digits: 1,437 train / 360 test, ``[n, 1, 8, 8]`` in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=DIGITS_SPLIT_SEED)
    tr, te = np.sort(tr), np.sort(te)
    return Dataset("digits", torch.from_numpy(x[tr]), torch.from_numpy(y[tr]), torch.from_numpy(x[te]),
                   torch.from_numpy(y[te]), [str(d) for d in range(10)])


def load_digits_builtin(data_dir: str | None = None, **options) -> Dataset:
    """The registered ``digits`` loader: :func:`load_digits`, refusing options (its split is fixed)."""
    given = sorted(k for k, v in options.items() if v is not None)
    if given:  # digits is one fixed split (its identity); silently ignoring a cap would mislead
        raise UserError(f"data.{given[0]} is not supported for digits (its 1,437/360 split is fixed): remove it, "
                        f"or use cifar10 or your own data target")
    return load_digits()


def load_dataset(name: str, data_dir: str | None = None, **options) -> Dataset:
    """Load a dataset by name (registry ``DATASETS``: ``digits``, ``cifar10`` — each entry a loader
    ``load(data_dir, **options) -> Dataset``), or
    an import target ``"my_pkg.data:load"`` (``options`` are its keyword arguments)."""
    if name in DATASETS:
        return DATASETS.get(name)(data_dir, **options)
    from datamodels.registry import is_target

    if is_target(name):
        return load_from_target(name, options)
    raise UserError(f"unknown dataset {name!r}: use {', '.join(map(repr, DATASETS))} or a data target 'my_pkg.data:load' "
                    f"(recipe data: {{target: ..., kwargs: {{...}}}})")


def load_from_target(target: str, kwargs: dict | None = None, *, name: str | None = None,
                     search_path: str | None = None, data_dir: str | None = None) -> Dataset:
    """Call the user's data loader ``target`` (``"my_pkg.data:load"``) with ``kwargs``.

    The loader returns a :class:`Dataset` or the tensors ``(x_train, y_train, x_test, y_test[,
    class_names])`` (numpy or torch; then the dataset is called ``name``, default the target).
    ``search_path``: the folder recorded when a store was made (the module is imported from there
    when it is not importable as is). ``data_dir`` is passed when the loader accepts it.
    """
    from datamodels.registry import accepted_kwargs, resolve_target

    loader = resolve_target(target, what="data target", search_path=search_path)
    if not callable(loader):
        raise UserError(f"data target {target!r} is a {type(loader).__name__}, not a function: name a function "
                        f"returning a Dataset or (x_train, y_train, x_test, y_test[, class_names])")
    kwargs = dict(kwargs or {})
    accepted = accepted_kwargs(loader)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if unknown:
        raise UserError(f"data target {target!r} does not take {', '.join(unknown)} (data.kwargs): it accepts "
                        f"{', '.join(sorted(accepted)) or 'no keyword arguments'}")
    if data_dir is not None and (accepted is None or "data_dir" in accepted):
        kwargs.setdefault("data_dir", data_dir)
    out = call_user(loader, what=f"data target {target!r}", hint="fix the loader", **kwargs)
    if isinstance(out, Dataset):
        return out
    if isinstance(out, (tuple, list)) and len(out) in (4, 5):
        try:
            return Dataset.from_tensors(*out, name=name or target)
        except UserError as err:
            raise UserError(f"data target {target!r} returned bad data: {err}") from None
    raise UserError(f"data target {target!r} returned {type(out).__name__}"
                    f"{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}: return a Dataset or "
                    f"(x_train, y_train, x_test, y_test[, class_names])")


def load_from_config(cfg, data_dir: str | None = None, search_path: str | None = None) -> Dataset:
    """The dataset a recipe's ``data`` section (:class:`datamodels.training.recipe.DataConfig`) names
    (``search_path``: a folder to import a data target from when it is not importable as is)."""
    if getattr(cfg, "target", None):
        return load_from_target(cfg.target, cfg.kwargs, name=cfg.name, data_dir=data_dir or cfg.data_dir,
                                search_path=search_path)
    opts = {k: v for k, v in (("per_class_train", cfg.per_class_train), ("per_class_test", cfg.per_class_test)) if v}
    return load_dataset(cfg.name, data_dir or cfg.data_dir, **opts)
