"""The ModelDiff estimator: residual datamodels A−B, their PCA, and explained variances.

Method (Shah et al. 2022, section 3): L2-normalise every test row of both attribution
matrices, remove from A's row its projection on B's row (the residual datamodel), run a
centred PCA of the residuals. A component ``p`` is a direction in training-set space that
matters to A's models and not to B's when its explained variance under A,
``||Ã_c p||² / n`` (Ã row-normalised, then column-centred), exceeds that under B.
For B − A swap the arguments.

How it stays fast and lean (10k × 50k float32 inputs on a 2-core CPU):

* ONE pass over the rows of A and B, in cache-sized chunks, computes norms and cosines,
  writes the residual rows into ONE preallocated buffer ``R`` and, while each chunk is
  still in cache, applies the first Krylov step ``Rᵀ(R K₀)`` and the column sums.
* ``randomized`` = block Krylov iteration (Musco & Musco 2015) on ``C = R_cᵀR_c`` with
  implicit centring (``R_c v = R v − 1 μᵀv``); every further step is one fused pass over
  ``R`` (``Y = R_c K``, ``Z = R_cᵀ Y`` chunk by chunk). Rayleigh–Ritz on the whole Krylov
  basis after each pass; stops once the top-k Ritz residuals ``||C v − θ v|| / θ`` are
  below ``tol``. No centred copy, no normalised copy of A or B is ever made.
* explained variances use ``ã = r + c·b̃`` (c = row cosine), so only B is read once more.

Peak extra memory ≈ bytes of one input (the buffer) + O((n_test + n_train)·k·passes).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from modeldiff import validation

_CHUNK_BYTES = 2 << 20  # bytes per row chunk: ≤ the 2 MiB L2 of a core, so the second GEMM re-reads it from cache
_MAX_SVD_FULL = 4096    # `full` uses a float64 LAPACK SVD up to this min(n, m); a Gram eigh above it


class ModelDiff:
    """Find directions in training-set space that A's models use and B's do not.

    Parameters (keyword-only after ``n_components``; the constructor only stores them):
        n_components: k, the number of residual principal components.
        normalize: L2-normalise test rows before the residual (the paper's method).
        solver: ``"full"`` (exact), ``"randomized"`` (block Krylov) or ``"auto"``
            (randomized when ``max(n, m) > 500`` and ``k < 0.8·min(n, m)``).
        device: torch device for the work (None: the device of a tensor ``scores_a``, else CPU).
        random_state: seed of the random starting block.
        dtype: working precision (float32 by default; results keep it).
        n_oversamples: extra columns per Krylov block (block size = k + n_oversamples).
        max_passes: most passes over the residual buffer for ``randomized``.
        tol: relative Ritz-residual tolerance that ends the Krylov iteration.

    Rows whose attribution vector is all zeros in A or in B are excluded with a warning:
    they take no part in the PCA or the variances and get NaN in ``test_projections_``.
    Non-finite values, mismatched shapes and ``k >= n_test`` raise ``UserError``.

    Attributes after ``fit`` (numpy arrays on the CPU, in ``dtype``):
        components_ [k, n_train]: orthonormal directions, sign fixed so that each
            component's largest-magnitude entry is positive.
        explained_variance_a_, explained_variance_b_ [k]: ``||X_c p||² / n`` under A and B.
        explained_variance_ [k]: variance of the residuals along each component (/ n).
        singular_values_ [k]: of the centred residual matrix.
        test_projections_ [n_test, k]: centred residual rows projected on the components.
        residuals_mean_ [n_train]: column mean of the residuals.
        row_cosine_ [n_test]: cosine between A's and B's row (NaN where excluded).
        excluded_rows_ [e]: indices of the excluded test rows.
        solver_, n_passes_, ritz_residuals_ [k]: what the solver did.
    """

    def __init__(self, n_components: int = 10, *, normalize: bool = True, solver: str = "auto",
                 device=None, random_state: int = 0, dtype: torch.dtype = torch.float32,
                 n_oversamples: int = 4, max_passes: int = 8, tol: float = 1e-3):
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
        validation.check_params(self.n_components, self.solver)
        n, m = validation.check_pair(scores_a, scores_b)
        k = int(self.n_components)
        validation.check_n_components(k, n, m)
        dev = torch.device(self.device if self.device is not None else
                           (scores_a.device if isinstance(scores_a, torch.Tensor) else "cpu"))
        block = min(k + self.n_oversamples, n - 1, m)
        solver = self.solver
        if solver == "auto":
            solver = "randomized" if max(n, m) > 500 and k < 0.8 * min(n, m) else "full"
        if solver == "randomized" and block >= min(n - 1, m):
            solver = "full"
        gen = torch.Generator().manual_seed(int(self.random_state))
        k0 = None
        if solver == "randomized":
            k0 = torch.linalg.qr(torch.randn(m, block, generator=gen, dtype=torch.float64))[0]
            k0 = k0.to(device=dev, dtype=self.dtype)
        st = _residual_pass(scores_a, scores_b, dev, self.dtype, k0, self.normalize)
        validation.warn_excluded(st["zero_a"], st["zero_b"])
        n_used = st["R"].shape[0]
        validation.check_n_components(k, n_used, m, n - n_used)
        if solver == "randomized" and block + 1 < n_used:
            s, comps, proj, passes, rel = _block_krylov(st, k, self.max_passes, self.tol)
        else:
            solver, passes = "full", 1
            s, comps, proj = _full(st["R"], st["mu"], k)
            rel = torch.zeros(k, dtype=torch.float64)
        del st["R"]  # frees the buffer before the variance pass
        comps = comps.to(self.dtype)
        comps = comps / torch.linalg.vector_norm(comps, dim=1, keepdim=True)
        top = comps.abs().argmax(dim=1)
        sign = torch.sign(comps[torch.arange(k, device=comps.device), top])
        comps, proj = comps * sign[:, None], proj * sign.to(proj.dtype)
        var_a, var_b = _variances(scores_b, st, comps, proj, dev, self.dtype)

        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        self.components_ = comps.cpu().numpy()
        self.singular_values_ = s.cpu().numpy().astype(np_dtype)
        self.explained_variance_ = (s.double() ** 2 / n_used).cpu().numpy().astype(np_dtype)
        self.explained_variance_a_ = var_a.cpu().numpy().astype(np_dtype)
        self.explained_variance_b_ = var_b.cpu().numpy().astype(np_dtype)
        full_proj = np.full((n, k), np.nan, dtype=np_dtype)
        full_proj[st["valid"]] = proj.cpu().numpy()
        self.test_projections_ = full_proj
        self.residuals_mean_ = st["mu"].cpu().numpy().astype(np_dtype)
        self.row_cosine_ = st["cosine"].astype(np_dtype)
        self.excluded_rows_ = np.flatnonzero(~st["valid"])
        self.solver_, self.n_passes_ = solver, passes
        self.ritz_residuals_ = rel.cpu().numpy()
        self.n_features_in_, self.n_test_ = m, n
        return self


def _rows(x, i: int, j: int, device, dtype) -> torch.Tensor:
    """Rows ``i:j`` of a tensor, numpy array, memmap or h5py dataset as a tensor (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        return x[i:j].to(device=device, dtype=dtype)
    block = np.asarray(x[i:j])
    with warnings.catch_warnings():  # read-only memmaps: we never write through this view
        warnings.simplefilter("ignore", UserWarning)
        try:
            t = torch.from_numpy(block)
        except (ValueError, TypeError):
            t = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float64))
    return t.to(device=device, dtype=dtype)


