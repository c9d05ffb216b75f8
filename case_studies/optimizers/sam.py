"""Sharpness-aware minimisation (SAM, Foret et al. 2021) over SGD with momentum, as a user optimizer.

Recipe: ``optim: {name: "case_studies.optimizers.sam:SAM", lr: 0.05, rho: 0.05, momentum: 0.9}``
with ``trainer: loop`` (or ``auto``, which picks loop). Each step: with the gradient ``g`` at ``w``
already computed, move to ``w + rho * g / ||g||`` (``||g||`` = the norm over *all* parameters: why
SAM is not element-wise and the vmap backend refuses it), recompute the gradient there through the
closure, come back to ``w`` and take an SGD step with that gradient. (BatchNorm running statistics
are updated in both passes, as in the common SAM implementations.)
"""
from __future__ import annotations

import torch


class SAM(torch.optim.Optimizer):
    elementwise = False  # the ascent step normalises by the gradient norm over all parameters
    needs_closure = True  # step(closure) re-evaluates the loss and gradients at the perturbed weights

    def __init__(self, params, lr: float = 0.05, rho: float = 0.05, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0):
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        super().__init__(params, {"lr": lr, "rho": rho, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay})
        self.base = torch.optim.SGD(self.param_groups, lr=lr, momentum=momentum, nesterov=nesterov,
                                    weight_decay=weight_decay)
        self.param_groups = self.base.param_groups  # one set of groups: the schedule's lr reaches both

    @torch.no_grad()
    def step(self, closure):
        """One SAM step; ``closure()`` zeroes the gradients, recomputes the loss, backpropagates, returns it."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return None
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        moved = []
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is not None:
                    e = p.grad * scale
                    p.add_(e)
                    moved.append((p, e))
        with torch.enable_grad():
            loss = closure()
        for p, e in moved:
            p.sub_(e)
        self.base.step()
        return loss
