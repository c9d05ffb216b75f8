"""User code fingerprints: the sha256 of the source file of every user module a store imported.

A store records, for each import target (model, optimizer, loss, trainer, data loader), the module's
file and the hash of its source (:func:`datamodels.registry.target_record`). Reopening compares the
recorded hashes with the files as they are now: a model factory edited without changing parameter
shapes (ReLU -> Tanh) would otherwise be used silently with weights trained by the old one.
"""
from __future__ import annotations

from pathlib import Path

from datamodels.base.errors import UserError
from datamodels.registry import source_hash


def _records(meta: dict) -> list[dict]:
    recs = list((meta.get("targets") or {}).values())
    data_target = (meta.get("dataset") or {}).get("target")
    if isinstance(data_target, dict):
        recs.append(data_target)
    return [r for r in recs if isinstance(r, dict) and r.get("sha256") and r.get("file")]


def code_changes(meta: dict) -> list[dict]:
    """``[{"module", "file", "recorded", "now"}]`` for each recorded user module whose source differs now.

    The module is looked for at the recorded file, else where it imports from now (a moved project);
    a module found nowhere is not reported (nothing can use it). Empty for stores made before
    fingerprints were recorded."""
    out, seen = [], set()
    for rec in _records(meta):
        module = rec["target"].split(":", 1)[0]
        if module in seen:
            continue
        seen.add(module)
        file = rec["file"] if Path(rec["file"]).is_file() else _current_file(module, rec.get("path"))
        now = source_hash(file) if file else None
        if now is not None and now != rec["sha256"]:
            out.append({"module": module, "file": str(file), "recorded": rec["sha256"][:12], "now": now[:12]})
    return out


def _current_file(module: str, folder: str | None) -> str | None:
    """The source file ``module`` would be imported from now (also looking in ``folder``), without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None and folder:
        candidate = Path(folder, *module.split("."))
        for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
            if path.is_file():
                return str(path)
    return getattr(spec, "origin", None) if spec is not None else None


def check_code(meta: dict, path, *, allow: bool, doing: str) -> list[dict]:
    """The code changes of the store at ``path``; refused in one line unless ``allow`` (``doing``: what
    the command is about to do, e.g. "attribute")."""
    changes = code_changes(meta)
    if changes and not allow:
        c = changes[0]
        what = f"changed (sha256 {c['recorded']} when trained, {c['now']} now)"
        more = f" and {len(changes) - 1} more module(s)" if len(changes) > 1 else ""
        raise UserError(f"{path}: the user module {c['module']} ({c['file']}) {what}{more}: the models were trained "
                        f"with the old code, so {doing} would mix them with the new; restore the code, train a new "
                        f"store, or pass --allow-changed-code to go on anyway (recorded as a code_changed warning)")
    return changes
