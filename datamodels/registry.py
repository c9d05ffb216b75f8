"""Registries of pluggable pieces and import targets (``"my_pkg.module:attribute"``).

Every stage a researcher may replace (model, optimizer, loss, trainer, dataset, attribution
method, launcher, transform kind) has one :class:`Registry`. Built-ins are registered under short
names; anything else is named by an import target, resolved by :func:`resolve_target`. The CLI and
study configs read their choices from the registries (``registry.names()``), never from lists
written twice.

An import target is recorded with the folder it was imported from (:func:`target_record`), so a
store made from a user's module can be reopened by any later command, even from another working
directory (:func:`resolve_target` retries with the recorded folder on ``sys.path``).

A callable defined where no later process can import it (a notebook cell, a script run as
``__main__``, a lambda or a nested function) is kept in this process under a *Python-only key*
``"python:<module>.<qualname>"`` (:func:`record`): what is made with it works in this process and
records that it can be reopened from Python only (the command line says so in one line).

Built-ins are registered lazily by import target (:meth:`Registry.lazy`), so the name lists stay
torch-free (``modeldiff --help`` imports no torch) while ``get`` returns the implementation.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datamodels.base.errors import UserError, first_line

PYTHON_ONLY = "python:"  # prefix of the keys of objects that live in this process only
_LIVE: dict[str, Any] = {}  # Python-only key -> the object


def is_target(text: Any) -> bool:
    """True for an import target ``"package.module:attribute"`` (or a Python-only key)."""
    return isinstance(text, str) and ":" in text and all(text.split(":", 1))


def is_python_only(text: Any) -> bool:
    """True for a Python-only key (see :func:`record`)."""
    return isinstance(text, str) and text.startswith(PYTHON_ONLY)


def record(obj: Any) -> str:
    """The import target of ``obj`` when another process can import it, else a Python-only key.

    A module-level function or class of an importable module gives ``"pkg.mod:name"``. Anything
    else callable (defined in a notebook or in ``__main__``, a lambda, a closure, a
    ``functools.partial``) is remembered in this process and gets ``"python:<module>.<qualname>"``;
    recording a top-level object again under the same name replaces the earlier one (a notebook
    cell run twice), while distinct lambdas or closures get numbered keys.
    """
    try:
        target = target_of(obj)
    except UserError:
        target = None
    if target is not None and not target.startswith("__main__:") and _importable(target, obj):
        return target
    module = getattr(obj, "__module__", None) or "__main__"
    qualname = getattr(obj, "__qualname__", None) or getattr(getattr(obj, "func", None), "__qualname__", None) \
        or type(obj).__name__
    key = f"{PYTHON_ONLY}{module}.{qualname}"
    if "<" in qualname or not hasattr(obj, "__qualname__"):
        n = 1
        while key in _LIVE and _LIVE[key] is not obj:
            n += 1
            key = f"{PYTHON_ONLY}{module}.{qualname}#{n}"
    _LIVE[key] = obj
    return key


def python_only_keys(value: Any) -> list[str]:
    """Every Python-only key inside ``value`` (nested dicts and lists: a recipe as a dict)."""
    if is_python_only(value):
        return [value]
    if isinstance(value, dict):
        return [k for v in value.values() for k in python_only_keys(v)]
    if isinstance(value, (list, tuple)):
        return [k for v in value for k in python_only_keys(v)]
    return []


def missing_python_objects(value: Any) -> list[str]:
    """The Python-only keys inside ``value`` that this process does not hold."""
    return [k for k in python_only_keys(value) if k not in _LIVE]


def python_only_message(what: str, keys: list[str]) -> str:
    """The one line the command line prints for something made with Python-only objects."""
    names = ", ".join(k[len(PYTHON_ONLY):] for k in keys)
    return (f"{what} was made with objects defined in Python, not in an importable module ({names}): it can be "
            f"reopened from Python only, in a process that defines them again (e.g. builds the same Algorithm); "
            f"to use the command line, move them into a module and name them 'pkg.mod:name'")


def _importable(target: str, obj: Any) -> bool:
    module_name = target.split(":", 1)[0]
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__file__", None) is None:
        return False
    try:
        found = resolve_target(target)
    except UserError:
        return False
    return found is obj


def resolve_target(target: str, *, what: str = "target", search_path: str | None = None) -> Any:
    """Import ``"package.module:attribute"`` (dots allowed after the colon) and return the attribute.

    ``search_path``: a folder to put on ``sys.path`` when the module is not importable as is (the
    folder recorded when a store was made). Raises :class:`UserError` naming the target and what
    to do when the module or attribute cannot be found, or the module fails while importing.
    """
    if is_python_only(target):
        if target in _LIVE:
            return _LIVE[target]
        raise UserError(python_only_message(f"{what} {target[len(PYTHON_ONLY):]!r}", [target]))
    if not is_target(target):
        raise UserError(f"{what} {target!r} is not an import target: write it as 'package.module:name'")
    module_name, attr_path = target.split(":", 1)
    try:
        module = _import(module_name, search_path)
    except ModuleNotFoundError as err:
        hint = f" (also tried {search_path})" if search_path else ""
        raise UserError(f"{what} {target!r}: cannot import module {module_name!r}{hint} ({err}); install it or run "
                        f"from the folder that contains it (or add that folder to PYTHONPATH)") from None
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 — the user's module raised while importing: one line, traceback kept
        err.add_note(f"modeldiff: raised while importing {module_name!r} for {what} {target!r} (user code)")
        raise UserError(f"{what} {target!r}: importing {module_name!r} failed with {type(err).__name__}: "
                        f"{first_line(err)} — fix the module") from err
    obj = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{what} {target!r}: module {module_name!r} has no attribute {attr_path!r}; "
                            f"check the name after the colon")
        obj = getattr(obj, part)
    return obj


def _import(module_name: str, search_path: str | None):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if not search_path or not (err.name and module_name.startswith(err.name.split(".")[0])):
            raise
        if search_path not in sys.path:
            sys.path.insert(0, search_path)
        return importlib.import_module(module_name)


def target_record(target: str) -> dict:
    """``{"target", "path": folder, "file": module source, "sha256": its hash}``: what a store records so the
    target can be re-imported and a later change of its code noticed (:mod:`datamodels.store.fingerprints`)."""
    if is_python_only(target):
        return {"target": target, "path": None, "python_only": True}
    module_name = target.split(":", 1)[0]
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    file = getattr(module, "__file__", None)
    root = None
    if file:
        root = Path(file).resolve().parent
        for _ in module_name.split(".")[1:]:
            root = root.parent
    rec = {"target": target, "path": str(root) if root else None}
    if file and source_hash(file):
        rec.update(file=str(Path(file).resolve()), sha256=source_hash(file))
    return rec


def source_hash(file) -> str | None:
    """sha256 hex digest of a source file's bytes, None when it cannot be read."""
    import hashlib

    try:
        return hashlib.sha256(Path(file).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return None


def target_of(obj: Callable) -> str:
    """The import target of a module-level function or class (``"pkg.mod:name"``).

    Raises :class:`UserError` for lambdas, closures and other objects that cannot be re-imported.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise UserError(f"{obj!r} cannot be recorded as an import target: define it at the top level of an "
                        f"importable module (not a lambda or a nested function)")
    return f"{module}:{qualname}"


def accepted_kwargs(fn: Callable) -> set[str] | None:
    """Keyword names ``fn`` accepts (None when it takes ``**kwargs``, i.e. anything)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                 inspect.Parameter.KEYWORD_ONLY)}


