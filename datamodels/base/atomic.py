"""Atomic writes: a path that exists is always complete.

Everything the product writes goes to a hidden temporary name beside its target
(``.<name>.tmp-<pid>-<random>``) and is renamed into place only when complete, so a crash, a
``kill -9`` or a full disk never leaves a half-written file or folder under the real name. Stale
temporaries of killed runs are removed by :func:`remove_stale_temporaries` (the CLI calls it for
the folders it writes into).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}{TMP_MARK}{os.getpid()}-"


@contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``.

    ``directory``: the temporary is an (empty) folder instead of a file path (nothing created).
    ``replace``: an existing ``target`` is replaced (a folder is moved aside, then removed);
    otherwise :class:`FileExistsError`. On any exception the temporary is removed and the
    exception propagates; ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=_tmp_prefix(target), dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if target.exists() and not replace:
            raise FileExistsError(f"{target} exists")
        if directory:
            replace_dir(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an old ``target`` (moved aside, then removed)."""
    if target.is_dir():
        old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target) + "old-", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (fsynced before the rename)."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode())


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove temporaries left in ``folder`` by processes that no longer run; returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if TMP_MARK not in p.name or not p.name.startswith("."):
            continue
        pid = p.name.split(TMP_MARK, 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
