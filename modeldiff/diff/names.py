"""Names of the residual-PCA solvers (torch-free: the CLI's ``--solver`` choices and the check in
:mod:`modeldiff.diff.validation` read this one registry)."""
from __future__ import annotations

from datamodels.registry import Registry

SOLVERS = Registry("solver")
SOLVERS.register("auto", "randomized when min(n, m) > 500 and k < 0.8 min(n, m), else full")
SOLVERS.register("full", "exact eigendecomposition")
SOLVERS.register("randomized", "block Krylov iteration (Musco & Musco 2015)")
