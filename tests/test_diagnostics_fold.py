"""Faster paths of the diagnostics' loss (float64, tiny models): eval-mode batch norm folded into the
convolution before it, the cached gradient graph built in pieces, L/accuracy/∇L from that graph,
and the blocked Gram sums behind ‖Σ‖_F. Each must give the numbers of the plain computation."""
import pytest
import torch
from torch import nn

from modeldiff.diagnostics.fold import EvalBatchNorm, ScaledConv, fold_batchnorm
from modeldiff.diagnostics.hvp import TrainingLoss
from modeldiff.diagnostics.noise import gram_square_sums, sigma_frobenius

DT = torch.float64


def _randomise_bn(net, gen):
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.running_mean is not None:
                m.running_mean.uniform_(-0.3, 0.3, generator=gen)
                m.running_var.uniform_(0.4, 2.0, generator=gen)
            if m.weight is not None:
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.uniform_(-0.2, 0.2, generator=gen)
    return net


class Custom(nn.Module):
    """Batch norm as an attribute used in ``forward`` (not in a Sequential): converted, not folded."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def _nets():
    torch.manual_seed(0)
    yield "conv-bn sequential", nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2, affine=False), nn.ReLU()),
        nn.Flatten(), nn.Linear(2 * 16, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)), (1, 4, 4)
    yield "custom module", Custom(), (1, 4, 4)
    yield "conv1d", nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.BatchNorm1d(3), nn.Tanh(), nn.Flatten(),
                                  nn.Linear(3 * 5, 3)), (2, 5)


@pytest.mark.parametrize("name,net,shape", list(_nets()), ids=lambda v: v if isinstance(v, str) else "")
def test_folded_loss_equals_plain_autograd(name, net, shape):
    gen = torch.Generator().manual_seed(1)
    net = _randomise_bn(net.to(DT), gen).eval()
    x = torch.randn(9, *shape, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (9,), generator=gen)
    folded = TrainingLoss(net, x, y, batch_size=4)
    plain = TrainingLoss(net, x, y, batch_size=4, fold_batchnorm=False)
    assert folded.net is not net and plain.net is net
    assert any(isinstance(m, EvalBatchNorm) for m in folded.net.modules())
    if name != "custom module":
        assert any(isinstance(m, ScaledConv) for m in folded.net.modules())
    # the Hessian of the original module, by torch.func, independent of the fold
    params = dict(net.named_parameters())
    buffers = dict(net.named_buffers())

    def loss_of(flat):
        chunks = torch.split(flat, [p.numel() for p in params.values()])
        ps = {k: c.view(p.shape) for (k, p), c in zip(params.items(), chunks)}
        out = torch.func.functional_call(net, (ps, buffers), (x,))
        return nn.functional.cross_entropy(out, y)
    dense = torch.func.hessian(loss_of)(plain.theta)
    assert torch.allclose(folded.dense_hessian(), dense, rtol=1e-9, atol=1e-12)
    assert folded.value()[0] == pytest.approx(float(loss_of(plain.theta)), rel=1e-12)
    assert torch.allclose(folded.grad(), plain.grad(), rtol=1e-10, atol=1e-14)
    idx = torch.arange(9)
    assert torch.allclose(folded.per_example_grads(idx), plain.per_example_grads(idx), rtol=1e-10, atol=1e-14)
    # the original module is untouched and shares its tensors with the folded twin
    assert not any(isinstance(m, (EvalBatchNorm, ScaledConv)) for m in net.modules())
    for (k1, a), (k2, b) in zip(net.named_parameters(), folded.net.named_parameters()):
        assert k1 == k2 and a is b


def test_fold_leaves_batch_statistics_and_training_mode_alone():
    torch.manual_seed(0)
    batch_stats = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    assert fold_batchnorm(batch_stats) is batch_stats  # eval mode still normalises with the batch
    training = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    assert fold_batchnorm(training) is training
    hooked = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    hooked[0].register_forward_hook(lambda *a: None)  # a hook on the conv would see another output
    twin = fold_batchnorm(hooked)
    assert isinstance(twin[0], nn.Conv2d) and isinstance(twin[1], EvalBatchNorm) and not twin[1].folded


def _cnn_loss(**kw):
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 16, 3)).to(DT)
    net = _randomise_bn(net, gen).eval()
    x = torch.randn(23, 1, 4, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (23,), generator=gen)
    return TrainingLoss(net, x, y, **kw)


def test_graph_pieces_and_first_order_match_the_chunked_paths():
    one = _cnn_loss(batch_size=64, graph_chunk=1000)  # cached graph, one piece
    pieces = _cnn_loss(batch_size=64, graph_chunk=5)  # cached graph, 5 pieces
    streamed = _cnn_loss(batch_size=6)  # no cached graph: forward-over-reverse per chunk
    v = torch.randn(2, one.dim, dtype=DT, generator=torch.Generator().manual_seed(0))
    ref = streamed.hvp(v)
    assert torch.allclose(one.hvp(v), ref, rtol=1e-10, atol=1e-14)
    assert torch.allclose(pieces.hvp(v), ref, rtol=1e-10, atol=1e-14)
    assert len(pieces._graph()[1]) == 5 and pieces.hvp_count == 2
    value, acc = streamed.value()
    g = streamed.grad()
    for loss in (one, pieces, streamed):
        lv, la, lg = loss.first_order()
        assert lv == pytest.approx(value, rel=1e-12) and la == acc
        assert torch.allclose(lg, g, rtol=1e-10, atol=1e-15)
        assert loss.value() == (lv, la) and torch.allclose(loss.grad(), lg)


@pytest.mark.parametrize("m,rows", [(1, 4), (7, 3), (50, 16), (50, 1000)])
def test_blocked_gram_sums_equal_dense(m, rows):
    gc = torch.randn(m, 13, dtype=DT, generator=torch.Generator().manual_seed(m))
    gram = gc @ gc.T
    total, diag = gram_square_sums(gc, rows)
    assert total == pytest.approx(float((gram ** 2).sum()), rel=1e-12)
    assert diag == pytest.approx(float((torch.diagonal(gram) ** 2).sum()), rel=1e-12)
    n = 3 * m
    if m >= 2:  # the sampled (m < n) formula uses both sums
        off = (float((gram ** 2).sum()) - float((torch.diagonal(gram) ** 2).sum())) / (m * (m - 1))
        expect = (float((torch.diagonal(gram) ** 2).mean()) / n + (n - 1) / n * off) ** 0.5
        assert sigma_frobenius(gc, n) == pytest.approx(expect, rel=1e-12)
