"""The vmap backend's faster layers (datamodels/training/backends/vmap_ops.py) compute exactly what the
standard layers compute under vmap and alone: values, gradients, running statistics (float64), ties in
max-pooling included; unsupported configurations keep the standard layer."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from datamodels.training.backends.vmap import Stacked
from datamodels.training.backends.vmap_ops import (
    VmapBatchNorm2d,
    VmapConv2d,
    VmapMaxPool2d,
    speed_up,
)

M, B = 3, 5


class Net(nn.Module):
    """Every swapped layer in several configurations (bias / no bias, groups, stride, affine off)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.BatchNorm2d(6, affine=False, momentum=0.3), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 6, 2, stride=2, padding=0), nn.BatchNorm2d(6, eps=1e-3), nn.ReLU(),
            nn.MaxPool2d(3, stride=1, padding=1), nn.Flatten())
        self.head = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):
        return self.head(self.features(x - 0.5))


def _models(seed=0):
    torch.manual_seed(seed)
    return [Net().double() for _ in range(M)]


def _step(net: Stacked, x, y):
    """One training forward/backward: (logits, {name: grad})."""
    for p in net.params.values():
        p.grad = None
    net.base.train()
    logits = net.forward(x)
    F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(M, -1).mean(1).sum().backward()
    return logits.detach(), {k: p.grad.clone() for k, p in net.params.items()}


def _inputs(kind: str):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(M, B, 2, 8, 8, generator=g, dtype=torch.float64)
    if kind == "ties":  # constant patches and ReLU zeros: many equal maxima in every pooling window
        x = (x * 3).round() / 3
        x[:, :, :, :4, :4] = 0.25
    return x, torch.randint(0, 3, (M, B), generator=g)


