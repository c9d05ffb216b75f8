"""Attribution: ``scores[n_test, n_train]`` from a store's models (TRAK or datamodels), LDS, HDF5.

Contract: :func:`attribute` / :func:`attribute_to_file` (:mod:`datamodels.attribution.api`);
estimators in :mod:`~datamodels.attribution.trak` and :mod:`~datamodels.attribution.regression`;
influence datasets in :mod:`~datamodels.attribution.influence_io`.
"""
__all__ = ["METHODS", "attribute", "attribute_to_file", "select_models"]


def __getattr__(name: str):
    """Public names imported lazily (PEP 562): ``datamodels.attribution.names`` stays torch-free."""
    if name in __all__:
        from datamodels.attribution import api

        return getattr(api, name)
    raise AttributeError(f"module 'datamodels.attribution' has no attribute {name!r}")
