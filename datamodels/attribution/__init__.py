"""Attribution: ``scores[n_test, n_train]`` from a model set's models (TRAK, datamodels, or a method of
yours), LDS, HDF5.

Contract: :func:`attribute` / :func:`attribute_to_file` (:mod:`datamodels.attribution.api`); the
method protocol :class:`AttributionMethod` and its built-ins in :mod:`~datamodels.attribution.methods`
(estimators in :mod:`~datamodels.attribution.trak` and :mod:`~datamodels.attribution.regression`);
names in :mod:`~datamodels.attribution.names`; influence datasets in
:mod:`~datamodels.attribution.influence_io`.
"""
_EXPORTS = {"METHODS": "names", "PROJECTORS": "names", "attribute": "api", "attribute_to_file": "api",
            "select_models": "api", "AttributionMethod": "methods", "resolve_method": "methods"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Public names imported lazily (PEP 562): ``datamodels.attribution.names`` stays torch-free."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"datamodels.attribution.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'datamodels.attribution' has no attribute {name!r}")
