"""Gradient-noise covariance ``Σ`` at the final point and its alignment with the Hessian.

``Σ = (1/n) Σ_i g̃_i g̃_iᵀ`` with ``g̃_i = ∇ℓ_i − ∇L`` the centred per-example loss gradients on the
model's training subset (the covariance of one example's gradient; a mini-batch of ``B`` drawn
with replacement has noise covariance ``Σ / B``). Neither ``Σ`` nor ``H`` (``d × d``) is formed.

``tr(ΣH) = (1/n) Σ_i g̃_iᵀ H g̃_i`` (= the mean of ``g_iᵀ H g_i`` minus ``ḡᵀ H ḡ``). Given a Lanczos
basis ``V[k, d]`` with ``HV = V T + β v⁺ e_kᵀ`` (:func:`modeldiff.diagnostics.lanczos.lanczos`),
split ``g̃_i = Vᵀa_i + u_i`` (``a_i = V g̃_i``, ``u_i ⟂ V``)::

    g̃_iᵀ H g̃_i = a_iᵀ T a_i + 2 β a_ik (v⁺ᵀ g̃_i) + u_iᵀ H u_i

The first two terms need only ``V g̃_i`` and ``v⁺ᵀ g̃_i`` and are summed exactly over all ``n``
examples (one streamed per-example-gradient pass). The last, the part of the noise outside the
Krylov space, costs one HVP per example: exact with ``trace_examples = n`` (all), otherwise an
importance-sampled mean over ``m_h`` draws with replacement, ``p_i ∝ ½‖u_i‖²/Σ‖u‖² + ½/n``
(unbiased; standard error ``std/√m_h``). Without a basis ``u_i = g̃_i``.

Cheaper default (``probe_pairs``): the out-of-basis part is ``(1/n) Σ_i u_iᵀ H u_i = tr(PΣP·H)``
with ``P = I − VᵀV``, and Hutchinson's deflated probes ``p_j = P z_j`` with their products ``H p_j``
(:func:`modeldiff.diagnostics.hutchinson.frobenius_squared`, ``return_probes=True``) already give
``E_z[(PΣP z)ᵀ (H P z)] = tr(PΣPH)``. ``PΣP z = (1/n) Σ_i u_i (u_iᵀ z)`` is formed from the same
streamed per-example gradients, so this costs **no extra HVP**: the estimate is the mean over the
``r`` probes of ``(1/n) Σ_i (u_iᵀ p_j)(u_iᵀ H p_j)`` with standard error ``std/√r`` (unbiased because
the probes are drawn independently of ``V`` and of the data).

``‖Σ‖_F² = ‖G̃ G̃ᵀ‖_F² / n²`` from the Gram matrix of the centred gradients ``G̃[m, d]``: exact when
``m = n``; for a uniform sample of ``m < n`` examples the unbiased
``(1/n)·mean_i (G̃G̃ᵀ)_ii² + ((n−1)/n)·mean_{i≠j} (G̃G̃ᵀ)_ij²``. Only the sample's gradients are held,
so ``m`` is capped by ``max_bytes``.
"""
from __future__ import annotations

import math

import torch

from modeldiff.diagnostics.hvp import TrainingLoss

NOISE_MAX_BYTES = 512 << 20  # bytes of per-example gradients held for the Gram matrix, at most
MAX_GRAM_EXAMPLES = 4096  # examples in the Gram matrix, at most


def sample_indices(n: int, m: int, seed: int) -> torch.Tensor:
    """All ``n`` indices in order when ``m >= n``, else ``m`` drawn uniformly without replacement."""
    if m >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:m]


def gram_square_sums(gc: torch.Tensor, rows: int = 192) -> tuple[float, float]:
    """``(Σ_ij (g_iᵀg_j)², Σ_i (g_iᵀg_i)²)`` of ``gc[m, d]``, never holding more than a
    ``rows × rows`` block of the Gram matrix and computing each off-diagonal block once (the Gram
    matrix is symmetric: about half the multiply-adds of ``gc @ gc.T`` for large ``m``)."""
    m = gc.shape[0]
    nb = max(1, math.ceil(m / rows))
    edges = [round(i * m / nb) for i in range(nb + 1)]
    total, diag = 0.0, 0.0
    for a in range(nb):
        ga = gc[edges[a]:edges[a + 1]]
        for c in range(a, nb):
            sq = (ga @ gc[edges[c]:edges[c + 1]].T).double() ** 2
            total += float(sq.sum()) * (1 if a == c else 2)
            if a == c:
                diag += float(torch.diagonal(sq).sum())
    return total, diag


