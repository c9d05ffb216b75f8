"""Faster batching rules for the layers a CNN is made of, used by the ``vmap`` backend.

Under ``torch.func.vmap`` PyTorch runs ``M`` models' convolutions as one grouped convolution but in the
NCHW layout, and batch norm / max-pooling on strided NCHW tensors, which is slow on CPU (no
channels_last inside vmap). The built-in ``ensemble`` backend is faster because it keeps activations
as ``[B, M * C, H, W]`` in channels_last. This module gives vmap the same layout: exact drop-in
subclasses of ``nn.Conv2d``, ``nn.BatchNorm2d`` and ``nn.MaxPool2d`` whose ``forward`` calls an
``autograd.Function`` with its own ``vmap`` rule. The rule receives the models' physical tensors and
runs the *same* torch operation once on all of them (a grouped convolution with ``groups * M``, batch
norm over ``M * C`` channels, pooling over ``M * C`` channels; each channel or group is computed on
its own, so model ``i``'s numbers never mix with another model's), returning the output as
``[B, M, C, H, W]`` (batch dimension 1) in channels_last memory. Autograd records these physical
operations, so gradients are the operations' own.

Outside vmap, for unsupported settings (``padding_mode`` other than zeros, pooling with
``return_indices``, batch norm with ``momentum=None``, subclasses that override ``forward``) or
when an input is batched in an unexpected way, the standard operation runs (PyTorch's own batching
rule), so the substitution never changes what a model computes.

:func:`speed_up` swaps the classes in place on a module the caller owns (the vmap backend's
stateless meta copy, never the user's module).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch._C._functorch import is_batchedtensor
from torch.func import vmap


def _batched(*tensors) -> bool:
    return any(isinstance(t, torch.Tensor) and is_batchedtensor(t) for t in tensors)


def _merge(x: torch.Tensor, bdim: int) -> torch.Tensor:
    """Physical ``x`` with the models' dimension at ``bdim`` -> ``[N, M * C, H, W]`` channels_last."""
    x = x.movedim(bdim, 1)
    n, m, c = x.shape[:3]
    return x.reshape(n, m * c, *x.shape[3:]).contiguous(memory_format=torch.channels_last)


def _split(out: torch.Tensor, m: int) -> tuple[torch.Tensor, int]:
    """``[N, M * C, H, W]`` -> ``([N, M, C, H, W], 1)`` (a view)."""
    return out.view(out.shape[0], m, out.shape[1] // m, *out.shape[2:]), 1


def _flat(t, bdim, m: int):
    """A per-model parameter ``[M, d, ...]`` (batched at ``bdim``) or an unbatched one -> ``[M * d, ...]``."""
    if t is None:
        return None
    if bdim is None:
        return t.unsqueeze(0).expand(m, *t.shape).reshape(m * t.shape[0], *t.shape[1:])
    t = t.movedim(bdim, 0)
    return t.reshape(m * t.shape[1], *t.shape[2:])


def _fallback(op, in_dims, args):
    """PyTorch's own batching rule for ``op`` on the physical tensors (output batched at 0)."""
    return vmap(op, in_dims=in_dims)(*args), 0


class _VmapOnly(torch.autograd.Function):
    """An operation differentiated only through its ``vmap`` rule: autograd records the physical
    operations the rule runs, so the Function itself saves nothing and has no backward."""

    generate_vmap_rule = False

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("vmap_ops functions are differentiable only through their vmap rule")


class _Conv2d(_VmapOnly):
    """``F.conv2d`` with a vmap rule: ``M`` models as one convolution with ``groups * M`` groups."""

    @staticmethod
    def forward(x, w, b, stride, padding, dilation, groups):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def vmap(info, in_dims, x, w, b, stride, padding, dilation, groups):
        bx, bw, bb = in_dims[:3]
        m = info.batch_size
        x_dims = x.dim() - (bx is not None)
        if bw is None or x_dims != 4 or (bx is None and groups != 1):
            return _fallback(lambda x_, w_, b_: F.conv2d(x_, w_, b_, stride, padding, dilation, groups),
                             (bx, bw, bb), (x, w, b))
        weight = _flat(w, bw, m).contiguous(memory_format=torch.channels_last)
        bias = _flat(b, bb, m)
        if bx is None:  # the same input for every model (evaluation): one convolution, M * C_out channels
            out = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias, stride, padding,
                           dilation, groups)
        else:
            out = F.conv2d(_merge(x, bx), weight, bias, stride, padding, dilation, groups * m)
        return _split(out, m)