class _Lazy:
    """A registered implementation named by its import target, imported on first :meth:`Registry.get`."""

    def __init__(self, target: str):
        self.target = target


class Registry:
    """Named implementations of one kind, plus import targets for everything else.

    >>> OPTIMIZERS = Registry("optimizer")
    >>> OPTIMIZERS.register("sgd", torch.optim.SGD)
    >>> METHODS.lazy("trak", "datamodels.attribution.methods:TrakMethod", help="TRAK ...")  # imported by get()
    >>> OPTIMIZERS.get("sgd"), OPTIMIZERS.get("my_pkg.opt:Lion")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: Any = None, *, help: str = ""):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        ``obj`` may also be an import target string (the implementation, imported by :meth:`get`)."""
        if obj is None:
            return lambda o: self.register(name, o, help=help)
        self._entries[name] = obj
        self._help[name] = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        return obj

    def lazy(self, name: str, target: str, *, help: str = "") -> None:
        """Register the implementation at import target ``target`` without importing it (torch-free)."""
        self._entries[name] = _Lazy(target)
        self._help[name] = help

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests; a plug-in that withdraws an entry)."""
        self._entries.pop(name, None)
        self._help.pop(name, None)

    def help(self, name: str) -> str:
        """The one-line description registered with ``name``."""
        return self._help.get(name, "")

    def names(self) -> list[str]:
        """Registered names, in registration order (the CLI's choices)."""
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    def __iter__(self):
        """Iterate over the registered names (so ``", ".join(registry)`` lists them)."""
        return iter(self.names())

    def check(self, name: str, *, key: str | None = None, targets: bool = False) -> str:
        """``name`` when it is registered (or, with ``targets``, an import target), else a one-line
        :class:`UserError` naming ``key`` and the choices. Imports nothing."""
        if name in self or targets and is_target(name):
            return name
        also = " or an import target 'package.module:name'" if targets else ""
        raise UserError(f"{key or self.kind} must be one of {', '.join(self._entries)}{also}; got {name!r}")

    def get(self, name: str, *, key: str | None = None, search_path: str | None = None) -> Any:
        """The implementation registered as ``name``, or the object an import target names.

        ``key``: the setting being resolved (e.g. ``"optim.name"``), used in the error message.
        """
        if name in self:
            entry = self._entries[name]
            if isinstance(entry, _Lazy):
                entry = self._entries[name] = resolve_target(entry.target, what=f"{self.kind} {name!r}")
            return entry
        what = f"{key or self.kind} {name!r}"
        if is_target(name):
            return resolve_target(name, what=key or self.kind, search_path=search_path)
        raise UserError(f"unknown {what}: choose one of {', '.join(self._entries)} or give an import target "
                        f"'package.module:name'")

    def resolve(self, spec: Any, *, key: str | None = None, search_path: str | None = None) -> Any:
        """Like :meth:`get`, but an object that is not a string is returned as it is (an instance or
        a class given in Python wherever a name is accepted)."""
        return self.get(spec, key=key, search_path=search_path) if isinstance(spec, str) else spec
