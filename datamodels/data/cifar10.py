"""CIFAR-10 from a local folder (or a download asked for explicitly) as a :class:`Dataset`.

Sources, tried in this order for a folder ``DIR``:

1. ImageFolder layout: ``DIR/train/<class>/*.{jpg,jpeg,png}`` and ``DIR/test/<class>/...``
   (class names = sorted sub-folder names; files sorted by name). Decoding 60,000 JPEGs takes a
   while on few cores, so the decoded ``uint8`` pixels are cached under ``MODELDIFF_CACHE_DIR``
   (default ``~/.cache/modeldiff``), keyed by a hash of the resolved folder, the file list, their
   sizes and modification times; a changed file means a new key.
2. torchvision's own folder ``DIR/cifar-10-batches-py`` (or ``DIR`` being that folder), read with
   ``torchvision.datasets.CIFAR10(download=False)``, which checks the files' checksums.
3. ``download=True`` only: torchvision downloads CIFAR-10 into ``DIR`` (or the cache folder).

``DIR`` defaults to the environment variable ``MODELDIFF_CIFAR10_DIR``. ``per_class_train=k``
keeps the first ``k`` images of each class (first sorted files, or first in torchvision's order):
small, deterministic subsets for tests.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from datamodels.base.errors import UserError
from datamodels.data.dataset import Dataset

ENV_DIR = "MODELDIFF_CIFAR10_DIR"
ENV_CACHE = "MODELDIFF_CACHE_DIR"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DECODE_CHUNK = 512  # files read and decoded per thread task
CACHE_FORMAT = 1  # bump when the cached array's layout changes


def cache_dir() -> Path:
    """Where decoded pixels are cached: ``$MODELDIFF_CACHE_DIR`` or ``~/.cache/modeldiff``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "modeldiff")


def load_cifar10(data_dir: str | os.PathLike | None = None, per_class_train: int | None = None,
                 per_class_test: int | None = None, download: bool = False) -> Dataset:
    """CIFAR-10 as a Dataset named ``cifar10``: ``x[n, 3, 32, 32]`` float32 in [0, 1], int64 labels.

    Raises :class:`UserError` when no folder is given (argument or ``MODELDIFF_CIFAR10_DIR``) and
    no download was asked for, or when the folder holds neither supported layout.
    """
    for key, k in (("per_class_train", per_class_train), ("per_class_test", per_class_test)):
        if k is not None and k < 1:
            raise UserError(f"{key} must be >= 1, got {k}")
    if data_dir is None:
        data_dir = os.environ.get(ENV_DIR) or None
    if data_dir is None:
        if not download:
            raise UserError(f"CIFAR-10 needs its data folder: set {ENV_DIR}=/path/to/cifar10 (an ImageFolder "
                            f"tree train/<class>/*.jpg + test/<class>/*.jpg, or torchvision's cifar-10-batches-py), "
                            f"or give data.data_dir / --data-dir (in Python, load_cifar10(download=True) can fetch "
                            f"it where the network allows)")
        data_dir = cache_dir() / "cifar10-torchvision"
    root = Path(data_dir).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _from_image_folder(root, per_class_train, per_class_test)
    if root.name == "cifar-10-batches-py" and root.is_dir():
        root = root.parent
    if (root / "cifar-10-batches-py").is_dir() or download:
        return _from_torchvision(root, per_class_train, per_class_test, download)
    if not root.exists():
        raise UserError(f"CIFAR-10 folder {root} does not exist: fix {ENV_DIR} / data_dir, or allow a download")
    raise UserError(f"{root} holds neither train/ and test/ class folders nor cifar-10-batches-py: point {ENV_DIR} "
                    f"/ data_dir at a CIFAR-10 folder, or allow a download")


# -- ImageFolder -------------------------------------------------------------------------------
def list_image_folder(split_dir: Path, per_class: int | None, classes: list[str] | None = None):
    """Sorted ``(files, labels, class_names)`` of one split; ``classes`` fixes the label order."""
    found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if classes is not None and found != classes:
        raise UserError(f"{split_dir} has class folders {found} but train/ has {classes}: both splits need the same")
    if not found:
        raise UserError(f"{split_dir} has no class folders: expected {split_dir}/<class>/*.jpg")
    files, labels = [], []
    for label, name in enumerate(found):
        folder = os.path.join(split_dir, name)
        names = sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise UserError(f"{folder} holds no .jpg/.jpeg/.png images")
        names = names[:per_class] if per_class else names
        files += [os.path.join(folder, n) for n in names]
        labels += [label] * len(names)
    return files, np.asarray(labels, dtype=np.int64), found


