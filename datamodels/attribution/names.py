"""Names of the attribution estimators and TRAK's random projections (torch-free).

One list each: the CLI's ``choices``, study-config validation and the implementations
(:mod:`~datamodels.attribution.api`, :mod:`~datamodels.attribution.projectors`) all read these
registries, and importing this module costs no torch (``modeldiff --help`` stays fast).
"""
from __future__ import annotations

from datamodels.registry import Registry

METHODS = Registry("attribution method")
METHODS.register("trak", "TRAK: linearised model, random projection of per-example gradients (needs saved weights)")
METHODS.register("datamodels", "datamodels: lasso regression of margins on subset masks (needs many models)")

PROJECTORS = Registry("projector")
PROJECTORS.register("auto", "fast_jl on CUDA when it imports, else sketch")
PROJECTORS.register("sketch", "CountSketch fold then a dense Rademacher matrix (portable, fast)")
PROJECTORS.register("rademacher", "dense Rademacher matrix (portable, exact JL, slow for many parameters)")
PROJECTORS.register("fast_jl", "traker's CUDA kernel (CUDA + fast_jl only)")
IDENTITY = "identity"  # no projection (exact TRAK): chosen by proj_dim None / 0, not by name
