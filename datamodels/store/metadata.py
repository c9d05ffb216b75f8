"""A store's ``metadata.json``: what was trained, on what, with which versions; resume checks."""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
from pathlib import Path

from datamodels.base.errors import UserError
from datamodels.data.dataset import Dataset, load_dataset
from datamodels.training.recipe import Recipe

# Settings that must match for a resume to be allowed (the rest is informational).
RESUME_KEYS = ("recipe", "dataset.name", "dataset.identity", "n_models", "subset_fraction", "seed",
               "save_weights", "train_margins")


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("modeldiff", "torch", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def build_metadata(recipe: Recipe, data: Dataset, n_models, subset_fraction, seed, save_weights, train_margins,
                   arrays) -> dict:
    return {
        "format": "modeldiff-store", "format_version": 1,
        "recipe": recipe.to_dict(),
        "noise_temperature": recipe.noise_temperature,
        "dataset": dataset_record(recipe, data),
        "targets": _recipe_targets(recipe),
        "n_models": n_models, "subset_fraction": subset_fraction, "seed": seed,
        "save_weights": save_weights, "train_margins": train_margins,
        "arrays": arrays,
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _recipe_targets(recipe: Recipe) -> dict:
    from datamodels.training.backends import recipe_targets

    return recipe_targets(recipe)


def dataset_record(recipe: Recipe, data: Dataset) -> dict:
    """What a store records about its data: name, fingerprint (``identity``), shapes, statistics and,
    for a data target, the target and the folder it was imported from (so any command reloads it)."""
    rec = {"name": data.name, "identity": data.identity, "n_train": data.n_train, "n_test": data.n_test,
           "num_classes": data.num_classes, "class_names": data.class_names,
           "image_shape": list(data.image_shape), "input_shape": list(data.input_shape), "x_dtype": data.x_dtype,
           "mean": list(data.mean), "std": list(data.std)}
    target = getattr(recipe.data, "target", None)
    if target:
        from datamodels.registry import target_record

        rec["target"] = target_record(target)
    return rec


def _get(meta: dict, dotted: str):
    for part in dotted.split("."):
        meta = meta.get(part) if isinstance(meta, dict) else None
    return meta


def _first_difference(old, new, prefix: str):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            diff = _first_difference(old.get(key), new.get(key), f"{prefix}.{key}")
            if diff:
                return diff
        return None
    return None if old == new else (prefix, old, new)


def _normalised(recipe: dict, path) -> dict:
    """A stored recipe as this release writes it (defaults of keys added since filled in)."""
    from datamodels.training.recipe import recipe_from_dict

    try:
        return recipe_from_dict(recipe, stored=True).to_dict()
    except UserError as err:
        raise UserError(f"{path} was made by another release whose recipe no longer reads ({err}): train into a "
                        f"new --out folder (the old store's outputs still open for analysis)") from None


def check_compatible(old: dict, new: dict, path) -> None:
    """Refuse to resume into a store made with other settings, naming the first difference."""
    for key in RESUME_KEYS:
        was, now = _get(old, key), _get(new, key)
        if key == "recipe":  # normalised (older releases wrote fewer keys); the data may move: identity is checked
            was, now = ({**r, "data": {**r["data"], "data_dir": None}} for r in (_normalised(was, path), now))
        diff = _first_difference(was, now, key)
        if diff:
            name, was, now = diff
            raise UserError(f"{path} was made with {name}={was!r} but this run has {name}={now!r}: "
                            f"use a new --out folder or the original settings")


def reload_dataset(meta: dict, data_dir: str | None = None) -> Dataset:
    """Load the dataset a store was made from (built-in name or recorded data target) and check its
    fingerprint (``identity``) against the one recorded. A built-in dataset's recorded folder that no
    longer exists (a moved store) gives way to the loader's own setting, e.g. MODELDIFF_CIFAR10_DIR."""
    from datamodels.data.dataset import BUILTIN_DATASETS, load_from_target

    rec, d = meta["recipe"]["data"], meta["dataset"]
    target = rec.get("target")
    if target:
        where = (d.get("target") or {}).get("path")
        data = load_from_target(target, rec.get("kwargs") or {}, name=rec.get("name"), search_path=where,
                                data_dir=data_dir or rec.get("data_dir"))
        if data.identity != d["identity"]:
            raise UserError(f"data target {target!r} now gives data with fingerprint {data.identity[:12]} but the "
                            f"store was trained on {d['identity'][:12]}: restore the original data (or loader), or "
                            f"train a new store")
        return data
    if d["name"] not in BUILTIN_DATASETS:
        raise UserError(f"store was trained on data '{d['name']}' given in Python (Dataset.from_tensors), which no "
                        f"command can reload: to make it reopenable, train with a data target (recipe data: "
                        f"{{target: 'my_pkg.data:load'}}), or in Python pass Store.open(path, dataset=...)")
    opts = {k: rec[k] for k in ("per_class_train", "per_class_test") if rec.get(k) is not None}
    where = data_dir or rec.get("data_dir")
    if where and not data_dir and not Path(where).expanduser().exists():
        where = None  # a store moved to another machine: the loader's own setting (e.g. its environment variable)
    data = load_dataset(d["name"], where, **opts)
    if data.identity != d["identity"]:
        raise UserError(f"the {d['name']} data found now differs from the data this store was trained on "
                        f"(identity {data.identity[:12]} != {d['identity'][:12]}): point data_dir at the original copy")
    return data
