"""Names of the launchers that run training chunks (torch-free: ``modeldiff train|plan --launcher``
choices and :func:`datamodels.runs.launchers.fill_store` read this one registry)."""
from __future__ import annotations

from datamodels.registry import Registry

MODELS, SUBSET_FRACTION, ENSEMBLE_SIZE = 64, 0.5, 16  # a store's defaults (modeldiff train, fill_store, plan)

LAUNCHERS = Registry("launcher")
LAUNCHERS.register("local", "processes on this machine (one per device or group of cores)")
LAUNCHERS.register("ray", "Ray tasks (a local Ray instance, or a cluster with --address)")