def sigma_frobenius(gc: torch.Tensor, n: int) -> float:
    """``‖Σ‖_F`` from centred gradients ``gc[m, d]`` of ``m`` of the ``n`` examples (exact when m = n)."""
    m = gc.shape[0]
    total, diag = gram_square_sums(gc)
    if m == n:
        fro2 = total / n ** 2
    else:
        off = (total - diag) / (m * (m - 1))
        fro2 = diag / m / n + (n - 1) / n * off
    return math.sqrt(max(fro2, 0.0))


def gram_examples(n: int, d: int, itemsize: int, examples: int | None = None, max_bytes: int = NOISE_MAX_BYTES) -> int:
    """Examples ``m`` of ``n`` whose ``d``-dimensional gradients form the Gram matrix: at most ``examples``,
    ``MAX_GRAM_EXAMPLES``, and as many as fit ``max_bytes`` (at least 2)."""
    return min(n, examples or n, max(2, min(MAX_GRAM_EXAMPLES, max_bytes // max(1, d * itemsize))))


def noise_diagnostics(loss: TrainingLoss, grad_mean: torch.Tensor, *, examples: int | None = None,
                      trace_examples: int | None = None, lanczos_result: dict | None = None, seed: int = 0,
                      max_bytes: int = NOISE_MAX_BYTES, block: int = 8,
                      probe_pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """``tr(ΣH)`` (with standard error), ``‖Σ‖_F`` and ``tr(Σ)`` of the per-example gradient noise.

    Args:
        loss: the training loss (its ``n`` examples define ``Σ``).
        grad_mean: ``ḡ = ∇L[d]`` (:meth:`TrainingLoss.grad`).
        examples: examples ``m`` whose gradients form the Gram matrix (default: all ``n``),
            capped so that ``G̃[m, d]`` fits ``max_bytes`` and ``m <= 4096``.
        trace_examples: importance-sampled draws ``m_h`` for the out-of-basis part of ``tr(ΣH)``
            (one HVP each); ``None`` or ``>= n``: every example once (exact).
        lanczos_result: output of :func:`~modeldiff.diagnostics.lanczos.lanczos` on the same loss
            (``basis``, ``t``, ``beta``, ``next``), or None.
        seed: seeds the samples.
        block: HVPs pushed through the data at once.
        probe_pairs: ``(P z [r, d], H P z [r, d])``, Hutchinson's deflated probes (``P`` projecting
            off ``lanczos_result``'s basis) and their HVPs: the out-of-basis part is then estimated
            from them (no extra HVP; ``trace_examples`` is ignored; needs ``r >= 2`` for an se).
    Returns:
        dict: ``trace_sigma_h``, ``trace_sigma_h_se`` (0 when exact), ``sigma_fro``, ``trace_sigma``,
        ``noise_examples`` (m), ``trace_examples`` (m_h, or n when exact), ``exact`` (both exact).
    """
    n, d = loss.n, loss.dim
    dev, dt = loss.device, loss.dtype
    gbar = grad_mean.to(dev, dt)
    lz = lanczos_result
    if lz is not None:
        vb = torch.cat([lz["basis"], lz["next"].reshape(1, -1)]).to(dev, dt)  # [k + 1, d]
        k = lz["basis"].shape[0]
        tt, beta = lz["t"].double().cpu(), float(lz["beta"])
    else:
        vb, k = None, 0

    itemsize = torch.empty(0, dtype=dt).element_size()
    m = gram_examples(n, d, itemsize, examples, max_bytes)

    # streamed pass over all n examples: tr(Σ), a_i = V g̃_i, b_i = v⁺ᵀ g̃_i, ‖u_i‖² (rows kept when m = n)
    proj, sq_norm, kept = [], [], []
    rows = [vb] if vb is not None else []  # every direction the gradients are projected on, one pass
    if probe_pairs is not None:
        pz, hpz = (t.to(dev, dt) for t in probe_pairs)  # [r, d] each
        r = pz.shape[0]
        vhp = vb[:k] @ hpz.T if vb is not None else None  # [k, r]: V H p_j
        probe_sums = torch.zeros(r, dtype=torch.float64)  # Σ_i (u_iᵀ p_j)(u_iᵀ H p_j)
        rows += [pz, hpz]
    w = torch.cat(rows).T if rows else None  # [d, (k + 1) + 2r]
    kb = k + 1 if vb is not None else 0
    for s in range(0, n, loss.batch_size):
        gc = loss.per_example_grads(torch.arange(s, min(n, s + loss.batch_size))).sub_(gbar)
        sq_norm.append(torch.linalg.vector_norm(gc, dim=1).double().cpu() ** 2)
        gw = gc @ w if w is not None else None
        if vb is not None:
            proj.append(gw[:, :kb].double().cpu())
        if probe_pairs is not None:  # u_i = g̃_i − Vᵀa_i; uᵀp = g̃ᵀp since p ⟂ V
            gp, gh = gw[:, kb:kb + r], gw[:, kb + r:]
            uh = gh - gw[:, :k] @ vhp if vb is not None else gh
            probe_sums += (gp.double() * uh.double()).sum(0).cpu()
        if m == n:
            kept.append(gc)
        del gc
    sq_norm = torch.cat(sq_norm)
    tr_sigma = float(sq_norm.mean())
    base, u_norm2 = 0.0, sq_norm
    if vb is not None:
        ab = torch.cat(proj)  # [n, k + 1]
        a, b = ab[:, :k], ab[:, k]
        base = float(((a @ tt) * a).sum() + 2 * beta * (a[:, k - 1] * b).sum()) / n
        u_norm2 = (sq_norm - (a ** 2).sum(1)).clamp_min(0)

    # the out-of-basis part: u_iᵀ H u_i, from the probes, exactly over all examples or importance-sampled
    exact = probe_pairs is None and (trace_examples is None or trace_examples >= n)
    if probe_pairs is not None:
        idx = torch.zeros(0, dtype=torch.long)
    elif exact:
        idx, weights = torch.arange(n), torch.ones(n, dtype=torch.float64)
    else:
        total = float(u_norm2.sum())
        p = 0.5 / n + (0.5 * u_norm2 / total if total > 0 else 0.5 / n)
        p = p / p.sum()
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.multinomial(p, int(trace_examples), replacement=True, generator=gen)
        weights = 1.0 / (n * p[idx])  # E_p[w_i q_i] = (1/n) Σ q_i, here times n → mean below
    q = torch.empty(len(idx), dtype=torch.float64)
    for s in range(0, len(idx), loss.batch_size):
        sel = idx[s:s + loss.batch_size]
        u = loss.per_example_grads(sel) - gbar
        if vb is not None:
            u = u - a[sel].to(dev, dt) @ vb[:k]
        hu = loss.hvp_blocks(u, block=block)
        q[s:s + len(sel)] = (u.double() * hu.double()).sum(1).cpu()
        del u, hu
    terms = probe_sums / n if probe_pairs is not None else q * weights
    rest = float(terms.mean()) if len(terms) else 0.0
    se = 0.0 if exact else (float(terms.std(unbiased=True)) / math.sqrt(len(terms)) if len(terms) >= 2 else math.nan)

    # ‖Σ‖_F from the Gram matrix of (a sample of) centred gradients
    if m == n:
        gc = kept[0] if len(kept) == 1 else torch.cat(kept)
    else:
        gc = loss.per_example_grads(sample_indices(n, m, seed + 1)).sub_(gbar)
    sigma_fro = sigma_frobenius(gc, n)
    return {"trace_sigma_h": base + rest, "trace_sigma_h_se": se, "trace_sigma_h_inside": base,
            "sigma_fro": sigma_fro, "trace_sigma": tr_sigma, "noise_examples": int(m),
            "trace_examples": int(n if exact else len(idx)), "exact": bool(exact and m == n),
            "trace_sigma_h_method": "probes" if probe_pairs is not None else ("exact" if exact else "examples")}
