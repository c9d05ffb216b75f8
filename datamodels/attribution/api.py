"""Attribution from a model set: ``attribute(models, method="trak" | "datamodels") -> scores``.

``scores[n_test, n_train]`` (float32; rows follow the dataset's test split, columns its train
split) from the models of one :class:`~datamodels.modelset.ModelSet` (a store, its path, or models
trained elsewhere: ``ModelSet.from_folder``), by TRAK (:mod:`datamodels.attribution.trak`, needs saved weights of a
few models) or datamodels regression (:mod:`datamodels.attribution.regression`, needs masks and test
margins of many models). :func:`attribute_to_file` streams the rows into an HDF5 influence
dataset (:mod:`datamodels.attribution.influence_io`) instead of returning them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from datamodels.attribution.methods import method_name, resolve_method, run_method
from datamodels.base.errors import UserError
from datamodels.modelset import as_modelset, describe, model_dtype


def _open(store):
    return as_modelset(store)


def _dtype(store) -> torch.dtype:
    return model_dtype(store)


def check_settings(method, params: dict) -> None:
    """Refuse an unknown method, or unknown or invalid estimator settings, with one line naming them."""
    resolve_method(method).check(params)


def select_models(store, method, n_models: int | None) -> np.ndarray:
    """Model indices used by ``method``: usable models (with weights when it loads models), the first
    ``n_models``; weights files are CRC-checked when the method loads them."""
    m = resolve_method(method)
    name = method_name(method, m)
    valid = np.asarray(store.valid_indices(warn=False))
    if m.needs_weights:
        valid = np.array([i for i in valid if store.has_weights(int(i))], dtype=np.int64)
    need = int(m.min_models)
    what = "finished models with saved weights" if m.needs_weights else "finished models"
    if n_models is not None:
        asked = "the number of models asked for (--models, or a study's attribution.models)"
        if n_models < need:
            raise UserError(f"{asked} must be >= {need} for {name}, got {n_models}")
        if n_models > len(valid):
            raise UserError(f"{describe(store)} has only {len(valid)} {what}, fewer than {asked}, "
                            f"{n_models}: train more models or ask for fewer")
        valid = valid[:n_models]
    if m.needs_weights:
        valid = _intact_weights(store, valid, n_models)
    if len(valid) < need:
        raise UserError(f"{describe(store)} has {len(valid)} {what}; {name} needs at least {need}")
    return valid


def _intact_weights(store, chosen: np.ndarray, n_models: int | None) -> np.ndarray:
    """``chosen`` with each weights file's CRC-32 checked (opening the store checked sizes only); with
    ``use_valid_only`` a damaged one is dropped and the next usable model takes its place, else the
    store is refused in one line."""
    todo, keep, bad, pool = [int(i) for i in chosen], [], {}, None
    while todo:
        damaged = store.weights_damage(todo)
        bad.update(damaged)
        keep += [i for i in todo if i not in damaged]
        if not damaged or not store.use_valid_only or n_models is None:
            break
        if pool is None:
            taken = set(map(int, chosen))
            pool = [i for i in map(int, store.valid_indices(warn=False)) if i not in taken and store.has_weights(i)]
        todo, pool = pool[:len(damaged)], pool[len(damaged):]
    rows = store.refuse_or_drop(bad, sorted(keep))
    if n_models is not None and len(rows) < n_models:
        raise UserError(f"{describe(store)} has only {len(rows)} intact finished models with saved weights, "
                        f"fewer than the {n_models} asked for: repair the store or ask for fewer")
    return rows


def model_ranges(rows) -> list[list[int]]:
    """Store rows as ``[[start, stop), ...]`` runs (compact enough for an HDF5 attribute)."""
    out: list[list[int]] = []
    for r in map(int, rows):
        if out and out[-1][1] == r:
            out[-1][1] = r + 1
        else:
            out.append([r, r + 1])
    return out


def _label(store, progress) -> str | None:
    """The name in progress headings: ``progress`` when it is a string, else the store's folder."""
    if not progress:
        return None
    return progress if isinstance(progress, str) else str(getattr(store, "path", "") or "models")


def _run(store, method, n_models, device, progress, params, write):
    m = resolve_method(method)
    m.check(params)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("a CUDA device was asked for but none is visible: use --device cpu")
    rows = select_models(store, m, n_models)
    scores, used = run_method(m, store, rows, device=device, dtype=_dtype(store), progress=_label(store, progress),
                              params=params, write=write)
    return scores, {**used, "model_ranges": model_ranges(rows)}, len(rows)


def attribute(store, method="trak", *, n_models: int | None = None, device="cpu",
              progress: bool | str = True, **params) -> np.ndarray:
    """Attribution matrix ``[n_test, n_train]`` float32 of ``store``: a Store, its path, or any
    :class:`~datamodels.modelset.ModelSet` (e.g. ``ModelSet.from_folder`` for models trained elsewhere).

    ``method``: a registered name (``trak``, ``datamodels``), an import target ``"pkg.mod:MyMethod"``, or an
    :class:`~datamodels.attribution.methods.AttributionMethod` class or object.
    ``progress``: headings and bars on stderr ("attributing LABEL: model 5 of 32"); a string names
    the models in them (e.g. ``"A (high noise)"``), ``True`` uses the store's folder.
    ``params`` go to :class:`datamodels.attribution.trak.TrakSettings` (``proj_dim``, ``projector``,
    ``lambda_reg``, ``model_output`` ...) or
    :class:`datamodels.attribution.regression.RegressionSettings` (``n_lambdas``,
    ``eps``, ``val_fraction`` ...). ``n_models``: use the first ``n_models`` usable models.
    """
    from datamodels.attribution.influence_io import check_finite_scores

    scores, _, _ = _run(_open(store), method, n_models, device, progress, params, None)
    check_finite_scores(np.asarray(scores))
    return scores


def attribute_to_file(store, out: str | os.PathLike, method="trak", *,
                      n_models: int | None = None, device="cpu", progress: bool | str = True,
                      compression: str | None = None, lds: float = float("nan"),
                      **params) -> Path:
    """Like :func:`attribute`, but streams the rows into the influence dataset ``out`` (HDF5)."""
    from datamodels.attribution.influence_io import InfluenceWriter

    store = _open(store)
    m = resolve_method(method)
    m.check(params)  # before the output file is created
    meta = store.metadata["dataset"]
    data = store.load_dataset()
    recipe, path = getattr(store, "recipe", None), getattr(store, "path", None)
    writer = InfluenceWriter(
        out, meta["n_test"], meta["n_train"], method=method_name(method, m), train_labels=data.y_train.numpy(),
        test_labels=data.y_test.numpy(), dataset_name=meta["name"], dataset_identity=meta["identity"],
        recipe_yaml=recipe.to_yaml() if recipe is not None else "",
        store_path=str(Path(path).resolve()) if path is not None else "",
        compression=compression, lds=lds)
    with writer as w:
        _, used, n = _run(store, m, n_models, device, progress, params, w.write_rows)
        w.set_attr("method_params", used)
        w.set_attr("n_models", n)
    return Path(out)