def test_speed_up_swaps_only_supported_layers():
    net = Net()
    assert speed_up(copy.deepcopy(net)) == 3 + 3 + 2
    odd = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(2, momentum=None),
                        nn.MaxPool2d(2, return_indices=True), nn.BatchNorm1d(2))

    class MyConv(nn.Conv2d):
        pass

    odd.append(MyConv(1, 1, 1))
    assert speed_up(odd) == 0
    assert not any(isinstance(m, (VmapConv2d, VmapBatchNorm2d, VmapMaxPool2d)) for m in odd.modules())


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_fast_layers_equal_standard_vmap_values_grads_and_running_stats(kind):
    x, y = _inputs(kind)
    fast, slow = Stacked(_models()), Stacked(_models(), fast_layers=False)
    assert any(isinstance(m, VmapConv2d) for m in fast.base.modules())
    assert not any(isinstance(m, VmapConv2d) for m in slow.base.modules())
    for _ in range(2):
        (lf, gf), (ls, gs) = _step(fast, x, y), _step(slow, x, y)
        torch.testing.assert_close(lf, ls, rtol=0, atol=1e-12)
        for k in gs:
            torch.testing.assert_close(gf[k], gs[k], rtol=0, atol=1e-12, msg=k)
        for k in slow.buffers:
            torch.testing.assert_close(fast.buffers[k], slow.buffers[k], rtol=0, atol=1e-12, msg=k)
    fast.base.eval(), slow.base.eval()
    with torch.no_grad():  # evaluation: running statistics, per-model and shared inputs
        torch.testing.assert_close(fast.forward(x), slow.forward(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(fast.forward(x[0], shared_input=True), slow.forward(x[0], shared_input=True),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_fast_layers_equal_each_model_alone(kind):
    """Model i inside the stacked fast path gets the numbers (and max-pool gradient routing) it gets alone."""
    x, y = _inputs(kind)
    models = _models()
    fast = Stacked(models)
    logits, grads = _step(fast, x, y)
    for i, model in enumerate(models):
        model.train()
        model.zero_grad()
        out = model(x[i])
        F.cross_entropy(out, y[i]).backward()
        torch.testing.assert_close(logits[i], out.detach(), rtol=0, atol=1e-12)
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=0, atol=1e-12, msg=name)
        for name, buf in model.named_buffers():
            torch.testing.assert_close(fast.buffers[name][i], buf, rtol=0, atol=1e-12, msg=name)


def test_max_pool_gradient_goes_to_the_first_maximum_like_the_standard_kernel():
    x = torch.zeros(M, B, 2, 4, 4, dtype=torch.float64, requires_grad=True)  # all ties
    layer = nn.MaxPool2d(2)
    assert speed_up(layer) == 1 and isinstance(layer, VmapMaxPool2d)
    vmap(layer)(x).sum().backward()
    ref = x.detach().clone().requires_grad_()
    F.max_pool2d(ref.flatten(0, 1), 2).sum().backward()
    assert torch.equal(x.grad, ref.grad)
    assert x.grad[0, 0, 0, 0, 0] == 1 and x.grad.sum() == x.numel() / 4


def test_fast_layers_run_standard_outside_vmap_and_for_unbatched_weights():
    torch.manual_seed(0)
    plain = Net().double()
    fast = copy.deepcopy(plain)
    speed_up(fast)
    x = torch.rand(B, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=0)
    xs = torch.rand(M, B, 2, 8, 8, dtype=torch.float64)
    fast.eval(), plain.eval()  # weights shared by all vmapped inputs (not batched): the fallback rules
    params = dict(fast.named_parameters())
    out = vmap(lambda xi: functional_call(fast, params, (xi,)))(xs)
    torch.testing.assert_close(out, vmap(plain)(xs), rtol=0, atol=1e-12)


def test_stacked_conv_weights_are_laid_out_channels_last_and_unchanged():
    models = _models()
    net = Stacked(models)
    w = net.params["features.0.weight"]
    assert w.is_leaf and w.requires_grad
    assert w.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(w.detach(), torch.stack([m.features[0].weight.detach() for m in models]),
                               rtol=0, atol=0)
    torch.testing.assert_close(net.state_dict(1)["features.0.weight"], models[1].features[0].weight.detach(),
                               rtol=0, atol=0)


def test_thread_groups_split_models_evenly_on_cpu_only(monkeypatch):
    from datamodels.training.backends import vmap as vmap_backend

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert vmap_backend.THREAD_GROUPS  # on by default
    monkeypatch.setattr(vmap_backend, "THREAD_GROUPS", False)
    assert vmap_backend.thread_groups(32, "cpu") == [range(32)]
    monkeypatch.setattr(vmap_backend, "THREAD_GROUPS", True)
    assert vmap_backend.thread_groups(32, "cpu") == [range(0, 16), range(16, 32)]
    assert vmap_backend.thread_groups(15, "cpu") == [range(15)]  # fewer than 2 * MIN_GROUP models
    assert vmap_backend.thread_groups(32, "meta") == [range(32)]


def test_models_trained_in_thread_groups_equal_one_group(monkeypatch):
    """Training as 2 concurrent thread groups gives every model the numbers of one group (float64)."""
    from datamodels.data.dataset import load_digits
    from datamodels.store.store import draw_masks_and_seeds
    from datamodels.training.backends import train_models
    from datamodels.training.backends import vmap as vmap_backend
    from datamodels.training.recipe import recipe_from_dict

    data = load_digits()
    masks, seeds = draw_masks_and_seeds(seed=5, n_models=4, n_train=data.n_train, fraction=0.1)
    recipe = recipe_from_dict({"model": {"target": "tests.user_modules:small_cnn"}, "trainer": "vmap",
                               "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "precision": "float64",
                               "epochs": 1, "batch_size": 40, "augment": {"flip": False}})
    masks = torch.from_numpy(masks)
    monkeypatch.setattr(vmap_backend, "THREAD_GROUPS", False)
    one = train_models(recipe, data, masks, seeds.tolist())
    monkeypatch.setattr(vmap_backend, "THREAD_GROUPS", True)
    monkeypatch.setattr(vmap_backend, "MIN_GROUP", 2)
    steps = []
    two = train_models(recipe, data, masks, seeds.tolist(), progress=steps.append)
    assert len(vmap_backend.thread_groups(4, "cpu")) == min(2, torch.get_num_threads())
    torch.testing.assert_close(two.test_logits, one.test_logits, rtol=0, atol=1e-10)
    torch.testing.assert_close(two.train_margins, one.train_margins, rtol=0, atol=1e-10)
    for i in range(4):
        for k, v in one.state_dict(i).items():
            torch.testing.assert_close(two.state_dict(i)[k], v, rtol=0, atol=1e-10, msg=k)
    assert len(steps) == 1 * -(-int(masks[0].sum()) // 40)  # progress counted once per step, not per group


def test_an_exception_in_one_thread_group_stops_the_others(monkeypatch):
    """A progress callback that raises (the planner's early stop) stops every group, not just its own."""
    from datamodels.data.dataset import load_digits
    from datamodels.store.store import draw_masks_and_seeds
    from datamodels.training.backends import train_models
    from datamodels.training.backends import vmap as vmap_backend
    from datamodels.training.recipe import recipe_from_dict

    class Enough(Exception):
        pass

    data = load_digits()
    masks, seeds = draw_masks_and_seeds(seed=5, n_models=4, n_train=data.n_train, fraction=0.5)
    recipe = recipe_from_dict({"model": {"target": "tests.user_modules:mlp", "kwargs": {"hidden": 8}},
                               "trainer": "vmap", "optim": {"name": "sgd", "lr": 0.05}, "epochs": 50})
    monkeypatch.setattr(vmap_backend, "THREAD_GROUPS", True)
    monkeypatch.setattr(vmap_backend, "MIN_GROUP", 2)
    calls = []
    other_steps = []
    real = vmap_backend._train_group

    def counting(**kw):
        if kw["progress"] is None:  # the group that does not report: count its steps through its optimiser
            kw["progress"] = other_steps.append
        return real(**kw)

    monkeypatch.setattr(vmap_backend, "_train_group", counting)

    def stop_early(n):
        calls.append(n)
        if len(calls) == 3:
            raise Enough

    with pytest.raises(Enough):
        train_models(recipe, data, torch.from_numpy(masks), seeds.tolist(), progress=stop_early)
    if torch.get_num_threads() > 1:
        total = recipe.epochs * -(-int(masks[0].sum()) // recipe.batch_size)
        assert len(other_steps) < total // 2  # stopped long before its 50 epochs