class _BatchNorm(_VmapOnly):
    """``F.batch_norm`` on ``[N, C, H, W]`` with a vmap rule: one batch norm over ``M * C`` channels,
    updating the stacked running statistics in place."""

    @staticmethod
    def forward(x, mean, var, w, b, training, momentum, eps):
        return F.batch_norm(x, mean, var, w, b, training, momentum, eps)

    @staticmethod
    def vmap(info, in_dims, x, mean, var, w, b, training, momentum, eps):
        bx, bmean, bvar, bw, bb = in_dims[:5]
        m = info.batch_size
        stats = [(t, d) for t, d in ((mean, bmean), (var, bvar)) if t is not None]
        flat_stats = [t.movedim(d, 0) for t, d in stats if d is not None]
        if (bx is None or x.dim() != 5 or any(d is None for _, d in stats)
                or not all(t.is_contiguous() for t in flat_stats)):
            return _fallback(lambda *a: F.batch_norm(*a, training, momentum, eps),
                             (bx, bmean, bvar, bw, bb), (x, mean, var, w, b))
        run_mean = mean.movedim(bmean, 0).view(-1) if mean is not None else None  # views: updated in place
        run_var = var.movedim(bvar, 0).view(-1) if var is not None else None
        out = F.batch_norm(_merge(x, bx), run_mean, run_var, _flat(w, bw, m), _flat(b, bb, m), training,
                           momentum, eps)
        return _split(out, m)


class _MaxPool2d(_VmapOnly):
    """``F.max_pool2d`` on ``[N, C, H, W]`` with a vmap rule: one pooling over ``M * C`` channels."""

    @staticmethod
    def forward(x, kernel_size, stride, padding, dilation, ceil_mode):
        return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)

    @staticmethod
    def vmap(info, in_dims, x, kernel_size, stride, padding, dilation, ceil_mode):
        bx = in_dims[0]
        if bx is None or x.dim() != 5:
            return _fallback(lambda x_: F.max_pool2d(x_, kernel_size, stride, padding, dilation, ceil_mode),
                             (bx,), (x,))
        out = F.max_pool2d(_merge(x, bx), kernel_size, stride, padding, dilation, ceil_mode)
        return _split(out, info.batch_size)


class VmapConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zeros padding) whose vmapped call runs as one grouped channels_last convolution."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if _batched(input, self.weight, self.bias):
            return _Conv2d.apply(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                 self.groups)
        return super().forward(input)


class VmapBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (``momentum`` set) whose vmapped call runs as one batch norm over ``M * C`` channels.

    ``forward`` follows ``torch.nn.modules.batchnorm._BatchNorm.forward`` line by line."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not _batched(input, self.weight, self.bias, self.running_mean, self.running_var):
            return super().forward(input)
        self._check_input_dim(input)
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return _BatchNorm.apply(input, self.running_mean if track else None, self.running_var if track else None,
                                self.weight, self.bias, bn_training, self.momentum, self.eps)


class VmapMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (no ``return_indices``) whose vmapped call pools all models' channels at once."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if _batched(input):
            return _MaxPool2d.apply(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                    self.ceil_mode)
        return super().forward(input)


def _swap_for(module: nn.Module):
    """The faster class for ``module`` (exact type only: a subclass may override ``forward``), or None."""
    kind = type(module)
    if kind is nn.Conv2d and module.padding_mode == "zeros":
        return VmapConv2d
    if kind is nn.BatchNorm2d and module.momentum is not None:
        return VmapBatchNorm2d
    if kind is nn.MaxPool2d and not module.return_indices:
        return VmapMaxPool2d
    return None


def speed_up(module: nn.Module) -> int:
    """Swap, in place, every plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.MaxPool2d`` of ``module``
    for its vmap-friendly subclass (same parameters, buffers and results up to floating-point rounding);
    returns how many."""
    swapped = 0
    for sub in module.modules():
        cls = _swap_for(sub)
        if cls is not None:
            sub.__class__ = cls
            swapped += 1
    return swapped


def conv_weights(module: nn.Module, params: dict) -> int:
    """Re-lay, in place in ``params`` (``{name: [M, ...]}`` stacked, not yet handed to an optimiser),
    the weights of ``module``'s :class:`VmapConv2d` layers so that their ``[M * C_out, C_in, kh, kw]``
    view is channels_last already (the grouped convolution then copies nothing); returns how many."""
    done = 0
    for name, sub in module.named_modules():
        key = f"{name}.weight" if name else "weight"
        w = params.get(key)
        if isinstance(sub, VmapConv2d) and w is not None and w.dim() == 5 and w.is_leaf:
            m, o, c, kh, kw = w.shape
            laid = torch.empty_strided(w.shape, (o * c * kh * kw, c * kh * kw, 1, kw * c, c), dtype=w.dtype,
                                       device=w.device)
            params[key] = laid.copy_(w.detach()).requires_grad_(w.requires_grad)
            done += 1
    return done
