"""Eval-mode batch norm as an explicit affine map, folded into the convolution before it: the same
function of the same parameters, with cheaper Hessian-vector products.

In eval mode (running statistics) batch norm is ``y = x·s + (β − μ·s)`` with ``s = γ/√(σ² + ε)``.
PyTorch's ``native_batch_norm`` double backward is generic (it serves training mode too) and costs
about a third of a digits CNN's HVP; written as broadcast arithmetic it is cheap, and when the batch
norm directly follows a convolution in an ``nn.Sequential`` the scale can be moved onto the weight:
``BN(conv(x, W) + b) = conv(x, W·s) + (b·s + β − μ·s)``, so no activation-sized multiply is left at
all. Parameters and buffers are the very same tensors under the same names (so ``functional_call``
with the original names works); only the arithmetic changes, so ``L(θ)``, ``∇L`` and ``H`` are
those of the original module (equal up to rounding).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

_CONV_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _is_eval_bn(m: nn.Module) -> bool:
    """A stock batch norm that normalises with its running statistics (eval mode)."""
    return (isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m).forward is nn.modules.batchnorm._BatchNorm.forward
            and not m.training and m.track_running_stats and m.running_mean is not None
            and m.running_var is not None and not _has_hooks(m))


class EvalBatchNorm(nn.Module):
    """Eval-mode batch norm ``x·s + (β − μ·s)`` over dim 1; ``folded``: the conv before it applied ``s``."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.weight, self.bias = bn.weight, bn.bias  # Parameters or None: registered under the same names
        for name, buf in bn.named_buffers(recurse=False):
            self.register_buffer(name, buf)
        self.eps = float(bn.eps)
        self.num_features = int(bn.num_features)
        self.folded = False

    def scale(self) -> torch.Tensor:
        """``s[C] = γ/√(σ² + ε)`` (``γ = 1`` without affine parameters)."""
        inv = torch.rsqrt(self.running_var + self.eps)
        return inv if self.weight is None else self.weight * inv

    def shift(self, s: torch.Tensor) -> torch.Tensor:
        """``β − μ·s`` (``β = 0`` without affine parameters)."""
        shift = -self.running_mean * s
        return shift if self.bias is None else shift + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded:  # the convolution before applied scale and shift
            return x
        s = self.scale()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * s.view(shape) + self.shift(s).view(shape)


class ScaledConv(nn.Module):
    """``conv(x, W·s, b·s + β − μ·s)``: a convolution and the eval-mode batch norm after it (which then passes through)."""

    def __init__(self, conv: nn.modules.conv._ConvNd, bn: EvalBatchNorm):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        object.__setattr__(self, "_conv", conv)  # not registered: its parameters are ours
        object.__setattr__(self, "_bn", bn)  # registered where it sits in the Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._bn.scale()
        w = self.weight * s.view((-1,) + (1,) * (self.weight.dim() - 1))
        b = self._bn.shift(s)
        if self.bias is not None:
            b = b + self.bias * s
        return self._conv._conv_forward(x, w, b)


def _convert(module: nn.Module) -> int:
    changed = 0
    for name, child in list(module.named_children()):
        if _is_eval_bn(child):
            setattr(module, name, EvalBatchNorm(child))
            changed += 1
        else:
            changed += _convert(child)
    if isinstance(module, nn.Sequential):
        items = list(module._modules.items())
        for (prev_name, prev), (_, nxt) in zip(items, items[1:]):
            if (isinstance(nxt, EvalBatchNorm) and isinstance(prev, nn.modules.conv._ConvNd)
                    and type(prev).forward in _CONV_FORWARDS and not _has_hooks(prev)
                    and prev.out_channels == nxt.num_features):
                nxt.folded = True
                module._modules[prev_name] = ScaledConv(prev, nxt)
    return changed


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A module computing ``model``'s function with eval-mode batch norms as (folded) affine maps.

    Shares every parameter and buffer with ``model`` (same names, same order); ``model`` itself is
    not modified. Batch norms in training mode, without running statistics, subclasses with their
    own ``forward`` or with hooks are left alone. Returns ``model`` itself when nothing changes
    (or when the names would not match).
    """
    tensors = list(model.parameters()) + list(model.buffers())
    try:
        twin = copy.deepcopy(model, memo={id(t): t for t in tensors})
    except (TypeError, RuntimeError, copy.Error):  # a module that cannot be copied: keep the stock arithmetic
        return model
    if not _convert(twin):
        return model
    same = ([k for k, _ in model.named_parameters()] == [k for k, _ in twin.named_parameters()]
            and [k for k, _ in model.named_buffers()] == [k for k, _ in twin.named_buffers()]
            and all(a is b for (_, a), (_, b) in zip(model.named_parameters(), twin.named_parameters())))
    return twin if same else model
