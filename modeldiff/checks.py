"""Checks run before any work, by every command and by the study runner: device names, output locations
(writable, not a file), free space; and a notice printed only when a step turns out slow."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from datamodels.base.errors import UserError


def check_device(name: str, option: str = "--device") -> str:
    """``name`` if it is a usable torch device (cpu, cuda, cuda:K, mps), else one-line :class:`UserError`."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"{option} {name!r} is not a device: use cpu, cuda or cuda:K") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option} {name} was asked for but no CUDA device is visible: use {option} cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"{option} {name}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                            f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{option} mps was asked for but MPS is not available: use {option} cpu")
    elif dev.type != "cpu":
        raise UserError(f"{option} {name!r} is not supported: use cpu, cuda or cuda:K")
    return name


def existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(path, option: str = "--out", *, folder: bool, force: bool = False,
                 may_exist: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work.

    ``folder``: the output is a folder (else a file). ``may_exist``: an existing output is
    resumed/updated (train); otherwise it must not exist unless ``force``.
    """
    path = Path(path)
    if str(path) == "":
        raise UserError(f"{option} is empty: name an output {'folder' if folder else 'file'}")
    anc = existing_ancestor(path.parent if not path.exists() else path)
    if path.exists():
        if folder and not path.is_dir():
            raise UserError(f"{option} {path} is a file: choose a folder (or a new name)")
        if not folder and path.is_dir():
            raise UserError(f"{option} {path} is a folder: choose a file name")
        if not may_exist and not force:
            raise UserError(f"{path} already exists: choose a new {option} or pass --force to replace it")
    elif not anc.is_dir():
        raise UserError(f"{option} {path} cannot be created: {anc} is a file, not a folder")
    parent = anc if not path.exists() else (path if path.is_dir() and may_exist else path.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write into {parent} (permission denied); choose another location")
    return path


def check_free_space(path, need_bytes: int, what: str) -> None:
    """Refuse to start when ``path``'s file system has less than ``need_bytes`` free."""
    free = shutil.disk_usage(existing_ancestor(Path(path))).free
    if need_bytes > free:
        raise UserError(f"{what} needs {need_bytes / 2**20:.1f} MiB but only {free / 2**20:.1f} MiB are free "
                        f"at {existing_ancestor(Path(path))}: free some space or choose another location")


class notice_if_slow:
    """Context manager: print ``message`` on stderr only if the block is still running after ``after``
    seconds, so fast steps (and bad input refused at once) stay silent — one ``error:`` line — while a
    slow load never runs silently.

    >>> with notice_if_slow("loading cifar10 and checking recipe r"):
    ...     data = load()
    """

    def __init__(self, message: str, after: float = 5.0):
        import threading

        self._timer = threading.Timer(after, self._say, args=(message,))
        self._timer.daemon = True

    @staticmethod
    def _say(message: str) -> None:
        from datamodels.base.log import get_logger

        get_logger(__name__).info(message)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
