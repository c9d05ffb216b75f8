"""Sharpness and SGD-noise diagnostics of trained models (``modeldiff diagnose``).

Per model, on its own training subset: the top Hessian eigenvalue (Lanczos on exact
Hessian-vector products), ‖H‖_F (Lanczos-deflated Hutchinson with a standard error), the
per-example gradient-noise covariance Σ's alignment with H, and η/B-dependent stability ratios.
Nothing of size d × d is formed. Modules: ``hvp`` (the loss, HVPs, per-example gradients),
``lanczos``, ``hutchinson``, ``noise``, ``model`` (one model), ``store`` (a store's models),
``summary`` (mean and CI over models), ``report`` (table, plot, HTML), ``study`` (the study stage:
``diagnostics: {models: N}`` in a study YAML).
"""
from modeldiff.diagnostics.hvp import TrainingLoss
from modeldiff.diagnostics.model import DiagnosticSettings, diagnose_model, optimizer_terms
from modeldiff.diagnostics.store import diagnose_store

__all__ = ["TrainingLoss", "DiagnosticSettings", "diagnose_model", "optimizer_terms", "diagnose_store"]