def _chunk_rows(m: int, dtype) -> int:
    return max(1, _CHUNK_BYTES // (m * torch.empty((), dtype=dtype).element_size()))


def _residual_pass(a, b, dev, dtype, k0, normalize: bool) -> dict:
    """Single pass over A and B: residual rows into one buffer, column sums, first Krylov step."""
    n, m = a.shape
    R = torch.empty((n, m), dtype=dtype, device=dev)
    w = 0 if k0 is None else k0.shape[1]
    zext = torch.zeros((m, w + 1), dtype=dtype, device=dev)  # [Rᵀ R K₀ | Rᵀ 1]
    yraw = torch.empty((n, w), dtype=dtype, device=dev)
    zero_a, zero_b = np.zeros(n, bool), np.zeros(n, bool)
    cosine = np.full(n, np.nan)
    coef, bscale = [], []
    step, used = _chunk_rows(m, dtype), 0
    for i in range(0, n, step):
        j = min(i + step, n)
        ai, bi = _rows(a, i, j, dev, dtype), _rows(b, i, j, dev, dtype)
        na, nb = torch.linalg.vector_norm(ai, dim=1), torch.linalg.vector_norm(bi, dim=1)
        for name, x, norms in (("scores_a", a, na), ("scores_b", b, nb)):
            bad = ~torch.isfinite(norms)
            if bool(bad.any()):
                validation.raise_nonfinite(name, x, i + int(bad.nonzero()[0, 0]))
        dot = torch.linalg.vecdot(ai, bi, dim=1)
        keep = (na > 0) & (nb > 0)
        zero_a[i:j], zero_b[i:j] = (na == 0).cpu().numpy(), (nb == 0).cpu().numpy()
        if not bool(keep.all()):
            ai, bi, na, nb, dot = ai[keep], bi[keep], na[keep], nb[keep], dot[keep]
        cos = dot / (na * nb)
        cosine[i:j][keep.cpu().numpy()] = cos.double().cpu().numpy()
        if normalize:  # r = a/|a| − cos · b/|b|
            alpha, beta, c, s = 1.0 / na, cos / nb, cos, 1.0 / nb
        else:          # r = a − (a·b / |b|²) b
            alpha, beta = torch.ones_like(na), dot / nb ** 2
            c, s = beta, torch.ones_like(nb)
        coef.append(c)
        bscale.append(s)
        cnt = ai.shape[0]
        ri = R[used:used + cnt]
        torch.mul(ai, alpha[:, None], out=ri)
        ri.addcmul_(bi, beta[:, None], value=-1.0)
        g = torch.ones((cnt, w + 1), dtype=dtype, device=dev)
        if w:
            torch.matmul(ri, k0, out=g[:, :w])
            yraw[used:used + cnt] = g[:, :w]
        zext.addmm_(ri.T, g)
        used += cnt
    mu = zext[:, w] / max(used, 1)
    st = dict(R=R[:used], mu=mu, zero_a=zero_a, zero_b=zero_b, valid=~(zero_a | zero_b),
              cosine=cosine, coef=torch.cat(coef), bscale=torch.cat(bscale), k0=k0)
    if w:
        mk = mu @ k0
        st["y0"] = yraw[:used] - mk
        st["z0"] = zext[:, :w] - used * torch.outer(mu, mk)
    return st


def _gram_pass(R: torch.Tensor, mu: torch.Tensor, K: torch.Tensor):
    """One fused pass: ``Y = R_c K`` and ``Z = R_cᵀ R_c K`` with implicit centring."""
    n, m = R.shape
    y = torch.empty((n, K.shape[1]), dtype=R.dtype, device=R.device)
    z = torch.zeros((m, K.shape[1]), dtype=R.dtype, device=R.device)
    step = _chunk_rows(m, R.dtype)
    for i in range(0, n, step):
        ri = R[i:i + step]
        torch.matmul(ri, K, out=y[i:i + step])
        z.addmm_(ri.T, y[i:i + step])
    mk = mu @ K
    return y - mk, z - n * torch.outer(mu, mk)


def _ritz(K, Y, Z, k: int):
    """Rayleigh–Ritz on span(K) from ``Y = R_c K`` and ``Z = C K``: top-k values, vectors, residuals."""
    _, s, wh = torch.linalg.svd(Y.double(), full_matrices=False)
    w = wh[:k].T
    theta = s[:k] ** 2
    v = K.double() @ w
    resid = torch.linalg.vector_norm(Z.double() @ w - v * theta, dim=0)
    rel = resid / theta.clamp_min(torch.finfo(torch.float64).tiny)
    return s[:k], v.T, (Y.double() @ w).to(Y.dtype), rel


def _block_krylov(st: dict, k: int, max_passes: int, tol: float):
    """Block Krylov subspace iteration; returns singular values, components, projections."""
    R, mu = st["R"], st["mu"]
    Ks, Ys, Zs = [st["k0"]], [st["y0"]], [st["z0"]]
    passes = 1
    while True:
        K, Y, Z = (torch.cat(t, dim=1) for t in (Ks, Ys, Zs))
        s, comps, proj, rel = _ritz(K, Y, Z, k)
        if float(rel.max()) <= tol or passes >= max_passes or \
                K.shape[1] + Ks[0].shape[1] >= min(R.shape):
            break
        nxt = Zs[-1] / torch.linalg.vector_norm(Zs[-1], dim=0).clamp_min(1e-30)
        for _ in range(2):  # block Gram–Schmidt, twice for orthogonality in float32
            nxt = nxt - K @ (K.T @ nxt)
        nxt = torch.linalg.qr(nxt)[0]
        y, z = _gram_pass(R, mu, nxt)
        Ks.append(nxt), Ys.append(y), Zs.append(z)
        passes += 1
    if float(rel.max()) > tol:
        warnings.warn(
            f"randomized solver stopped after {passes} passes with relative Ritz residual "
            f"{float(rel.max()):.2g} > tol={tol}; components may be inaccurate: raise max_passes "
            "or use solver='full'", RuntimeWarning, stacklevel=3)
    return s, comps, proj, passes, rel


def _full(R: torch.Tensor, mu: torch.Tensor, k: int):
    """Exact PCA of the (in place) centred residual buffer: SVD when small, Gram eigh otherwise."""
    R.sub_(mu)
    n, m = R.shape
    if min(n, m) <= _MAX_SVD_FULL:
        u, s, vh = torch.linalg.svd(R.double(), full_matrices=False)
        return s[:k], vh[:k], (u[:, :k] * s[:k]).to(R.dtype)
    if n <= m:
        theta, u = torch.linalg.eigh((R @ R.T).double())
        theta, u = theta.flip(0)[:k].clamp_min(0), u.flip(1)[:, :k]
        s = theta.sqrt()
        comps = (R.T @ u.to(R.dtype)).T.double() / s[:, None].clamp_min(1e-30)
        return s, comps, (u * s).to(R.dtype)
    theta, v = torch.linalg.eigh((R.T @ R).double())
    v = v.flip(1)[:, :k]
    return theta.flip(0)[:k].clamp_min(0).sqrt(), v.T, R @ v.to(R.dtype)


def _variances(b, st: dict, comps: torch.Tensor, proj: torch.Tensor, dev, dtype):
    """Explained variance of each component under A and B, reading only B once more."""
    n, m = b.shape
    valid = torch.from_numpy(st["valid"])
    step, parts = _chunk_rows(m, dtype) * 8, []
    for i in range(0, n, step):
        bp = _rows(b, i, i + step, dev, dtype) @ comps.T
        parts.append(bp[valid[i:i + step].to(dev)])
    btp = torch.cat(parts).double() * st["bscale"].double()[:, None]
    atp = proj.double() + st["coef"].double()[:, None] * btp
    return atp.var(dim=0, correction=0), btp.var(dim=0, correction=0)