def _from_image_folder(root: Path, per_class_train, per_class_test) -> Dataset:
    train_files, y_train, classes = list_image_folder(root / "train", per_class_train)
    test_files, y_test, _ = list_image_folder(root / "test", per_class_test, classes)
    x_train = _cached_pixels(root, train_files, "train")
    x_test = _cached_pixels(root, test_files, "test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserError(f"train images are {x_train.shape[2:]} but test images are {x_test.shape[2:]} pixels")
    return _dataset(x_train, y_train, x_test, y_test, classes)


def cache_key(root: Path, files: list[str]) -> str:
    """sha256 of the resolved folder, the file names, sizes and modification times (ns)."""
    parts = [f"modeldiff-pixels-v{CACHE_FORMAT}", str(root.resolve())]
    skip = len(str(root)) + 1  # files are str(root)/split/class/name
    for f in files:
        st = os.stat(f)
        parts.append(f"{f[skip:]}\0{st.st_size}\0{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_file(root: Path, files: list[str]) -> Path:
    """The cache file of the decoded pixels of ``files`` (see :func:`cache_key`)."""
    return cache_dir() / f"cifar10-{cache_key(root, files)[:32]}.npy"


def _cached_pixels(root: Path, files: list[str], split: str) -> np.ndarray:
    """``uint8[n, 3, H, W]`` of ``files``: from the cache, or decoded and then cached (atomically)."""
    target = cache_file(root, files)
    if target.is_file():
        try:
            arr = np.load(target)
            if arr.dtype == np.uint8 and arr.ndim == 4 and len(arr) == len(files):
                return arr
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
    arr = decode_files(files, desc=f"decoding cifar10 {split}")
    try:
        from datamodels.base.atomic import atomic_path, remove_stale_temporaries

        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.chmod(tmp, 0o644)
    except OSError as err:  # a read-only cache only costs speed
        import warnings

        warnings.warn(f"could not cache decoded CIFAR-10 pixels in {target.parent}: {err}", stacklevel=2)
    return arr


def decode_files(files: list[str], desc: str = "decoding") -> np.ndarray:
    """Read and decode image files with PIL in parallel threads to ``uint8[n, 3, H, W]`` (RGB).

    Every image must have the size of the first. (PIL releases the GIL while decoding.)
    """
    from datamodels.base.progress import progress_bar

    chunks = [files[i:i + DECODE_CHUNK] for i in range(0, len(files), DECODE_CHUNK)]
    workers = max(1, min(8, os.cpu_count() or 1))
    parts = []
    with ThreadPoolExecutor(workers) as pool, progress_bar(total=len(files), desc=desc, unit="img",
                                                           progress=len(files) >= 2000) as bar:
        for part in pool.map(_decode_chunk, chunks):
            parts.append(part)
            bar.update(len(part))
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise UserError(f"images of different sizes {sorted(s[1:] for s in shapes)} among the files: "
                        f"CIFAR-10 images must all be the same size")
    return np.concatenate(parts) if parts else np.zeros((0, 3, 32, 32), np.uint8)


def _decode_chunk(files: list[str]) -> np.ndarray:
    from PIL import Image

    images = []
    for f in files:
        with Image.open(f) as im:
            images.append(np.asarray(im.convert("RGB")))
    sizes = {img.shape for img in images}
    if len(sizes) > 1:
        raise UserError(f"images of different sizes {sorted(s[:2] for s in sizes)} in {os.path.dirname(files[0])}: "
                        f"CIFAR-10 images must all be the same size")
    return np.stack(images).transpose(0, 3, 1, 2).copy()  # [n, H, W, 3] -> [n, 3, H, W]


# -- torchvision ---------------------------------------------------------------------------------
def _from_torchvision(root: Path, per_class_train, per_class_test, download: bool) -> Dataset:
    from torchvision.datasets import CIFAR10

    splits = {}
    for train, k in ((True, per_class_train), (False, per_class_test)):
        try:
            ds = CIFAR10(str(root), train=train, download=download)
        except RuntimeError as err:  # missing or corrupted batches
            raise UserError(f"torchvision could not read CIFAR-10 from {root}: {err}") from None
        x = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # [n, 32, 32, 3] -> [n, 3, 32, 32]
        y = np.asarray(ds.targets, dtype=np.int64)
        keep = first_per_class(y, k)
        splits[train] = (x[keep], y[keep], list(ds.classes))
    (x_tr, y_tr, classes), (x_te, y_te, _) = splits[True], splits[False]
    return _dataset(x_tr, y_tr, x_te, y_te, classes)


def first_per_class(labels: np.ndarray, k: int | None) -> np.ndarray:
    """Positions of the first ``k`` examples of each class, in their original order (all when ``k`` is None)."""
    if not k:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:k]] = True
    return np.flatnonzero(keep)


def _dataset(x_train: np.ndarray, y_train, x_test: np.ndarray, y_test, classes) -> Dataset:
    to_float = lambda a: torch.from_numpy(a).float().div_(255.0)
    return Dataset("cifar10", to_float(x_train), torch.from_numpy(y_train), to_float(x_test),
                   torch.from_numpy(y_test), list(classes))
