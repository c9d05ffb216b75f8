"""Many lasso problems at once: FISTA on ``W[p, T]`` for a shared design ``X[N, p]``.

Each column ``t`` solves scikit-learn's objective (on centred data, so the intercept is
``mean(y) − mean(X) w``)::

    1/(2N) ||y_t − X w_t||² + λ_t ||w_t||₁

with per-column step-size-free momentum restarts (O'Donoghue & Candès gradient scheme) and
scikit-learn's stopping rule: the duality gap of column ``t`` (in its ``N``-scaled form, as in
``sklearn.linear_model._cd_fast``) below ``tol * ||y_t||²``. Two back-ends, same numbers:
``Gram`` keeps ``XᵀX [p, p]`` (cheap per step when it fits), ``Design`` multiplies by ``X``
(memory ``N p`` — for 50,000 training examples without a ``p²`` matrix).
"""
from __future__ import annotations

import torch


class Design:
    """Gradient and gap through the centred design ``Xc[N, p]``; bind targets with :meth:`targets`."""

    def __init__(self, xc: torch.Tensor):
        self.xc, self.n = xc, xc.shape[0]
        self._l = _top_eig(xc) / self.n if type(self) is Design else None

    def targets(self, yc: torch.Tensor) -> "Design":
        """A copy bound to centred targets ``Yc[N, T]`` (shares the design)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.yc, out.xty, out.yy = yc, self._xt(yc), (yc * yc).sum(0)
        return out

    def select(self, cols: torch.Tensor) -> "Design":
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.yc = None if self.yc is None else self.yc[:, cols]
        out.xty, out.yy = self.xty[:, cols], self.yy[cols]
        return out

    def _xt(self, yc):
        return self.xc.T @ yc

    def xtr(self, w: torch.Tensor) -> torch.Tensor:  # Xcᵀ (Yc − Xc W): [p, T]
        return self.xty - self.xc.T @ (self.xc @ w)

    def residual_stats(self, w, xtr):  # ||R||², <R, y> per column
        r = self.yc - self.xc @ w
        return (r * r).sum(0), (r * self.yc).sum(0)

    def lipschitz(self) -> float:
        """``L = λ_max(XcᵀXc) / N``: the gradient's Lipschitz constant (step ``1/L``)."""
        return self._l


class Gram(Design):
    """Same problem through ``G = XcᵀXc [p, p]`` (no ``N`` in the loop); keeps ``Xc`` only
    to bind new targets."""

    def __init__(self, xc: torch.Tensor):
        super().__init__(xc)
        self.g = xc.T @ xc
        self._l = float(torch.linalg.eigvalsh(self.g.double())[-1]) / self.n

    def targets(self, yc):
        out = super().targets(yc)
        out.yc = None
        return out

    def xtr(self, w):
        return self.xty - self.g @ w

    def residual_stats(self, w, xtr):
        wc = (w * self.xty).sum(0)
        r2 = self.yy - 2 * wc + (w * (self.xty - xtr)).sum(0)  # yy − 2 wᵀc + wᵀGw
        return r2.clamp_min(0), self.yy - wc


def _top_eig(xc: torch.Tensor, iters: int = 200) -> float:
    """Largest eigenvalue of ``XcᵀXc``: exact for a small side, else power iteration (+2 %)."""
    n, p = xc.shape
    if min(n, p) <= 8192:
        small = xc @ xc.T if n <= p else xc.T @ xc
        return float(torch.linalg.eigvalsh(small.double())[-1])
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(p, 1, generator=gen, dtype=torch.float64).to(xc.device, xc.dtype)
    lam = 0.0
    for _ in range(iters):
        u = xc.T @ (xc @ v)
        lam = float(u.norm())
        v = u / max(lam, 1e-30)
    return lam * 1.02  # power iteration approaches from below; a larger L only slows the step


def make_problem(xc: torch.Tensor, gram_max_bytes: int) -> Design:
    """``Gram`` when ``p²`` fits in ``gram_max_bytes`` and is cheaper than ``N p``, else ``Design``."""
    p = xc.shape[1]
    if p * p * xc.element_size() <= gram_max_bytes and p <= 2 * xc.shape[0]:
        return Gram(xc)
    return Design(xc)


def duality_gap(prob: Design, w: torch.Tensor, lam: torch.Tensor, xtr: torch.Tensor) -> torch.Tensor:
    """scikit-learn's gap per column (objective scaled by ``N``): ``[T]``."""
    alpha = lam * prob.n
    r2, ry = prob.residual_stats(w, xtr)
    dual = xtr.abs().amax(0)
    const = torch.where(dual > alpha, alpha / dual.clamp_min(1e-300), torch.ones_like(dual))
    gap = torch.where(dual > alpha, 0.5 * r2 * (1 + const * const), r2)
    return gap + alpha * w.abs().sum(0) - const * ry


def soft_threshold(x: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - thr).clamp_min(0)


def fista(prob: Design, w0: torch.Tensor, lam: torch.Tensor, *, tol: float = 1e-4,
          max_iter: int = 1000, check_every: int = 10) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Solve all columns from the warm start ``w0[p, T]`` at penalties ``lam[T]``.

    Converged columns leave the working set at each check. Returns ``(W[p, T],
    converged[T] bool, iterations of the slowest column)``.
    """
    w = w0.clone()
    lam = torch.as_tensor(lam, dtype=w.dtype, device=w.device).expand(w.shape[1])
    inv_l = 1.0 / max(prob.lipschitz(), 1e-30)
    thr_all = lam * inv_l
    target = tol * prob.yy
    done = prob.yy <= torch.finfo(w.dtype).tiny  # constant targets: w = 0 already optimal
    w[:, done] = 0
    active = torch.nonzero(~done).squeeze(1)
    x = w[:, active]
    z, t = x.clone(), torch.ones(active.numel(), dtype=w.dtype, device=w.device)
    it = 0
    while active.numel() and it < max_iter:
        sub = prob.select(active)
        thr = thr_all[active]
        for _ in range(check_every):
            x_new = soft_threshold(z + sub.xtr(z) * (inv_l / prob.n), thr)
            t_new = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            restart = ((z - x_new) * (x_new - x)).sum(0) > 0
            beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
            z = x_new + beta * (x_new - x)
            t = torch.where(restart, torch.ones_like(t_new), t_new)
            x = x_new
            it += 1
        w[:, active] = x
        gap = duality_gap(sub, x, lam[active], sub.xtr(x))
        ok = gap <= target[active]
        done[active[ok]] = True
        keep = ~ok  # converged columns leave; the others keep their momentum
        active, x, z, t = active[keep], x[:, keep], z[:, keep], t[keep]
    return w, done, it
