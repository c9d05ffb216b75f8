"""Counterfactuals: input transformations and their effects on two algorithms' models, with CIs.

Contract: transforms (:mod:`modeldiff.counterfactual.transforms`) map ``x[n, ...] -> x[n, ...]``;
:func:`counterfactual_effects` measures Pr(class | do(T)) − Pr(class | control) per model.
"""
from modeldiff.counterfactual.effects import counterfactual_effects, patch_size_sweep, store_predictor

__all__ = ["counterfactual_effects", "patch_size_sweep", "store_predictor"]
