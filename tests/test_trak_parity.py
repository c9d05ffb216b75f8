"""TRAK equals the reference ``traker`` package, and does not depend on how work is batched."""
import logging

import numpy as np
import pytest
import torch

from datamodels.attribution.gradients import featurize, per_example_grads
from datamodels.attribution.projectors import IdentityProjector
from datamodels.attribution.trak import TRAK
from datamodels.data.dataset import load_dataset
from datamodels.training.models import build_model
from datamodels.training.recipe import ModelConfig

trak = pytest.importorskip("trak")  # the reference implementation (dev dependency)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(data, seed, dtype=torch.float32):
    """A small digits CNN (424 parameters) with random weights and batch-norm statistics."""
    torch.manual_seed(seed)
    net = build_model(ModelConfig(arch="digits_cnn", width=2), 1, 10, (1, 8, 8), data.mean, data.std)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return net.to(dtype).eval()


def _traker_scores(data, ckpts, x, y, xt, yt, lam, tmp_path):
    from trak import TRAKer
    from trak.projectors import NoOpProjector

    tr = TRAKer(model=_model(data, 0), task="image_classification", train_set_size=len(y),
                save_dir=str(tmp_path), device="cpu", projector=NoOpProjector(device="cpu"),
                use_half_precision=False, lambda_reg=lam, logging_level=logging.ERROR)
    for i, c in enumerate(ckpts):
        tr.load_checkpoint(c, model_id=i)
        for s in range(0, len(y), 100):
            tr.featurize((x[s:s + 100], y[s:s + 100]), num_samples=len(y[s:s + 100]))
    tr.finalize_features()
    for i, c in enumerate(ckpts):
        tr.start_scoring_checkpoint("t", c, model_id=i, num_targets=len(yt))
        tr.score((xt, yt), num_samples=len(yt))
    return np.array(tr.finalize_scores("t")).T  # traker: [n_train, n_test]


@pytest.mark.parametrize("lam", [1e-3, 1e-2])
def test_identity_projection_equals_traker(digits, tmp_path, lam):
    x, y, xt, yt = digits.x_train[:500], digits.y_train[:500], digits.x_test[:30], digits.y_test[:30]
    ckpts = [_model(digits, s).state_dict() for s in range(3)]
    ref = _traker_scores(digits, ckpts, x, y, xt, yt, lam, tmp_path)

    def models():
        for i, c in enumerate(ckpts):
            net = _model(digits, 0)
            net.load_state_dict(c)
            yield i, net

    ours = TRAK(proj_dim=None, lambda_reg=lam, progress=False).run(models(), x, y, xt, yt)
    assert ours.shape == (30, 500) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


def test_per_example_grads_match_autograd_one_by_one(digits):
    net = _model(digits, 1, torch.float64)
    x, y = digits.x_train[:5].double(), digits.y_train[:5]
    grads = per_example_grads(net, x, y)
    from datamodels.margins import margin

    for i in range(5):
        net.zero_grad()
        margin(net(x[i:i + 1]), y[i:i + 1]).sum().backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-10, atol=1e-12)
    phi, q = featurize(net, x, y, IdentityProjector(sum(p.numel() for p in net.parameters())), 0)
    p = torch.softmax(net(x), -1)[torch.arange(5), y]
    torch.testing.assert_close(q, 1 - p.detach())
    assert phi.shape == (5, 424)


@pytest.mark.parametrize("projector", ["identity", "sketch", "rademacher"])
def test_batching_and_spilling_do_not_change_scores(digits, projector):
    x, y, xt, yt = digits.x_train[:60], digits.y_train[:60], digits.x_test[:11], digits.y_test[:11]
    nets = [(7 + i, _model(digits, i, torch.float64)) for i in range(2)]
    kw = {"proj_dim": None if projector == "identity" else 32, "projector": projector,
          "lambda_reg": 1e-2, "progress": False, "dtype": torch.float64}
    ref = TRAK(batch_size=60, test_block=1000, **kw).run(iter(nets), x, y, xt, yt)
    # features grown model by model and spilled (an iterator), preallocated in memory (a list: its
    # length is known), preallocated in memory-mapped files (known length, over budget)
    for models, budget in ((iter(nets), 0), (nets, 2 << 30), (nets, 0)):
        blocks = {}
        TRAK(batch_size=13, test_block=5, train_block=13, memory_budget_bytes=budget, **kw).run(
            models, x, y, xt, yt, write=lambda s, b, blocks=blocks: blocks.update({s: b}))
        assert sorted(blocks) == [0, 5, 10]
        got = np.concatenate([blocks[k] for k in sorted(blocks)])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    assert np.abs(ref).max() > 0


def test_singular_kernel_is_refused_with_advice(digits):
    x, y = digits.x_train[:50], digits.y_train[:50]
    with pytest.raises(ValueError, match="singular"):
        TRAK(proj_dim=64, progress=False).run(iter([(0, _model(digits, 0))]), x, y, x[:3], y[:3])
    with pytest.raises(ValueError, match="singular"):  # exact TRAK: 424 parameters > 50 examples
        TRAK(proj_dim=None, progress=False).run(iter([(0, _model(digits, 0))]), x, y, x[:3], y[:3])
    est = TRAK(progress=False)  # proj_dim="auto": the power of two <= 50 / 4
    scores = est.run(iter([(0, _model(digits, 0))]), x, y, x[:3], y[:3])
    assert est.proj_dim_ == 8 and np.isfinite(scores).all()
