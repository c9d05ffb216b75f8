"""The attribution-method protocol, and the two built-in methods (TRAK, datamodels) that implement it.

An attribution method turns the models of a :class:`~datamodels.modelset.ModelSet` into a matrix
``scores[n_test, n_train]`` (float32; rows follow the dataset's test split, columns its train split).
It is named in ``METHODS`` (:mod:`datamodels.attribution.names`) or by an import target
``"my_pkg.mod:MyMethod"`` (a class or an instance) wherever a method name is accepted:
``modeldiff attribute --method``, a study's ``attribution.method``, ``attribute(..., method=)``.

Implementations:

- :class:`TrakMethod` — TRAK (:mod:`datamodels.attribution.trak`): needs saved weights of a few models.
- :class:`DatamodelsMethod` — datamodels regression (:mod:`datamodels.attribution.regression`):
  reads masks and test margins of many models.

A user method subclasses :class:`AttributionMethod` and implements :meth:`~AttributionMethod.attribute`
(and, when it has settings, names their dataclass in ``settings``).
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from datamodels.base.errors import UserError, call_user
from datamodels.registry import record

Write = Callable[[int, np.ndarray], None]  # write(start_row, block[rows, n_train] float32)


class AttributionMethod(abc.ABC):
    """An estimator of ``scores[n_test, n_train]`` from some models of a ModelSet.

    Class attributes:
        name: recorded with the scores (``method`` of an influence dataset).
        needs_weights: True when it loads the models (``models.load_model``); only models with
            weights are then offered to it.
        min_models: fewest usable models it runs on.
        settings: dataclass of its keyword settings (checked by :meth:`check` before any work), or None.
    """

    name = "method"
    needs_weights = False
    min_models = 1
    settings: type | None = None

    def check(self, params: dict) -> None:
        """Refuse unknown or invalid settings with one line naming them and the allowed ones."""
        if self.settings is None:
            return
        allowed = [f.name for f in dataclasses.fields(self.settings)]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise UserError(f"unknown {self.name} setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                            f"allowed are {', '.join(allowed)}")
        try:
            self.settings(**params)
        except UserError:
            raise
        except (ValueError, TypeError) as err:  # the settings' own validation of values
            raise UserError(f"bad {self.name} setting: {err}") from None

    def study_params(self, spec) -> tuple[dict, int | None]:
        """``(params, n_models)`` from a study's ``attribution`` section (``spec``): the settings passed
        to :meth:`attribute` and how many models it uses (None: all usable ones)."""
        return dict(spec.params), spec.models

    @abc.abstractmethod
    def attribute(self, models, rows: np.ndarray, *, device, dtype, progress: str | None, params: dict,
                  write: Write | None) -> tuple[np.ndarray | None, dict]:
        """Attribute with the models ``rows`` of ``models`` (a ModelSet).

        Args:
            rows: model indices chosen for this method (usable; with weights when ``needs_weights``).
            device: a ``torch.device``; dtype: the models' floating dtype.
            progress: a label for progress output (None: quiet).
            params: the method's settings (already passed through :meth:`check`).
            write: when given, receives the scores in blocks of test rows instead of returning them.
        Returns:
            ``(scores[n_test, n_train] float32 or None when written, recorded settings dict)``.
        """


class TrakMethod(AttributionMethod):
    """TRAK from a few models' saved weights (settings: :class:`~datamodels.attribution.trak.TrakSettings`)."""

    name = "trak"
    needs_weights = True
    min_models = 1

    @property
    def settings(self):
        from datamodels.attribution.trak import TrakSettings

        return TrakSettings

    def study_params(self, spec) -> tuple[dict, int | None]:
        params = {"proj_dim": spec.proj_dim, "batch_size": spec.batch_size}
        if spec.projector != "auto":
            params["projector"] = spec.projector
        return {**params, **spec.params}, spec.models

    def attribute(self, models, rows, *, device, dtype, progress, params, write):
        from datamodels.attribution.trak import TRAK
        from datamodels.base.progress import announced

        data = models.load_dataset()
        est = TRAK(device=device, dtype=dtype, progress=progress is not None, **params)
        loaded = announced(rows, lambda i: models.load_model(i, device), progress, len(rows))
        scores = est.run(loaded, data.x_train, data.y_train, data.x_test, data.y_test, write, n_models=len(rows))
        return scores, {**est.params(), **est.projector_params_}


class DatamodelsMethod(AttributionMethod):
    """Datamodels regression of test margins on subset masks (settings:
    :class:`~datamodels.attribution.regression.RegressionSettings`)."""

    name = "datamodels"
    needs_weights = False
    min_models = 10

    @property
    def settings(self):
        from datamodels.attribution.regression import RegressionSettings

        return RegressionSettings

    def study_params(self, spec) -> tuple[dict, int | None]:
        return {"n_lambdas": spec.lambdas, **spec.params}, None

    def attribute(self, models, rows, *, device, dtype, progress, params, write):
        from datamodels.attribution.regression import DatamodelsRegression

        est = DatamodelsRegression(device=device, progress=progress and f"attributing {progress}: datamodels "
                                   f"regression on {len(rows)} models", **params)
        out = est.fit(np.asarray(models.masks)[rows], np.asarray(models.test_margins)[rows], write=write)
        return (None if write else out.coef_), est.params()


def resolve_method(spec: Any) -> AttributionMethod:
    """An :class:`AttributionMethod` from a registered name, an import target (class or instance), a
    class, or an instance; anything without ``attribute`` is refused in one line."""
    from datamodels.attribution.names import METHODS

    obj = METHODS.resolve(spec, key="attribution method")
    if isinstance(obj, type):
        obj = obj() if obj in (TrakMethod, DatamodelsMethod) else call_user(obj, what=f"attribution method {spec!r}")
    if not callable(getattr(obj, "attribute", None)):
        raise UserError(f"attribution method {spec!r} must be an AttributionMethod (datamodels.attribution.methods): "
                        f"an object with attribute(models, rows, *, device, dtype, progress, params, write); "
                        f"got {type(obj).__name__}")
    return obj


def run_method(method: AttributionMethod, models, rows, **kw) -> tuple[np.ndarray | None, dict]:
    """``method.attribute(models, rows, **kw)``; a method of the user's that fails is one line naming it
    (its traceback kept for ``--debug``)."""
    if isinstance(method, (TrakMethod, DatamodelsMethod)):
        return method.attribute(models, rows, **kw)
    return call_user(method.attribute, models, rows, **kw, what=f"attribution method {type(method).__name__}")


def method_name(spec: Any, method: AttributionMethod) -> str:
    """How the scores record the method: a registered name or target as given, else the object's record."""
    if isinstance(spec, str):
        return spec
    return getattr(method, "name", None) or record(type(method))
