"""Registries of pluggable pieces and import targets (``"my_pkg.module:attribute"``).

Every stage a researcher may replace (model, optimizer, loss, trainer, dataset, attribution
method, launcher, transform kind) has one :class:`Registry`. Built-ins are registered under short
names; anything else is named by an import target, resolved by :func:`resolve_target`. The CLI and
study configs read their choices from the registries (``registry.names()``), never from lists
written twice.

An import target is recorded with the folder it was imported from (:func:`target_record`), so a
store made from a user's module can be reopened by any later command, even from another working
directory (:func:`resolve_target` retries with the recorded folder on ``sys.path``).
"""
from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datamodels.base.errors import UserError


def is_target(text: Any) -> bool:
    """True for an import target ``"package.module:attribute"``."""
    return isinstance(text, str) and ":" in text and all(text.split(":", 1))


def resolve_target(target: str, *, what: str = "target", search_path: str | None = None) -> Any:
    """Import ``"package.module:attribute"`` (dots allowed after the colon) and return the attribute.

    ``search_path``: a folder to put on ``sys.path`` when the module is not importable as is (the
    folder recorded when a store was made). Raises :class:`UserError` naming the target and what
    to do when the module or attribute cannot be found, or the module fails while importing.
    """
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
    except Exception as err:  # noqa: BLE001 — the user's module raised while importing: say so, on one line
        raise UserError(f"{what} {target!r}: importing {module_name!r} failed with {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''} — fix the module") from None
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
    """``{"target": ..., "path": folder}``: what a store records so the target can be re-imported."""
    module_name = target.split(":", 1)[0]
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    file = getattr(module, "__file__", None)
    root = None
    if file:
        root = Path(file).resolve().parent
        for _ in module_name.split(".")[1:]:
            root = root.parent
    return {"target": target, "path": str(root) if root else None}


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


class Registry:
    """Named built-ins of one kind, plus import targets for everything else.

    >>> OPTIMIZERS = Registry("optimizer")
    >>> OPTIMIZERS.register("sgd", torch.optim.SGD)
    >>> OPTIMIZERS.get("sgd"), OPTIMIZERS.get("my_pkg.opt:Lion")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""
        if obj is None:
            return lambda o: self.register(name, o)
        self._entries[name] = obj
        return obj

    def names(self) -> list[str]:
        """Built-in names, in registration order (the CLI's choices)."""
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    def __iter__(self):
        """Iterate over the built-in names (so ``", ".join(registry)`` lists them)."""
        return iter(self.names())

    def check(self, name: str, *, key: str | None = None, targets: bool = False) -> str:
        """``name`` when it is a built-in (or, with ``targets``, an import target), else a one-line
        :class:`UserError` naming ``key`` and the choices. Imports nothing."""
        if name in self._entries or targets and is_target(name):
            return name
        also = " or an import target 'package.module:name'" if targets else ""
        raise UserError(f"{key or self.kind} must be one of {', '.join(self._entries)}{also}; got {name!r}")

    def get(self, name: str, *, key: str | None = None, search_path: str | None = None) -> Any:
        """The built-in called ``name``, or the object an import target names.

        ``key``: the setting being resolved (e.g. ``"optim.name"``), used in the error message.
        """
        if name in self._entries:
            return self._entries[name]
        what = f"{key or self.kind} {name!r}"
        if is_target(name):
            return resolve_target(name, what=key or self.kind, search_path=search_path)
        raise UserError(f"unknown {what}: choose one of {', '.join(self._entries)} or give an import target "
                        f"'package.module:name'")
