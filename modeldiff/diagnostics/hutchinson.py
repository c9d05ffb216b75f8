"""``‖H‖_F² = tr(H²)`` from Hessian-vector products: Hutchinson's estimator with Rademacher
probes, optionally deflated by a random sketch of ``H``'s top subspace (Hutch++, Meyer et al. 2021).

With an orthonormal ``Q[d, s]`` drawn independently of the probes::

    tr(H²) = ‖H Q‖_F²  +  E_z ‖H (I − QQᵀ) z‖²,     z ∈ {±1}^d

The first term is exact (``s`` HVPs); the second is averaged over ``r`` probes, and its standard
error ``std/√r`` is the estimator's error bar (exact zero when ``H`` has rank ≤ ``s``).
``Q = orth(H S)`` for a Gaussian ``S[d, s]`` captures the outlier eigenvalues that dominate
``tr(H²)`` for trained networks. ``sketch = 0`` gives plain Hutchinson. The Lanczos basis
(:mod:`modeldiff.diagnostics.lanczos`) is such a ``Q`` too, with ``‖HQ‖_F²`` known from its products.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from scipy import stats


def rademacher(n: int, dim: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """``[n, dim]`` independent ±1 entries."""
    return (torch.randint(0, 2, (n, dim), generator=generator) * 2 - 1).to(dtype)


def frobenius_squared(hvp_rows: Callable[[torch.Tensor], torch.Tensor], dim: int, *, probes: int = 16,
                      sketch: int = 0, basis: torch.Tensor | None = None, basis_h_norm2: float | None = None,
                      seed: int = 0, device="cpu", dtype=torch.float32, confidence: float = 0.95,
                      return_probes: bool = False) -> dict:
    """Estimate ``tr(H²)`` and ``‖H‖_F`` with a standard error.

    Args:
        hvp_rows: ``V[k, d] -> (H Vᵀ)ᵀ [k, d]`` (e.g. :meth:`TrainingLoss.hvp_blocks`).
        probes: Rademacher probes ``r`` on the deflated remainder (≥ 2 for an error bar).
        sketch: columns ``s`` of a Hutch++ sketch (0 = none); ``2s + r`` HVPs in all.
        basis, basis_h_norm2: instead of a sketch, an orthonormal ``Q = basis.T`` (rows ``[k, d]``,
            e.g. the Lanczos basis, drawn independently of the probes) and ``‖HQ‖_F²``: ``r`` HVPs.
        seed: seeds the sketch and the probes.
        confidence: level of the Student-t interval ``[ci_low, ci_high]`` on ``tr(H²)``.
        return_probes: also return ``probe_vectors`` (the deflated probes ``P z [r, d]``) and
            ``probe_products`` (``H P z [r, d]``), reused for ``tr(ΣH)`` by
            :func:`modeldiff.diagnostics.noise.noise_diagnostics` (``probe_pairs``).
    Returns:
        dict with ``trace_h2``, ``trace_h2_se``, ``trace_h2_ci`` [low, high], ``hessian_fro``,
        ``hessian_fro_se`` (delta method: se / (2‖H‖_F)), ``probes``, ``sketch``, ``hvps``,
        ``exact_part`` (‖HQ‖_F²) and ``probe_values`` (the r values ‖H(I − QQᵀ)z‖²).
    """
    gen = torch.Generator().manual_seed(int(seed))
    exact, hvps = 0.0, 0
    q = None
    if basis is not None:
        q = basis.to(device, dtype).T  # [d, k]
        exact = float(basis_h_norm2)
        sketch = q.shape[1]
    elif sketch > 0:
        s = torch.randn(sketch, dim, generator=gen, dtype=torch.float64).to(device, dtype)
        y = hvp_rows(s)  # [s, d]
        q = torch.linalg.qr(y.T.double())[0].to(dtype)  # [d, s] orthonormal columns
        hq = hvp_rows(q.T.contiguous())
        exact = float((hq.double() ** 2).sum())
        hvps += 2 * sketch
    values = torch.zeros(0, dtype=torch.float64)
    z = hz = torch.zeros(0, dim, device=device, dtype=dtype)
    if probes > 0:
        z = rademacher(probes, dim, gen, torch.float64).to(device, dtype)
        if q is not None:
            z = z - (z @ q) @ q.T
        hz = hvp_rows(z)
        values = (hz.double() ** 2).sum(1).cpu()
        hvps += probes
    tail = float(values.mean()) if probes > 0 else 0.0
    se = float(values.std(unbiased=True) / math.sqrt(probes)) if probes >= 2 else math.nan
    est = exact + tail
    fro = math.sqrt(max(est, 0.0))
    half = float(stats.t.ppf(0.5 + confidence / 2, probes - 1)) * se if probes >= 2 else math.nan
    out = {"trace_h2": est, "trace_h2_se": se, "trace_h2_ci": [est - half, est + half],
            "hessian_fro": fro, "hessian_fro_se": se / (2 * fro) if fro > 0 else math.nan,
            "probes": int(probes), "sketch": int(sketch), "hvps": hvps, "exact_part": exact,
            "probe_values": values.tolist()}
    if return_probes:
        out.update(probe_vectors=z, probe_products=hz)
    return out
