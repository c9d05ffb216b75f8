"""Names of the residual-PCA solvers (torch-free: the CLI's ``--solver`` choices, the check in
:mod:`modeldiff.diff.validation` and the dispatch in :class:`modeldiff.diff.residual_pca.ModelDiff`
read this one registry). A solver is a function with the signature of
:func:`modeldiff.diff.residual_pca.solve_full`; another one can be registered here or named by an
import target ``"my_pkg.mod:solve"``."""
from __future__ import annotations

from datamodels.registry import Registry

SOLVERS = Registry("solver")
SOLVERS.lazy("auto", "modeldiff.diff.residual_pca:solve_auto",
             help="randomized when min(n, m) > 500 and k < 0.8 min(n, m), else full")
SOLVERS.lazy("full", "modeldiff.diff.residual_pca:solve_full", help="exact eigendecomposition")
SOLVERS.lazy("randomized", "modeldiff.diff.residual_pca:solve_randomized",
             help="block Krylov iteration (Musco & Musco 2015)")
