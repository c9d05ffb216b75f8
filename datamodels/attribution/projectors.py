"""Random projections of per-example gradients ``[B, n_params] -> [B, k]`` (the JL step of TRAK).

Every projector ``P`` satisfies ``E[<P g, P h>] = k <g, h>`` (entries of unit variance, like
traker's unnormalised ±1 / N(0, 1) matrices), is a deterministic function of
``(seed, model_id)``, and never stores an ``[n_params, k]`` matrix.
"""
from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping

import torch

from datamodels.attribution import counter_rng
from datamodels.attribution.names import IDENTITY, PROJECTORS
from datamodels.base.errors import UserError, call_user

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()
_BLOCK_BYTES = 64 << 20  # bytes of random signs generated at once: bounds memory, amortises hashing
_CACHE_BYTES = 256 << 20  # largest second-stage sign matrix kept between calls (per projector)

Grads = "torch.Tensor | Mapping[str, torch.Tensor] | Iterable[torch.Tensor]"


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        logger.warning(msg)


def iter_chunks(grads) -> Iterable[tuple[int, torch.Tensor]]:
    """``(offset, flat[B, n])`` pieces of the flattened gradient, in parameter order."""
    if isinstance(grads, torch.Tensor):
        yield 0, grads.reshape(grads.shape[0], -1)
        return
    offset = 0
    for g in (grads.values() if isinstance(grads, Mapping) else grads):
        flat = g.reshape(g.shape[0], -1)
        yield offset, flat
        offset += flat.shape[1]


class Projector(ABC):
    """Projects per-example gradients to ``proj_dim`` dimensions.

    Implementations:

    - :class:`IdentityProjector` — no projection (``proj_dim = grad_dim``); exact TRAK.
    - :class:`RademacherProjector` — dense ±1 matrix, generated block by block from a
      counter-based hash (:mod:`datamodels.attribution.counter_rng`): same numbers on CPU and GPU.
    - :class:`SketchProjector` — the fast default: random-sign folding of the gradient to
      ``sketch_dim`` coordinates (O(n_params)), then a dense ±1 ``[sketch_dim, k]`` matrix;
      device-independent too.
    - :class:`FastJLProjector` — traker's CUDA kernel ``fast_jl`` (optional, CUDA only).

    Use :func:`make_projector` to pick one by name (registry ``PROJECTORS``) or import target; a
    projector object (this class's interface: ``project`` and ``proj_dim``) is accepted wherever a
    projector name is. ``project(grads, model_id)`` takes
    ``grads`` as ``[B, n_params]`` or a mapping / sequence of per-parameter ``[B, ...]``
    tensors in parameter order, and returns ``[B, proj_dim]`` in the gradients' dtype.
    """

    name = "abstract"

    def __init__(self, grad_dim: int, proj_dim: int, seed: int = 0, device="cpu"):
        self.grad_dim, self.proj_dim, self.seed = int(grad_dim), int(proj_dim), int(seed)
        self.device = torch.device(device)

    @abstractmethod
    def project(self, grads, model_id: int) -> torch.Tensor:
        """``[B, n_params]`` (or per-parameter pieces) -> ``[B, proj_dim]``."""

    def params(self) -> dict:
        """Hyper-parameters recorded next to the scores."""
        return {"projector": self.name, "proj_dim": self.proj_dim, "proj_seed": self.seed}

    def _check(self, n: int) -> None:
        if n != self.grad_dim:
            raise ValueError(f"gradients have {n} entries, projector expects {self.grad_dim}")


class IdentityProjector(Projector):
    """Returns the flattened gradient itself (``proj_dim == grad_dim``)."""

    name = "identity"

    def __init__(self, grad_dim: int, seed: int = 0, device="cpu"):
        super().__init__(grad_dim, grad_dim, seed, device)

    def project(self, grads, model_id: int) -> torch.Tensor:
        flat = torch.cat([c for _, c in iter_chunks(grads)], dim=1)
        self._check(flat.shape[1])
        return flat


