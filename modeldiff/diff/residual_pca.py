"""The ModelDiff estimator: residual datamodels A−B, their PCA, and explained variances.

Method (Shah et al. 2022, section 3): L2-normalise every test row of both attribution
matrices, remove from A's row its projection on B's row (the residual datamodel), run a
centred PCA of the residuals. A component ``p`` is a direction in training-set space that
matters to A's models and not to B's when its explained variance under A,
``||Ã_c p||² / n`` (Ã row-normalised, then column-centred), exceeds that under B.
For B − A swap the arguments.

How it stays fast and lean (10k × 50k float32 inputs on a 2-core CPU):

* ONE pass over the rows of A and B, in cache-sized chunks (one Python thread per core,
  torch single-threaded inside), computes norms and cosines and writes the residual rows
  into ONE preallocated buffer ``R``; no normalised copy of A or B is ever made.
* ``randomized`` = block Krylov iteration (Musco & Musco 2015) on ``C = R_cᵀR_c`` with
  implicit centring (``R_c v = R v − 1 μᵀv``, the mean comes out of the first GEMM):
  each step is two large GEMMs over ``R`` (``Y = R_c K``, ``Zᵀ = Yᵀ R_c``), then
  Rayleigh–Ritz on the whole Krylov basis from tiny Grams; it stops once the top-k Ritz
  residuals ``||C v − θ v|| / θ`` are below ``tol`` (then ``sin∠(v, v_true) ≲ tol·θ/gap``).
* explained variances use ``ã = r + c·b̃`` (c = row cosine), so only B is read once more.
* only the big GEMMs use several torch threads; small dense algebra runs on one (threaded
  LAPACK on 100-wide matrices is slower, and on a busy machine up to 100x slower).
Peak extra memory ≈ bytes of one input (the buffer) + O((n_test + n_train)·k·passes).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from modeldiff.diff import validation
from modeldiff.diff.io_scores import rows_as_tensor
from modeldiff.diff.names import SOLVERS

_CHUNK_BYTES = 4 << 20  # bytes per row chunk of the residual pass: its a, b, tmp and r chunks stay in cache
_MAX_SVD_FULL = 1000    # `full`: float64 LAPACK SVD up to this min(n, m), a Gram eigh above it


class ModelDiff:
    """Find directions in training-set space that A's models use and B's do not.

    Parameters (keyword-only after ``n_components``, only stored by the constructor):
        n_components: k, the number of residual principal components.
        normalize: L2-normalise test rows before the residual (the paper's method).
        solver: ``"full"`` (exact), ``"randomized"`` (block Krylov) or ``"auto"``
            (randomized when ``min(n, m) > 500`` and ``k < 0.8·min(n, m)``).
        device: torch device for the work (None: the device of a tensor ``scores_a``, else CPU).
        random_state: seed of the random starting block.
        dtype: working precision (float32 by default; results keep it).
        n_oversamples: extra columns per Krylov block (block size = k + n_oversamples).
        max_passes: most passes over the residual buffer for ``randomized``.
        tol: relative Ritz-residual tolerance ending the Krylov iteration; if ``max_passes``
            comes first (e.g. trailing components are flat-spectrum noise) ``converged_`` is False.

    Test rows that are all zeros in A or in B are excluded with a warning (counting them):
    they take no part in the PCA or the variances, and get NaN in ``test_projections_``.
    Non-finite values, mismatched shapes and ``k >= n_test`` raise ``UserError``.

    Attributes after ``fit`` (numpy arrays on the CPU, in ``dtype``):
        components_ [k, n_train]: orthonormal directions; each one's largest |entry| is positive.
        explained_variance_a_, explained_variance_b_ [k]: ``||X_c p||² / n`` under A and B.
        explained_variance_ [k]: variance of the residuals along each component (/ n).
        singular_values_ [k]: of the centred residual matrix.
        test_projections_ [n_test, k]: centred residual rows projected on the components.
        residuals_mean_ [n_train]: column mean of the residuals.
        row_cosine_ [n_test]: cosine between A's and B's row (NaN where excluded).
        excluded_rows_ [e]: indices of the excluded test rows.
        solver_, n_passes_, ritz_residuals_ [k], converged_: what the solver did.
    """

    def __init__(self, n_components: int = 10, *, normalize: bool = True, solver: str = "auto",
                 device=None, random_state: int = 0, dtype: torch.dtype = torch.float32,
                 n_oversamples: int = 4, max_passes: int = 8, tol: float = 1e-2):
        self.n_components = n_components
        self.normalize = normalize
        self.solver = solver
        self.device = device
        self.random_state = random_state
        self.dtype = dtype
        self.n_oversamples = n_oversamples
        self.max_passes = max_passes
        self.tol = tol

    def fit(self, scores_a, scores_b) -> "ModelDiff":
        """Fit on ``scores_a``, ``scores_b``: ``[n_test, n_train]`` numpy arrays, memmaps or tensors."""
        threads = torch.get_num_threads()
        with _using(1):
            return self._fit(scores_a, scores_b, threads)

    def _fit(self, scores_a, scores_b, threads: int) -> "ModelDiff":
        validation.check_params(self.n_components, self.solver)
        (n, m), k = validation.check_pair(scores_a, scores_b), int(self.n_components)
        validation.check_distinct(scores_a, scores_b)
        validation.check_n_components(k, n, m)
        dev = torch.device(self.device if self.device is not None else
                           (scores_a.device if isinstance(scores_a, torch.Tensor) else "cpu"))
        solve = SOLVERS.resolve(self.solver, key="solver")
        st = _residual_pass(scores_a, scores_b, dev, self.dtype, self.normalize, threads)
        validation.warn_excluded(st["zero_a"], st["zero_b"])
        n_used = st["R"].shape[0]
        validation.check_n_components(k, n_used, m, n - n_used)
        s, comps, proj, passes, rel, st["mu"], solver = solve(st["R"], k, est=self, threads=threads, dev=dev,
                                                              n=n, m=m)
        del st["R"]  # frees the buffer before the variance pass
        comps = torch.nn.functional.normalize(comps.to(self.dtype), dim=1)
        top = comps.abs().argmax(dim=1)
        sign = torch.sign(comps[torch.arange(k, device=comps.device), top])
        comps, proj = comps * sign[:, None], proj * sign.to(proj.dtype)
        with _using(threads):
            var_a, var_b = _variances(scores_b, st, comps, proj, dev, self.dtype)
        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        to_np = lambda t: np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t).astype(np_dtype)
        self.components_ = to_np(comps)
        self.singular_values_, self.explained_variance_ = to_np(s), to_np(s.double() ** 2 / n_used)
        self.explained_variance_a_, self.explained_variance_b_ = to_np(var_a), to_np(var_b)
        self.test_projections_ = np.full((n, k), np.nan, dtype=np_dtype)
        self.test_projections_[st["valid"]] = to_np(proj)
        self.residuals_mean_, self.row_cosine_ = to_np(st["mu"]), to_np(st["cosine"])
        self.excluded_rows_ = np.flatnonzero(~st["valid"])
        self.solver_, self.n_passes_, self.ritz_residuals_ = solver, passes, rel.cpu().numpy()
        self.converged_ = bool((self.ritz_residuals_ <= self.tol).all())
        self.n_features_in_, self.n_test_ = m, n
        return self


def _residual_pass(a, b, dev, dtype, normalize: bool, threads: int) -> dict:
    """Single pass over A and B in chunks: norms, cosines, residual rows into one buffer.

    On the CPU the chunks are shared by ``threads`` Python threads, torch single-threaded in
    each: these memory-bound element-wise ops then need no OpenMP barrier per op, which on a
    busy 2-core machine cost more than the work itself.
    """
    n, m = a.shape
    R = torch.empty((n, m), dtype=dtype, device=dev)
    stats = torch.empty((3, n), dtype=torch.float64)  # |a|, |b|, a·b
    step, local = max(1, _CHUNK_BYTES // (m * R.element_size())), threading.local()

    def work(i: int) -> None:
        j = min(i + step, n)
        ai, bi = rows_as_tensor(a, i, j, dev, dtype), rows_as_tensor(b, i, j, dev, dtype)
        na, nb = torch.linalg.vector_norm(ai, dim=1), torch.linalg.vector_norm(bi, dim=1)
        for name, x, norms in (("scores_a", a, na), ("scores_b", b, nb)):
            bad = ~torch.isfinite(norms)
            if bool(bad.any()):
                validation.raise_nonfinite(name, x, i + int(bad.nonzero()[0, 0]))
        if getattr(local, "tmp", None) is None:
            local.tmp = torch.empty((step, m), dtype=dtype, device=dev)  # reused: no allocation per chunk
        dot = torch.mul(ai, bi, out=local.tmp[:j - i]).sum(dim=1)
        keep = (na > 0) & (nb > 0)
        cos = torch.where(keep, dot / (na * nb), 0.0)
        if normalize:  # r = a/|a| − cos · b/|b|
            alpha, beta = torch.where(keep, 1.0 / na, 0.0), torch.where(keep, cos / nb, 0.0)
        else:          # r = a − (a·b / |b|²) b
            alpha, beta = keep.to(dtype), torch.where(keep, dot / nb ** 2, 0.0)
        ri = R[i:j]
        torch.mul(ai, alpha[:, None], out=ri)
        ri.addcmul_(bi, beta[:, None], value=-1.0)
        stats[:, i:j] = torch.stack([na, nb, dot]).cpu().double()

    with ThreadPoolExecutor(threads if dev.type == "cpu" else 1) as pool:  # torch is on 1 thread here
        list(pool.map(work, range(0, n, step)))
    na, nb, dot = stats.numpy()
    zero_a, zero_b = na == 0, nb == 0
    valid = ~(zero_a | zero_b)
    idx = np.flatnonzero(valid)
    for d0 in range(0, idx.size, step):  # compact kept rows to the top, in place (rare path)
        src = idx[d0:d0 + step]
        if src[0] != d0 or src[-1] != d0 + src.size - 1:
            R[d0:d0 + src.size] = R[torch.from_numpy(src).to(dev)]
    na, nb, dot = na[valid], nb[valid], dot[valid]
    cosine = np.full(n, np.nan)
    cosine[valid] = dot / (na * nb)
    coef = cosine[valid] if normalize else dot / nb ** 2
    bscale = 1.0 / nb if normalize else np.ones_like(nb)
    return dict(R=R[:idx.size], zero_a=zero_a, zero_b=zero_b, valid=valid, cosine=cosine,
                coef=torch.from_numpy(coef).to(dev), bscale=torch.from_numpy(bscale).to(dev))


def _gram_pass(R: torch.Tensor, K: torch.Tensor, mu: torch.Tensor | None, threads: int):
    """Two GEMMs over the buffer: ``Y = R_c K``, ``Zᵀ = (R_cᵀR_c K)ᵀ``; centring implicit
    (``R_c K = R K − 1 μᵀK``); ``mu=None``: the mean comes from a column of ones in ``Y``."""
    n, w = R.shape[0], K.shape[1]
    y = torch.empty((n, w + (mu is None)), dtype=R.dtype, device=R.device)
    y[:, w:] = 1.0
    with _using(threads):  # big GEMMs beat cache-blocked small ones here
        torch.matmul(R, K, out=y[:, :w])
        zt = y.T @ R       # [w (+1), m]
    if mu is None:
        mu = zt[w] / n
        y, zt = y[:, :w], zt[:w]
    mk = mu @ K
    return y - mk, zt - n * torch.outer(mk, mu), mu


def _orthonormalize(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of the columns of a tall ``x`` (CholeskyQR2 in float64; QR if singular)."""
    xd = x.double()
    for _ in range(2):
        chol, info = torch.linalg.cholesky_ex(xd.T @ xd)
        if int(info) != 0:
            return torch.linalg.qr(xd)[0].to(x.dtype)
        xd = torch.linalg.solve_triangular(chol, xd.T, upper=False).T
    return xd.to(x.dtype)


def _block_krylov(R: torch.Tensor, k0: torch.Tensor, k: int, max_passes: int, tol: float, threads: int):
    """Block Krylov iteration on ``C = R_cᵀR_c`` with Rayleigh–Ritz on the whole basis.

    Basis ``K = [K₀ … K_j]`` (orthonormal), ``Y = R_c K`` and ``Z = C K`` come out of the
    passes, so ``KᵀCK = YᵀY`` and the Ritz residual ``||C v − θ v||² = wᵀ(ZᵀZ)w − θ²``
    (``v = K w``, ``||v|| = 1``) cost no extra pass. Both small Grams grow block by block in
    float64. Returns singular values, components, projections, passes, relative residuals, mean.
    """
    n, m = R.shape
    b = k0.shape[1]
    cap = b * max(1, min(max_passes, (min(n, m) - 1) // b))
    K = torch.empty((m, cap), dtype=R.dtype, device=R.device)
    Y = torch.empty((n, cap), dtype=R.dtype, device=R.device)
    Zd = torch.empty((cap, m), dtype=torch.float64, device=R.device)  # (C K)ᵀ, float64 for ZᵀZ
    yty, ztz = np.zeros((cap, cap)), np.zeros((cap, cap))  # tiny: numpy, no thread-pool overhead
    y, zt, mu = _gram_pass(R, k0, None, threads)
    q, nxt = 0, k0
    while True:
        K[:, q:q + b], Y[:, q:q + b], Zd[q:q + b] = nxt, y, zt
        cross = (Y[:, :q + b].double().T @ y.double()).cpu().numpy()
        yty[:q + b, q:q + b], yty[q:q + b, :q + b] = cross, cross.T
        cross = (Zd[:q + b] @ Zd[q:q + b].T).cpu().numpy()
        ztz[:q + b, q:q + b], ztz[q:q + b, :q + b] = cross, cross.T
        q += b
        theta, w = np.linalg.eigh(yty[:q, :q])
        theta, w = theta[::-1][:k].clip(min=0), w[:, ::-1][:, :k]
        resid2 = ((w.T @ ztz[:q, :q]) * w.T).sum(axis=1) - theta ** 2
        rel = np.sqrt(resid2.clip(min=0)) / theta.clip(min=np.finfo(np.float64).tiny)
        if float(rel.max()) <= tol or q + b > cap:
            break
        nxt = (zt.T / torch.linalg.vector_norm(zt, dim=1).clamp_min(1e-30)).to(R.dtype)
        for _ in range(2):  # block Gram–Schmidt against the basis, twice for float32
            nxt = nxt - K[:, :q] @ (K[:, :q].T @ nxt)
        nxt = _orthonormalize(nxt)
        y, zt, _ = _gram_pass(R, nxt, mu, threads)
    passes = q // b
    w = torch.from_numpy(np.ascontiguousarray(w)).to(R.device)
    comps = (K[:, :q].double() @ w).T
    return (torch.from_numpy(np.sqrt(theta)), comps, (Y[:, :q].double() @ w).to(R.dtype),
            passes, torch.from_numpy(rel), mu)


def solve_auto(R: torch.Tensor, k: int, *, n: int, m: int, **kw):
    """``auto``: the exact solver when ``min(n, m) <= 500`` or ``k >= 0.8 min(n, m)``, else randomized."""
    small = min(n, m) <= 500 or k >= 0.8 * min(n, m)
    return (solve_full if small else solve_randomized)(R, k, n=n, m=m, **kw)


def solve_full(R: torch.Tensor, k: int, *, threads: int, **_):
    """``full``: exact PCA of the centred residuals ``R[n_used, m]`` (centred in place).

    Every solver returns ``(singular values [k], components [k, m], projections [n_used, k],
    passes, ritz residuals [k], column mean [m], name of the solver that ran)``."""
    s, comps, proj, mu = _full(R, k, threads)
    return s, comps, proj, 1, torch.zeros(k, dtype=torch.float64), mu, "full"


def solve_randomized(R: torch.Tensor, k: int, *, est, threads: int, dev, n: int, m: int):
    """``randomized``: block Krylov from a seeded start (``est.random_state``); the exact solver when
    the block would not be smaller than the problem."""
    block = min(k + est.n_oversamples, n - 1, m)
    if not (block + 1 < R.shape[0] and block < m):
        return solve_full(R, k, threads=threads)
    gen = torch.Generator().manual_seed(int(est.random_state))
    k0 = _orthonormalize(torch.randn(m, block, generator=gen, dtype=torch.float64))
    s, comps, proj, passes, rel, mu = _block_krylov(R, k0.to(device=dev, dtype=est.dtype), k, est.max_passes,
                                                    est.tol, threads)
    return s, comps, proj, passes, rel, mu, "randomized"


def _full(R: torch.Tensor, k: int, threads: int):
    """Exact PCA of the (in place) centred residual buffer: SVD when small, Gram eigh otherwise."""
    mu = R.mean(dim=0)
    R.sub_(mu)
    n, m = R.shape
    if min(n, m) <= _MAX_SVD_FULL:
        u, s, vh = torch.linalg.svd(R.double(), full_matrices=False)
        return s[:k], vh[:k], (u[:, :k] * s[:k]).to(R.dtype), mu
    with _using(threads):
        if n <= m:
            theta, u = torch.linalg.eigh((R @ R.T).double())
            theta, u = theta.flip(0)[:k].clamp_min(0), u.flip(1)[:, :k]
            s = theta.sqrt()
            comps = (u.T.to(R.dtype) @ R).double() / s[:, None].clamp_min(1e-30)
            return s, comps, (u * s).to(R.dtype), mu
        theta, v = torch.linalg.eigh((R.T @ R).double())
        v = v.flip(1)[:, :k]
        return theta.flip(0)[:k].clamp_min(0).sqrt(), v.T, R @ v.to(R.dtype), mu


@contextmanager
def _using(threads: int):
    """Run the enclosed torch ops on ``threads`` intra-op threads, then restore the count."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _variances(b, st: dict, comps: torch.Tensor, proj: torch.Tensor, dev, dtype):
    """Explained variance of each component under A and B, reading only B once more."""
    n, m = b.shape
    valid = torch.from_numpy(st["valid"]).to(dev)
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    zero_copy = (isinstance(b, torch.Tensor) and b.device == dev and b.dtype == dtype) or (
        type(b) in (np.ndarray, np.memmap) and dev.type == "cpu" and b.dtype == np_dtype)
    step = n if zero_copy else max(1, 8 * _CHUNK_BYTES // (m * comps.element_size()))  # 1 GEMM if no copy
    bp = torch.cat([rows_as_tensor(b, i, i + step, dev, dtype) @ comps.T for i in range(0, n, step)])
    btp = bp[valid].double() * st["bscale"].double()[:, None]
    atp = proj.double() + st["coef"].double()[:, None] * btp
    return atp.var(dim=0, correction=0), btp.var(dim=0, correction=0)
