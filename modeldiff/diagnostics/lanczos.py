"""Lanczos with full reorthogonalisation on Hessian-vector products: the top eigenvalue
``λ_max`` (and the bottom Ritz value), plus the Krylov basis ``V[k, d]`` that the trace
estimators use to deflate ``H``'s outlier eigenvalues. ``H`` is never formed; memory is ``k × d``.

Facts used downstream (exact for the computed basis, whatever its convergence):
``H V = V T + β_k v_{k+1} e_kᵀ`` with ``T = VᵀHV`` (``k × k``) and ``v_{k+1} ⟂ V``;
``‖HV‖_F² = Σ_j ‖H v_j‖²`` is recorded from the products themselves.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, steps: int = 20, tol: float = 1e-4,
            min_steps: int = 1, seed: int = 0, device="cpu", dtype: torch.dtype = torch.float32) -> dict:
    """Run up to ``steps`` Lanczos iterations from a seeded Gaussian start vector.

    Stops early when the top Ritz pair's residual ``‖Hy − θy‖ = β_k |s_k|`` falls below
    ``tol·|θ|`` (after ``min_steps``), or when the Krylov space is invariant (then exact).

    Args:
        matvec: ``v[d] -> H v[d]`` (torch, ``dtype`` on ``device``).
        dim: ``d``.
    Returns:
        dict: ``lambda_max``, ``lambda_min`` (extreme Ritz values), ``residual`` (bound on
        ``|λ_max − θ_max|``), ``converged``, ``steps`` (= HVPs used), ``basis`` ``V[k, d]``
        (orthonormal rows), ``t`` ``[k, k]`` (``VᵀHV``, float64), ``h_basis_norm2`` (``‖HV‖_F²``),
        ``beta`` and ``next`` (``β_k`` and ``v_{k+1}``: ``HV = V T + β_k v_{k+1} e_kᵀ``),
        ``eigenvector`` ``[d]`` (top Ritz vector). ``lambda_min`` is the smallest Ritz value, an
        upper bound on the smallest eigenvalue (loose unless the run is long).
    """
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(dim, generator=gen, dtype=torch.float64)
    v = (v / v.norm()).to(device, dtype)
    cols, betas, hnorm2 = [], [], 0.0
    beta, theta, resid, s_top = 0.0, math.nan, math.inf, None
    steps = min(int(steps), dim)
    store = torch.empty(max(steps, 1), dim, device=v.device, dtype=v.dtype)  # the basis rows, filled in turn
    converged = False
    for j in range(steps):
        store[j] = v
        vm = store[:j + 1]  # [j+1, d]
        w = matvec(v)
        hnorm2 += float((w.double() ** 2).sum())
        c = vm @ w
        w = w - vm.T @ c
        c2 = vm @ w  # second Gram-Schmidt pass: keeps V orthonormal in float32
        w = w - vm.T @ c2
        cols.append((c + c2).double().cpu())
        beta = float(w.double().norm())
        betas.append(beta)
        k = j + 1
        t = torch.zeros(k, k, dtype=torch.float64)
        for i, col in enumerate(cols):  # H v_i = Σ_{l<=i} c_li v_l + β_i v_{i+1}
            t[:i + 1, i] = col
            if i + 1 < k:
                t[i + 1, i] = betas[i]
        t = (t + t.T) / 2  # VᵀHV, symmetrised against rounding
        evals, evecs = torch.linalg.eigh(t)
        theta, s_top = float(evals[-1]), evecs[:, -1]
        resid = beta * abs(float(s_top[-1]))
        scale = max(abs(float(evals[0])), abs(theta), 1e-300)
        if beta <= 1e-10 * scale:  # invariant subspace: Ritz values are eigenvalues
            converged, resid = True, 0.0
            break
        if k >= min_steps and resid <= tol * scale:
            converged = True
            break
        v = w / beta
    vm = store[:len(cols)].clone()
    nxt = w / beta if beta > 0 else torch.zeros_like(w)
    return {"lambda_max": theta, "lambda_min": float(evals[0]), "residual": resid, "converged": converged,
            "steps": len(cols), "basis": vm, "t": t, "h_basis_norm2": hnorm2, "beta": beta, "next": nxt,
            "eigenvector": (s_top.to(vm.dtype).to(vm.device) @ vm)}


def top_eigenvalue(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, **kwargs) -> float:
    """``λ_max`` of the symmetric operator ``matvec`` (see :func:`lanczos` for the options)."""
    return lanczos(matvec, dim, **kwargs)["lambda_max"]
