"""Comparison: residual PCA of two attribution matrices (ModelDiff) and its subpopulations.

Contract: :class:`ModelDiff` (scikit-learn estimator API, :mod:`modeldiff.diff.residual_pca`),
:func:`subpopulations`, :func:`load_scores` (``.npy`` or HDF5 influence datasets).
"""
from modeldiff.diff.io_scores import load_scores
from modeldiff.diff.residual_pca import ModelDiff
from modeldiff.diff.subpopulations import Subpopulation, subpopulations

__all__ = ["ModelDiff", "Subpopulation", "subpopulations", "load_scores"]
