"""The training loss of one model as a function of its flat parameter vector, with exact
Hessian-vector products (torch.func forward-over-reverse) and per-example loss gradients.

``L(θ) = (1/n) Σ_i ℓ(f_θ(x_i), y_i)`` over a fixed set of ``n`` examples (a model's training
subset). Semantics: the model is put in **eval mode**, so batch norm uses its running statistics
and every ``ℓ_i`` depends on the parameters only (not on the other examples of a batch); the
Hessian is that of the eval-mode loss, the function TRAK and the store's predictions use. It
differs from the train-mode (batch-statistics) loss SGD actually followed. Buffers are constants.
Weight decay is not part of ``L`` (it adds ``wd·I`` to the Hessian of the optimised objective).

Memory: the data are visited in chunks of ``batch_size`` examples; ``k`` vectors at once cost
``k × batch_size`` examples' activations. Nothing of size ``d × d`` is ever formed.

Speed: eval-mode batch norms are evaluated as affine maps folded into the convolution before them
(:mod:`modeldiff.diagnostics.fold`: same parameters, same function, about a third cheaper HVPs on
the digits CNN); ``fold_batchnorm=False`` keeps PyTorch's own batch norm.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from modeldiff.diagnostics.fold import fold_batchnorm as _fold

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits[B, K], y[B]) -> loss[B]


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    """Per-example cross-entropy ``(logits[B, K], y[B]) -> [B]`` (the recipe's loss)."""
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    return loss


class TrainingLoss:
    """``L(θ)`` of ``model`` on ``x[n, ...]``, ``y[n]`` with ``θ`` a flat vector ``[d]``.

    Args:
        model: any ``nn.Module`` mapping ``x[B, ...] -> logits[B, K]`` (or ``[B]`` / ``[B, 1]`` for
            regression losses); switched to eval mode.
        x, y: the examples (any device; chunks are moved to ``device``).
        loss_fn: per-example loss ``(out[B, ...], y[B]) -> [B]``; default cross-entropy.
        batch_size: examples per chunk (memory bound; results do not depend on it).
        device, dtype: where and in which precision to compute (default: the model's); the
            model is moved and cast in place, and switched to eval mode.
        fold_batchnorm: compute with eval-mode batch norms folded into the preceding convolutions
            (:func:`modeldiff.diagnostics.fold.fold_batchnorm`; same function, faster HVPs).
        graph_chunk: when all ``n`` examples fit one chunk, the cached gradient graph is built in
            pieces of about this many examples and each HVP walks them one after the other (smaller
            working sets stay in cache: ~20 % faster HVPs on the digits CNN at 256 than at 718).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None = None,
                 batch_size: int = 256, device=None, dtype: torch.dtype | None = None, fold_batchnorm: bool = True,
                 graph_chunk: int = 256):
        first = next(model.parameters())
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = dtype or first.dtype
        self.model = model.to(self.device, self.dtype).eval()
        self.net = _fold(self.model) if fold_batchnorm else self.model  # what every pass evaluates
        self.names = [k for k, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]
        self.theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(self.device, self.dtype)
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        self.x, self.y = x, y
        self.n = int(x.shape[0])
        if self.n == 0:
            raise ValueError("TrainingLoss needs at least one example")
        self.loss_fn = loss_fn or cross_entropy_loss()
        self.batch_size = int(batch_size)
        self.graph_chunk = max(1, int(graph_chunk))
        self.hvp_count = 0  # Hessian-vector products computed (one per vector)
        self.on_hvp = None  # optional callable(hvp_count) after each batch of products (progress)
        self._cached = None
        self._first = None  # (L, accuracy, ∇L) recorded while building the cached graph

    @property
    def dim(self) -> int:
        """Number of parameters ``d``."""
        return int(self.theta.numel())

    # -- plumbing --------------------------------------------------------------------------------
    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: t.view(s) for k, t, s in zip(self.names, torch.split(flat, self.sizes), self.shapes)}

    def _chunk(self, s: int, e: int):
        xb = self.x[s:e].to(self.device)
        if xb.is_floating_point():
            xb = xb.to(self.dtype)
        return xb, self.y[s:e].to(self.device)

    def chunks(self, indices: torch.Tensor | None = None):
        """Yield ``(x[b, ...], y[b])`` on the device (all examples, or ``indices``)."""
        if indices is None:
            for s in range(0, self.n, self.batch_size):
                yield self._chunk(s, s + self.batch_size)
        else:
            for s in range(0, len(indices), self.batch_size):
                idx = indices[s:s + self.batch_size].cpu()
                xb = self.x[idx].to(self.device)
                yield (xb.to(self.dtype) if xb.is_floating_point() else xb), self.y[idx].to(self.device)

    def _out(self, flat, xb):
        return torch.func.functional_call(self.net, (self._unflatten(flat), self.buffers), (xb,))

    def _sum_loss(self, flat, xb, yb):
        return self.loss_fn(self._out(flat, xb), yb).sum()

    # -- values and gradients ------------------------------------------------------------------
    @staticmethod
    def _tally(out: torch.Tensor, per: torch.Tensor, yb: torch.Tensor) -> tuple[float, int | None]:
        """``(Σ loss, correct or None when the output is not [B, K] class logits)`` of one chunk."""
        total = float(per.detach().double().sum())
        if out.dim() == 2 and out.shape[1] > 1 and not yb.is_floating_point():
            return total, int((out.detach().argmax(1) == yb).sum())
        return total, None

    @torch.no_grad()
    def value(self) -> tuple[float, float]:
        """``(L, accuracy)`` at ``θ``; accuracy is NaN when the output is not ``[B, K]`` logits."""
        if self._first is not None:
            return self._first[0], self._first[1]
        total, correct = 0.0, 0
        for xb, yb in self.chunks():
            out = self._out(self.theta, xb)
            t, c = self._tally(out, self.loss_fn(out, yb), yb)
            total += t
            correct = None if c is None or correct is None else correct + c
        return total / self.n, (correct / self.n if correct is not None else math.nan)

    def first_order(self) -> tuple[float, float, torch.Tensor]:
        """``(L, accuracy, ∇L[d])`` in one forward-backward pass over the data.

        When all examples fit one chunk this pass also builds the graph that every HVP reuses
        (so it costs nothing beyond the first HVP's set-up); :meth:`value` and :meth:`grad` then
        return the recorded numbers too.
        """
        if self.n <= self.batch_size:
            self._graph()
            return self._first
        g = torch.zeros_like(self.theta)
        total, correct = 0.0, 0

        def f(flat, xb, yb):
            out = self._out(flat, xb)
            per = self.loss_fn(out, yb)
            return per.sum() / self.n, (out, per)
        for xb, yb in self.chunks():
            gb, (out, per) = torch.func.grad(f, has_aux=True)(self.theta, xb, yb)
            g += gb
            t, c = self._tally(out, per, yb)
            total += t
            correct = None if c is None or correct is None else correct + c
        return total / self.n, (correct / self.n if correct is not None else math.nan), g

    def grad(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``Σ_i w_i ∇ℓ_i`` (default ``w_i = 1/n``, i.e. ``∇L``): ``[d]``, one backward pass."""
        if weights is None and self._first is not None:
            return self._first[2].clone()
        g = torch.zeros_like(self.theta)
        grad_fn = torch.func.grad(lambda f, xb, yb, w: (self.loss_fn(self._out(f, xb), yb) * w).sum())
        for s in range(0, self.n, self.batch_size):
            xb, yb = self._chunk(s, s + self.batch_size)
            w = (torch.full((xb.shape[0],), 1.0 / self.n, device=self.device, dtype=self.dtype)
                 if weights is None else weights[s:s + self.batch_size].to(self.device, self.dtype))
            g += grad_fn(self.theta, xb, yb, w)
        return g

    def per_example_grads(self, indices: torch.Tensor) -> torch.Tensor:
        """``G[m, d]``: the gradient of each listed example's loss ``ℓ_i`` (flat, parameter order)."""
        def one(f, xb, yb):
            return self._sum_loss(f, xb.unsqueeze(0), yb.unsqueeze(0))
        g1 = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
        out = [g1(self.theta, xb, yb) for xb, yb in self.chunks(indices)]
        return out[0] if len(out) == 1 else torch.cat(out)

    # -- Hessian-vector products ---------------------------------------------------------------
    def _graph(self):
        """``(θ leaf, [∇L_c with its graph per piece c])`` kept while all examples fit one chunk
        (reused by every HVP); ``∇L = Σ_c ∇L_c``, pieces of about ``graph_chunk`` examples."""
        if self._cached is None:
            th = self.theta.clone().requires_grad_(True)
            pieces = math.ceil(self.n / self.graph_chunk)
            edges = [round(i * self.n / pieces) for i in range(pieces + 1)]
            grads, total, correct = [], 0.0, 0
            g_sum = torch.zeros_like(self.theta)
            for s, e in zip(edges, edges[1:]):
                with torch.enable_grad():
                    xb, yb = self._chunk(s, e)
                    out = self._out(th, xb)
                    per = self.loss_fn(out, yb)
                    g, = torch.autograd.grad(per.sum() / self.n, th, create_graph=True)
                grads.append(g)
                g_sum += g.detach()
                t, c = self._tally(out, per, yb)
                total += t
                correct = None if c is None or correct is None else correct + c
            self._first = (total / self.n, correct / self.n if correct is not None else math.nan, g_sum)
            self._cached = (th, grads)
        return self._cached

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v[d]`` or ``H Vᵀ`` row-wise for ``V[k, d]`` (exact).

        When all ``n`` examples fit one chunk (``n <= batch_size``) the gradient's graph is built
        once (in pieces of ``graph_chunk`` examples) and each product is one double-backward pass
        per piece (about half the cost). Otherwise
        each call runs forward-over-reverse (``torch.func.jvp`` of ``grad``) chunk by chunk, ``k``
        vectors at once (``vmap``): memory ``k × batch_size`` examples' activations.
        """
        single = v.dim() == 1
        vs = v.reshape(1, -1) if single else v
        vs = vs.to(self.device, self.dtype)
        if self.n <= self.batch_size:
            th, grads = self._graph()
            out = torch.zeros_like(vs)
            for j, u in enumerate(vs):
                for g in grads:
                    out[j] += torch.autograd.grad(g, th, u, retain_graph=True)[0].detach()
            self._counted(vs.shape[0])
            return out[0] if single else out
        out = torch.zeros_like(vs)
        for xb, yb in self.chunks():
            g = torch.func.grad(lambda f, xb=xb, yb=yb: self._sum_loss(f, xb, yb) / self.n)

            def hv(u, g=g):
                return torch.func.jvp(g, (self.theta,), (u,))[1]
            out += torch.func.vmap(hv)(vs) if vs.shape[0] > 1 else hv(vs[0]).unsqueeze(0)
        self._counted(vs.shape[0])
        return out[0] if single else out

    def _counted(self, k: int) -> None:
        self.hvp_count += k
        if self.on_hvp is not None:
            self.on_hvp(self.hvp_count)

    def hvp_blocks(self, vs: torch.Tensor, block: int = 8) -> torch.Tensor:
        """``H`` applied to each row of ``vs[k, d]``, ``block`` rows at a time (memory bound)."""
        return torch.cat([self.hvp(vs[s:s + block]) for s in range(0, vs.shape[0], block)]) \
            if vs.shape[0] else vs.clone()

    def dense_hessian(self) -> torch.Tensor:
        """``H[d, d]`` from ``d`` HVPs: for tiny models and tests only."""
        eye = torch.eye(self.dim, device=self.device, dtype=self.dtype)
        h = self.hvp_blocks(eye, block=64)
        return (h + h.T) / 2
