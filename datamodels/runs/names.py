"""Names of the launchers that run training chunks (torch-free: ``modeldiff train|plan --launcher``
choices and :func:`datamodels.runs.launchers.fill_store` read this one registry; each entry is
the launcher function, imported on first use, with the signature of
:func:`datamodels.runs.launchers.run_local`)."""
from __future__ import annotations

from datamodels.registry import Registry

MODELS, SUBSET_FRACTION, ENSEMBLE_SIZE = 64, 0.5, 16  # a store's defaults (modeldiff train, fill_store, plan)

LAUNCHERS = Registry("launcher")
LAUNCHERS.lazy("local", "datamodels.runs.launchers:run_local",
               help="processes on this machine (one per device or group of cores)")
LAUNCHERS.lazy("ray", "datamodels.runs.launchers:run_ray",
               help="Ray tasks (a local Ray instance, or a cluster with --address)")
