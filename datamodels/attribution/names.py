"""Names of the attribution methods and TRAK's random projections (torch-free).

One registry each, mapping a name to its implementation by import target (imported when first
used, so ``modeldiff --help`` costs no torch): the CLI's choices, study-config validation and the
dispatch (:func:`datamodels.attribution.methods.resolve_method`,
:func:`datamodels.attribution.projectors.make_projector`) all read these. Anything else is named by
an import target ``"my_pkg.mod:Thing"``, or registered from outside::

    from datamodels.attribution.names import METHODS, PROJECTORS
    METHODS.register("influence", MyMethod)          # an AttributionMethod (methods.py)
    PROJECTORS.register("gaussian", GaussianProjector)  # a Projector class (projectors.py)
"""
from __future__ import annotations

from datamodels.registry import Registry

METHODS = Registry("attribution method")
METHODS.lazy("trak", "datamodels.attribution.methods:TrakMethod",
             help="TRAK: linearised model, random projection of per-example gradients (needs saved weights)")
METHODS.lazy("datamodels", "datamodels.attribution.methods:DatamodelsMethod",
             help="datamodels: lasso regression of margins on subset masks (needs many models)")

PROJECTORS = Registry("projector")
PROJECTORS.lazy("auto", "datamodels.attribution.projectors:auto_projector",
                help="fast_jl on CUDA when it imports, else sketch")
PROJECTORS.lazy("sketch", "datamodels.attribution.projectors:SketchProjector",
                help="CountSketch fold then a dense Rademacher matrix (portable, fast)")
PROJECTORS.lazy("rademacher", "datamodels.attribution.projectors:RademacherProjector",
                help="dense Rademacher matrix (portable, exact JL, slow for many parameters)")
PROJECTORS.lazy("fast_jl", "datamodels.attribution.projectors:FastJLProjector",
                help="traker's CUDA kernel (CUDA + fast_jl only)")
IDENTITY = "identity"  # no projection (exact TRAK): chosen by proj_dim None / 0, not by name
