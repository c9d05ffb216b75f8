"""The ``vmap`` backend: ``M`` copies of any ``nn.Module`` trained at once with ``torch.func``.

The models' parameters and buffers are stacked into ``[M, ...]`` tensors once
(``torch.func.stack_module_state``) and stay stacked: every step runs
``vmap(functional_call(module, (params, buffers), x))`` on ``x[M, b, *input_shape]`` (model ``i``
sees its own batch), sums the per-model mean losses, backpropagates and applies the recipe's
optimiser to the stacked tensors. That is exact, i.e. model ``i`` gets the numbers it would get
alone, when the optimiser is element-wise (:func:`~datamodels.training.optimizers.vmap_refusal`);
other optimisers are refused. Buffers (BatchNorm running statistics) are updated per model.
Random operations inside the model (dropout) cannot be reproduced per model under vmap: such a
model is refused with :class:`VmapUnsupported` (``trainer: auto`` then falls back to ``loop``).

Speed (CPU): the stateless copy's plain ``Conv2d`` / ``BatchNorm2d`` / ``MaxPool2d`` layers get batching
rules that run all models as one channels_last grouped operation (:mod:`.vmap_ops`, same numbers up to
rounding); evaluation passes ``max(32, 1024 // M)`` examples at a time. With 16 or more models
on a multi-thread CPU the models train as concurrent groups, one per CPU thread (:func:`thread_groups`).
"""
from __future__ import annotations

import copy
import threading

import torch
from torch.func import functional_call, stack_module_state, vmap

from datamodels.base.errors import UserError
from datamodels.training.backends.common import (
    EVAL_BATCH,
    as_input,
    autocast,
    check_data,
    check_model,
    dtype_of,
    epoch_draw,
    equal_subsets,
    finish,
    gather_batch,
    model_generator,
    steps_per_epoch,
)
from datamodels.training.backends.vmap_ops import conv_weights, speed_up
from datamodels.training.fit import FitRecord, FitTracker, subset_fit
from datamodels.training.losses import make_loss
from datamodels.training.model_factory import DataSpec, init_module
from datamodels.training.optimizers import make_optimizer, needs_closure, set_lr, vmap_refusal
from datamodels.training.schedule import lr_at


class VmapUnsupported(UserError):
    """The model or optimiser cannot be trained exactly under vmap (the reason is the message)."""


