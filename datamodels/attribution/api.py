"""Attribution from a model set: ``attribute(models, method="trak" | "datamodels") -> scores``.

``scores[n_test, n_train]`` (float32; rows follow the dataset's test split, columns its train
split) from the models of one :class:`~datamodels.modelset.ModelSet` (a store, its path, or models
trained elsewhere: ``ModelSet.from_folder``), by TRAK (:mod:`datamodels.attribution.trak`, needs saved weights of a
few models) or datamodels regression (:mod:`datamodels.attribution.regression`, needs masks and test
margins of many models). :func:`attribute_to_file` streams the rows into an HDF5 influence
dataset (:mod:`datamodels.attribution.influence_io`) instead of returning them.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from datamodels.attribution.names import METHODS
from datamodels.base.errors import UserError
from datamodels.modelset import as_modelset, describe, model_dtype


def _open(store):
    return as_modelset(store)


def _dtype(store) -> torch.dtype:
    return model_dtype(store)


def check_settings(method: str, params: dict) -> None:
    """Refuse unknown or invalid estimator settings with one line naming them and the allowed ones."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "trak":
        from datamodels.attribution.trak import TrakSettings as settings_cls
    else:
        from datamodels.attribution.regression import RegressionSettings as settings_cls
    allowed = [f.name for f in dataclasses.fields(settings_cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UserError(f"unknown {method} setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                        f"allowed are {', '.join(allowed)}")
    try:
        settings_cls(**params)
    except UserError:
        raise
    except (ValueError, TypeError) as err:  # the settings' own validation of values
        raise UserError(f"bad {method} setting: {err}") from None


def select_models(store, method: str, n_models: int | None) -> np.ndarray:
    """Model indices used by ``method``: usable models (with weights for TRAK), the first ``n_models``."""
    valid = np.asarray(store.valid_indices(warn=False))
    if method == "trak":
        valid = np.array([i for i in valid if store.has_weights(int(i))], dtype=np.int64)
    need = 1 if method == "trak" else 10
    what = "finished models with saved weights" if method == "trak" else "finished models"
    if n_models is not None:
        asked = "the number of models asked for (--models, or a study's attribution.models)"
        if n_models < need:
            raise UserError(f"{asked} must be >= {need} for {method}, got {n_models}")
        if n_models > len(valid):
            raise UserError(f"{describe(store)} has only {len(valid)} {what}, fewer than {asked}, "
                            f"{n_models}: train more models or ask for fewer")
        valid = valid[:n_models]
    if method == "trak" and hasattr(store, "weights_damage"):
        valid = _intact_weights(store, valid, n_models)
    if len(valid) < need:
        raise UserError(f"{describe(store)} has {len(valid)} {what}; {method} needs at least {need}")
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
        if not damaged or not getattr(store, "use_valid_only", False) or n_models is None:
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
    check_settings(method, params)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("a CUDA device was asked for but none is visible: use --device cpu")
    rows = select_models(store, method, n_models)
    used = {"model_ranges": model_ranges(rows)}
    if method == "datamodels":
        from datamodels.attribution.regression import DatamodelsRegression

        label = _label(store, progress)
        est = DatamodelsRegression(device=device, progress=label and f"attributing {label}: datamodels regression on "
                                   f"{len(rows)} models", **params)
        out = est.fit(np.asarray(store.masks)[rows], np.asarray(store.test_margins)[rows], write=write)
        return (None if write else out.coef_), {**est.params(), **used}, len(rows)
    from datamodels.attribution.trak import TRAK

    data = store.load_dataset()
    est = TRAK(device=device, dtype=_dtype(store), progress=progress, **params)
    from datamodels.base.progress import announced

    models = announced(rows, lambda i: store.load_model(i, device), _label(store, progress), len(rows))
    scores = est.run(models, data.x_train, data.y_train, data.x_test, data.y_test, write, n_models=len(rows))
    return scores, {**est.params(), **est.projector_params_, **used}, len(rows)


def attribute(store, method: str = "trak", *, n_models: int | None = None, device="cpu",
              progress: bool | str = True, **params) -> np.ndarray:
    """Attribution matrix ``[n_test, n_train]`` float32 of ``store``: a Store, its path, or any
    :class:`~datamodels.modelset.ModelSet` (e.g. ``ModelSet.from_folder`` for models trained elsewhere).

    ``progress``: headings and bars on stderr ("attributing LABEL: model 5 of 32"); a string names
    the models in them (e.g. ``"A (high noise)"``), ``True`` uses the store's folder.
    ``params`` go to :class:`datamodels.attribution.trak.TrakSettings` (``proj_dim``, ``projector``,
    ``lambda_reg``, ``model_output`` ...) or
    :class:`datamodels.attribution.regression.RegressionSettings` (``n_lambdas``,
    ``eps``, ``val_fraction`` ...). ``n_models``: use the first ``n_models`` usable models.
    """
    scores, _, _ = _run(_open(store), method, n_models, device, progress, params, None)
    return scores


def attribute_to_file(store, out: str | os.PathLike, method: str = "trak", *,
                      n_models: int | None = None, device="cpu", progress: bool | str = True,
                      compression: str | None = None, lds: float = float("nan"),
                      **params) -> Path:
    """Like :func:`attribute`, but streams the rows into the influence dataset ``out`` (HDF5)."""
    from datamodels.attribution.influence_io import InfluenceWriter

    store = _open(store)
    check_settings(method, params)  # before the output file is created
    meta = store.metadata["dataset"]
    data = store.load_dataset()
    recipe, path = getattr(store, "recipe", None), getattr(store, "path", None)
    writer = InfluenceWriter(
        out, meta["n_test"], meta["n_train"], method=method, train_labels=data.y_train.numpy(),
        test_labels=data.y_test.numpy(), dataset_name=meta["name"], dataset_identity=meta["identity"],
        recipe_yaml=recipe.to_yaml() if recipe is not None else "",
        store_path=str(Path(path).resolve()) if path is not None else "",
        compression=compression, lds=lds)
    with writer as w:
        _, used, n = _run(store, method, n_models, device, progress, params, w.write_rows)
        w.set_attr("method_params", used)
        w.set_attr("n_models", n)
    return Path(out)

