"""Attribution: ``scores[n_test, n_train]`` from a store's models (TRAK or datamodels), LDS, HDF5.

Contract: :func:`attribute` / :func:`attribute_to_file` (:mod:`datamodels.attribution.api`);
estimators in :mod:`~datamodels.attribution.trak` and :mod:`~datamodels.attribution.regression`;
influence datasets in :mod:`~datamodels.attribution.influence_io`.
"""
from datamodels.attribution.api import METHODS, attribute, attribute_to_file, select_models

__all__ = ["METHODS", "attribute", "attribute_to_file", "select_models"]