class Stacked:
    """``M`` models as one set of stacked tensors plus a stateless copy of the module.

    ``params``/``buffers``: ``{name: [M, ...]}``; ``forward(x[M, b, ...]) -> [M, b, K]``.
    """

    def __init__(self, modules, fast_layers: bool = True):
        self.params, self.buffers = stack_module_state(modules)
        self.base = copy.deepcopy(modules[0]).to("meta")
        if fast_layers:  # our own copy: plain Conv2d/BatchNorm2d/MaxPool2d get channels_last batching rules
            speed_up(self.base)
            conv_weights(self.base, self.params)
        self.n_models = len(modules)
        names = {id(t): n for n, t in modules[0].named_parameters()}  # the names stack_module_state uses
        names.update({id(t): n for n, t in modules[0].named_buffers()})
        self.keys = {k: names.get(id(v), k) for k, v in modules[0].state_dict(keep_vars=True).items()}

    def _call(self, params, buffers, x):
        return functional_call(self.base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """Logits ``[M, b, K]`` of ``x[M, b, ...]`` (or of the same ``x[b, ...]`` for all when ``shared_input``)."""
        fn = vmap(self._call, in_dims=(0, 0, None if shared_input else 0), randomness="error")
        try:
            return fn(self.params, self.buffers, x)
        except RuntimeError as err:
            text = str(err)
            if "randomness" in text or "vmap" in text.lower() or "Batching rule not implemented" in text:
                raise VmapUnsupported(f"model {type(self.base).__name__} cannot run under vmap "
                                      f"({text.splitlines()[0][:160]}): use trainer: loop") from None
            raise

    def state_dict(self, i: int) -> dict:
        """Model ``i``'s state dict (CPU), loadable into the module."""
        out = {}
        for key, name in self.keys.items():
            source = self.params if name in self.params else self.buffers
            out[key] = source[name][i].detach().cpu().clone()
        return out

    @torch.no_grad()
    def load_single(self, i: int, state: dict) -> None:
        """Write model ``i``'s state dict (as :meth:`state_dict` gives it) back into the stacked tensors."""
        for key, name in self.keys.items():
            source = self.params if name in self.params else self.buffers
            source[name][i].copy_(state[key])

    def finite(self) -> torch.Tensor:
        """``[M]`` bool: every floating parameter and buffer of model ``i`` is finite."""
        ok = torch.ones(self.n_models, dtype=torch.bool)
        for t in (*self.params.values(), *self.buffers.values()):
            if t.is_floating_point():
                ok &= torch.isfinite(t.detach().reshape(self.n_models, -1)).all(1).cpu()
        return ok


THREAD_GROUPS = True  # on: on a quiet 2-core CPU 1.07-1.35x the models/min of one group (digits CNN, 32 models;
# benchmarks/README.md); under heavy load mixed. A/B it with own_algorithm.py --one-group
MIN_GROUP = 8  # fewest models per thread group (below that, intra-op threads serve better)


def thread_groups(n_models: int, device) -> list[range]:
    """Split ``n_models`` into one contiguous group per CPU thread (``torch.get_num_threads()``), each
    of at least :data:`MIN_GROUP` models; one group on an accelerator, without OpenMP, or when too few
    models, or when :data:`THREAD_GROUPS` is unset.

    Groups train concurrently, one Python thread each with ``threads / groups`` intra-op threads, in
    independent models on separate cores scale better than each small operation split across cores.
    Exact: models never interact."""
    n_groups = max(1, min(torch.get_num_threads(), n_models // MIN_GROUP))
    per_thread = torch.backends.openmp.is_available()  # OpenMP: set_num_threads is per OS thread
    if not THREAD_GROUPS or torch.device(device).type != "cpu" or n_groups == 1 or not per_thread:
        return [range(n_models)]
    bounds = [round(g * n_models / n_groups) for g in range(n_groups + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def train_vmap(recipe, data, masks, seeds, device="cpu", init_state=None, train_margins=True, progress=None,
               search_path=None):
    """Train ``M = len(seeds)`` models at once; returns a
    :class:`~datamodels.training.backends.common.TrainResult`.

    ``masks``: ``[M, n_train]`` bool, every row keeping the same number of examples. With
    :data:`THREAD_GROUPS` on a multi-thread CPU the models train as :func:`thread_groups` (each model's
    numbers do not depend on the grouping beyond floating-point rounding of the grouped operations).
    """
    reason = vmap_refusal(recipe.optim)
    if reason:
        raise VmapUnsupported(f"trainer vmap refused: {reason}")
    check_data(recipe, data)
    masks = torch.as_tensor(masks, dtype=torch.bool)
    m, n_models = equal_subsets(masks), len(seeds)
    dtype, spec = dtype_of(recipe), DataSpec.of(data)
    modules = [init_module(recipe.model, spec, s, init_state, recipe.init.reset_head, search_path).to(device, dtype)
               for s in seeds]
    check_model(modules[0], recipe, data, device, dtype)
    x_all, y_all = as_input(data.x_train, device, dtype), data.y_train.to(device)
    groups = thread_groups(n_models, device)
    jobs = [dict(net=Stacked([modules[i] for i in g]), masks=masks[g.start:g.stop], seeds=list(seeds[g.start:g.stop]),
                 progress=progress if k == 0 else None) for k, g in enumerate(groups)]  # group 0 reports progress
    del modules
    common = dict(recipe=recipe, data=data, m=m, x_all=x_all, y_all=y_all, device=device, dtype=dtype,
                  train_margins=train_margins)
    if len(jobs) == 1:
        outs = [_train_group(**jobs[0], **common)]
    else:
        stop = threading.Event()  # set when a group raises (e.g. a progress callback stopping early)
        outs = _in_threads([lambda job=job: _train_group(**job, **common, stop=stop) for job in jobs],
                           max(1, torch.get_num_threads() // len(jobs)), stop)
    nets = [job["net"] for job in jobs]
    where = [(k, i) for k, g in enumerate(groups) for i in range(len(g))]
    test_logits = torch.cat([o[0] for o in outs])
    train_logits = torch.cat([o[1] for o in outs]) if train_margins else None
    return finish(test_logits, train_logits, data, torch.cat([o[2] for o in outs]),
                  lambda i: nets[where[i][0]].state_dict(where[i][1]), "vmap",
                  finite=torch.cat([net.finite() for net in nets]), fit=FitRecord.stack([o[3] for o in outs]))


def _in_threads(fns, threads_each: int, stop: threading.Event) -> list:
    """Run ``fns`` concurrently, one Python thread each using ``threads_each`` intra-op threads;
    their results in order. The first exception raised sets ``stop`` (the others return early) and is
    re-raised here."""
    results, errors = [None] * len(fns), [None] * len(fns)
    before = torch.get_num_threads()

    def work(k):
        try:
            torch.set_num_threads(threads_each)  # per OS thread under OpenMP
            results[k] = fns[k]()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            errors[k] = err
            stop.set()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.set_num_threads(before)
    for err in errors:
        if err is not None:
            raise err
    return results


def _train_group(net, masks, seeds, progress, recipe, data, m, x_all, y_all, device, dtype, train_margins,
                 stop: threading.Event | None = None):
    """Train one group's stacked models; ``(test_logits[G, n_test, K], train_logits or None, diverged[G],
    FitRecord)``, or None when ``stop`` was set by another group."""
    n_models = len(seeds)
    subsets = torch.stack([torch.nonzero(mask).squeeze(1) for mask in masks])  # [G, m]
    gens = [model_generator(s) for s in seeds]
    loss_fn = make_loss(recipe)
    per_model_loss = _per_model_loss(recipe, loss_fn)
    opt = make_optimizer([p for p in net.params.values() if p.requires_grad], recipe.optim)
    closure_step = needs_closure(opt)
    tracker = FitTracker(recipe, n_models, steps_per_epoch(m, recipe))
    total = steps_per_epoch(m, recipe) * tracker.epochs  # under until: the schedule is laid over max_epochs
    diverged = torch.zeros(n_models, dtype=torch.bool, device=device)

    def measure():
        """Every model's eval-mode loss and accuracy on its own subset ``([G], [G])``."""
        net.base.eval()
        with autocast(recipe, device):
            out = subset_fit(net.forward, x_all, y_all, subsets.to(device), loss_fn, max(32, EVAL_BATCH // n_models))
        net.base.train()
        return out

    step = 0
    net.base.train()
    for epoch in range(tracker.epochs):
        live = (~tracker.stopped).to(device)
        draws = [epoch_draw(g, m, recipe, data) for g in gens]
        order = torch.stack([s[d.order] for s, d in zip(subsets, draws)]).to(device)  # [G, m]
        tracker.checks_in_epoch(epoch)
        for in_epoch, start in enumerate(range(0, m, recipe.batch_size), 1):
            if stop is not None and stop.is_set():
                return None
            xb, yb = gather_batch(x_all, y_all, order, draws, start, recipe)
            set_lr(opt, lr_at(step, total, recipe.optim))

            def closure(xb=xb, yb=yb):
                opt.zero_grad(set_to_none=True)
                with autocast(recipe, device):
                    logits = net.forward(xb)
                losses = per_model_loss(logits, yb)  # [G]
                finite = torch.isfinite(losses)
                torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
                return losses

            losses = closure()
            diverged |= ~torch.isfinite(losses.detach()) & live  # models that met the target: restored below
            opt.step(closure) if closure_step else opt.step()
            step += 1
            if progress is not None:
                progress(1)
            if tracker.after_step(epoch, in_epoch, measure, net.state_dict):
                break
        if bool(tracker.stopped.all()):
            break
        measured = measure() if tracker.needs_eval(epoch) else (None, None)
        if tracker.after_epoch(epoch, *measured, net.state_dict):
            break
    for i, state in tracker.snapshots.items():
        net.load_single(i, state)
    net.base.eval()
    test_logits = predict_stacked(net, data.x_test, device, dtype, recipe)
    train_logits = predict_stacked(net, data.x_train, device, dtype, recipe) if train_margins else None
    return test_logits, train_logits, diverged.cpu(), FitRecord.of(tracker)


def _per_model_loss(recipe, loss_fn):
    """``(logits[M, b, K], y[M, b]) -> [M]`` batch-mean loss per model."""
    if recipe.loss == "cross_entropy":  # per-example by construction: one call on the flattened batch
        return lambda logits, y: loss_fn(logits.flatten(0, 1), y.flatten()).view(y.shape).mean(1)
    return vmap(lambda logits, y: loss_fn(logits, y).mean())  # the user's loss sees one model's batch


@torch.no_grad()
def predict_stacked(net: Stacked, x: torch.Tensor, device, dtype, recipe, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Logits ``[M, n, K]`` (float32, CPU) of every model (eval mode) on the same ``x[n, ...]``.

    ``batch`` examples per pass for all ``M`` models together (activations ``M`` times a model's): each
    pass takes ``max(32, batch // M)`` examples, which keeps them in cache (~3x faster for 32 CNNs)."""
    net.base.eval()
    batch = max(32, batch // net.n_models)
    outs = []
    for start in range(0, len(x), batch):
        with autocast(recipe, device):
            outs.append(net.forward(as_input(x[start:start + batch], device, dtype), shared_input=True).float().cpu())
    return torch.cat(outs, 1)
