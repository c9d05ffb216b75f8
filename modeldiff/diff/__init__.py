"""Comparison: residual PCA of two attribution matrices (ModelDiff) and its subpopulations.

Contract: :class:`ModelDiff` (scikit-learn estimator API, :mod:`modeldiff.diff.residual_pca`),
:class:`CrossFitModelDiff` (components ranked by cross-fitted signal variance, :mod:`modeldiff.diff.crossfit`),
:func:`subpopulations`, :func:`load_scores` (``.npy`` or HDF5 influence datasets).
"""
_EXPORTS = {"ModelDiff": "residual_pca", "CrossFitModelDiff": "crossfit",
            "Subpopulation": "subpopulations", "subpopulations": "subpopulations",
            "load_scores": "io_scores"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Public names imported lazily (PEP 562): ``modeldiff.diff.names`` stays torch-free."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"modeldiff.diff.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'modeldiff.diff' has no attribute {name!r}")