class RademacherProjector(Projector):
    """Dense ±1 projection; row ``j`` of the matrix is hashed from ``(seed, model_id, j)``.

    Exact JL reference: costs ``O(B * n_params * k)`` plus regenerating the signs each call.
    """

    name = "rademacher"

    def project(self, grads, model_id: int) -> torch.Tensor:
        key = counter_rng.make_key(self.seed, model_id, 1)
        out, n = None, 0
        for offset, flat in iter_chunks(grads):
            if out is None:
                out = flat.new_zeros(flat.shape[0], self.proj_dim)
            step = max(1, _BLOCK_BYTES // (8 * self.proj_dim))  # int64 hash scratch
            for r in range(0, flat.shape[1], step):
                piece = flat[:, r:r + step]
                block = counter_rng.sign_block(key, offset + r, offset + r + piece.shape[1],
                                               self.proj_dim, flat.device, flat.dtype)
                out.addmm_(piece, block)
            n = offset + flat.shape[1]
        self._check(n)
        return out


class SketchProjector(Projector):
    """Sparse-then-dense JL: ``P = S D F`` with ``F`` a random-sign fold and ``S`` dense ±1.

    The fold maps coordinate ``j`` to ``j mod sketch_dim`` with sign ``s_j = ±1`` (a CountSketch
    with structured buckets; unbiased for inner products, variance ~ 1/sketch_dim), then a dense
    ``[sketch_dim, k]`` ±1 matrix mixes the folded vector. Cost ``O(B n_params + B m k)``
    instead of ``O(B n_params k)``; with ``sketch_dim >= 8 k`` the extra distortion of the fold
    is small next to the JL distortion of ``k`` itself. ``sketch_dim >= grad_dim`` skips the
    fold (then this is a dense Rademacher projection of sign-flipped gradients).
    """

    name = "sketch"

    def __init__(self, grad_dim: int, proj_dim: int, seed: int = 0, device="cpu",
                 sketch_dim: int | None = None):
        super().__init__(grad_dim, proj_dim, seed, device)
        default = 8 * self.proj_dim  # coordinates after folding: fold variance ~1/8 of JL's
        self.sketch_dim = int(min(self.grad_dim, sketch_dim or default))
        self._cache: dict[tuple, torch.Tensor] = {}
        self._bufs: dict[tuple, torch.Tensor] = {}

    def params(self) -> dict:
        return {**super().params(), "sketch_dim": self.sketch_dim}

    def _signs(self, model_id, device, dtype) -> torch.Tensor:
        k = ("fold", model_id, device, dtype)
        if k not in self._cache:
            self._cache = {kk: v for kk, v in self._cache.items() if kk[1] == model_id}
            key = counter_rng.make_key(self.seed, model_id, 2)
            self._cache[k] = counter_rng.sign_vector(key, 0, self.grad_dim, device, dtype)
        return self._cache[k]

    def _dense(self, model_id, r0, r1, device, dtype) -> torch.Tensor:
        key = counter_rng.make_key(self.seed, model_id, 3)
        size = self.sketch_dim * self.proj_dim * torch.finfo(dtype).bits // 8
        if size > _CACHE_BYTES:
            return counter_rng.sign_block(key, r0, r1, self.proj_dim, device, dtype)
        k = ("dense", model_id, device, dtype)
        if k not in self._cache:
            self._cache[k] = counter_rng.sign_block(key, 0, self.sketch_dim, self.proj_dim,
                                                    device, dtype)
        return self._cache[k][r0:r1]

    def _buffer(self, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        """A reused scratch tensor (fresh large allocations cost page faults on every call)."""
        need = math.prod(shape)
        key = (name, like.device, like.dtype)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < need:
            buf = self._bufs[key] = torch.empty(need, dtype=like.dtype, device=like.device)
        return buf[:need].view(shape)

    def project(self, grads, model_id: int) -> torch.Tensor:
        m, folded, n = self.sketch_dim, None, 0
        for offset, flat in iter_chunks(grads):
            if folded is None:
                folded = self._buffer("folded", (flat.shape[0], m), flat).zero_()
            signs = self._signs(model_id, flat.device, flat.dtype)[offset:offset + flat.shape[1]]
            signed = torch.mul(flat, signs, out=self._buffer("signed", flat.shape, flat))
            _fold_into(folded, signed, offset, self._buffer("rows", folded.shape, flat))
            n = offset + flat.shape[1]
        self._check(n)
        out = folded.new_zeros(folded.shape[0], self.proj_dim)
        step = max(1, _BLOCK_BYTES // (8 * self.proj_dim))  # int64 hash scratch
        for r in range(0, m, step):
            r1 = min(m, r + step)
            out.addmm_(folded[:, r:r1], self._dense(model_id, r, r1, folded.device, folded.dtype))
        return out


def _fold_into(folded: torch.Tensor, piece: torch.Tensor, offset: int,
               scratch: torch.Tensor) -> None:
    """``folded[:, (offset + i) % m] += piece[:, i]`` for all ``i``, without copying ``piece``
    (``scratch``: a ``[B, m]`` buffer; few large ops, as small ones pay thread start-up)."""
    b, m, n = folded.shape[0], folded.shape[1], piece.shape[1]
    lead = offset % m
    head = min(n, m - lead) if lead else 0  # up to the next multiple of m
    if head:
        folded[:, lead:lead + head] += piece[:, :head]
    rows = (n - head) // m
    if rows == 1:
        folded += piece[:, head:head + m]
    elif rows > 1:  # whole rows of m: a strided view summed over rows
        torch.sum(piece[:, head:head + rows * m].view(b, rows, m), dim=1, out=scratch)
        folded += scratch
    tail = n - head - rows * m
    if tail:
        folded[:, :tail] += piece[:, n - tail:]


class FastJLProjector(Projector):
    """traker's CUDA kernel (``fast_jl.project_rademacher_{8,16,32}``); needs CUDA + fast_jl.

    Its numbers come from the kernel's own generator: they differ from the portable projectors.
    """

    name = "fast_jl"

    def __init__(self, grad_dim: int, proj_dim: int, seed: int, device,
                 max_batch_size: int = 32):
        super().__init__(grad_dim, proj_dim, seed, device)
        if self.device.type != "cuda":
            raise ValueError("the fast_jl projector needs a CUDA device")
        import fast_jl  # noqa: F401  (lazy: optional accelerator)

        self.max_batch_size = max_batch_size
        self.num_sms = torch.cuda.get_device_properties(self.device).multi_processor_count

    def project(self, grads, model_id: int) -> torch.Tensor:
        import fast_jl

        flat = torch.cat([c for _, c in iter_chunks(grads)], dim=1)
        self._check(flat.shape[1])
        # the kernel indexes batch x params in 32-bit: split the parameters into chunks
        n_chunks = math.ceil(flat.shape[1] * self.max_batch_size / (2**32 - 1))
        out = torch.zeros(flat.shape[0], self.proj_dim, device=flat.device, dtype=torch.float32)
        for b in range(0, flat.shape[0], self.max_batch_size):
            part = flat[b:b + self.max_batch_size]
            eff = 8 if part.shape[0] <= 8 else 16 if part.shape[0] <= 16 else 32
            fn = getattr(fast_jl, f"project_rademacher_{min(eff, self.max_batch_size)}")
            for c, cols in enumerate(torch.tensor_split(part, n_chunks, dim=1)):
                seed = self.seed + int(1e4) * int(model_id) + 97 * c
                out[b:b + part.shape[0]] += fn(cols.contiguous(), self.proj_dim, seed,
                                               self.num_sms).float()
        return out.to(flat.dtype)


def auto_projector(grad_dim: int, proj_dim: int, seed: int = 0, device="cpu",
                   sketch_dim: int | None = None) -> Projector:
    """``auto``: traker's fast_jl kernel on CUDA when it imports, else :class:`SketchProjector`."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return FastJLProjector(grad_dim, proj_dim, seed, device)
        except (ImportError, RuntimeError, AttributeError) as err:
            _warn_once(f"fast_jl unavailable ({err}); using the portable SketchProjector")
    return SketchProjector(grad_dim, proj_dim, seed, device, sketch_dim=sketch_dim)


def make_projector(kind, grad_dim: int, proj_dim: int | None, seed: int = 0,
                   device="cpu", sketch_dim: int | None = None) -> Projector:
    """The projector ``kind`` names, for gradients of ``grad_dim`` entries.

    ``kind``: a registered name (``PROJECTORS``: ``auto``, ``sketch``, ``rademacher``, ``fast_jl``),
    ``identity`` (also chosen when ``proj_dim`` is None or 0), an import target of a projector class
    or factory, such a class or factory itself (called with the keywords it accepts among
    ``grad_dim, proj_dim, seed, device, sketch_dim``), or a projector object (anything with
    ``project(grads, model_id) -> [B, k]`` and ``proj_dim``), used as it is.
    """
    from datamodels.registry import accepted_kwargs

    device = torch.device(device)
    if isinstance(kind, str) and kind == IDENTITY or not proj_dim:
        return IdentityProjector(grad_dim, seed, device)
    if is_projector(kind):
        return kind
    try:
        factory = PROJECTORS.resolve(kind, key="projector")
    except UserError as err:
        raise ValueError(str(err)) from None
    if is_projector(factory):
        return factory
    if not callable(factory):
        raise ValueError(f"projector {kind!r} is a {type(factory).__name__}: give a Projector class, a factory "
                         f"or an object with project(grads, model_id)")
    options = {"grad_dim": grad_dim, "proj_dim": proj_dim, "seed": seed, "device": device, "sketch_dim": sketch_dim}
    accepted = accepted_kwargs(factory)
    chosen = {k: v for k, v in options.items() if accepted is None or k in accepted}
    builtin = isinstance(kind, str) and kind in PROJECTORS.names() and factory.__module__ == __name__
    proj = factory(**chosen) if builtin else call_user(factory, **chosen, what=f"projector {kind!r}")
    if not is_projector(proj):
        raise ValueError(f"projector {kind!r} built a {type(proj).__name__}, which has no project(grads, model_id)")
    return proj


def is_projector(obj) -> bool:
    """True for a projector object (not a class): it has ``project`` and ``proj_dim``."""
    return not isinstance(obj, (str, type)) and callable(getattr(obj, "project", None)) and hasattr(obj, "proj_dim")


def projector_params(proj) -> dict:
    """What is recorded about a projector: its ``params()`` when it has them."""
    params = getattr(proj, "params", None)
    if callable(params):
        return params()
    return {"projector": type(proj).__name__, "proj_dim": int(proj.proj_dim)}
