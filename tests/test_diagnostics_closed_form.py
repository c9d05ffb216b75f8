"""Sharpness and noise diagnostics against closed forms (float64, tiny models).

Linear regression (squared loss), multinomial logistic regression and a random-features model
(frozen cosine features + batch norm in eval mode + trainable linear head) have Hessians and
gradient-noise covariances that can be written down: ``H = (1/n) Σ J_iᵀ A_i J_i`` with ``J_i`` the
(parameter-independent) Jacobian of the outputs, ``g_i = J_iᵀ r_i``. Every estimator is checked
against these matrices, formed explicitly here (never by the code under test).
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from modeldiff.diagnostics.hutchinson import frobenius_squared
from modeldiff.diagnostics.hvp import TrainingLoss
from modeldiff.diagnostics.lanczos import lanczos
from modeldiff.diagnostics.model import DiagnosticSettings, diagnose_model, optimizer_terms
from modeldiff.diagnostics.noise import noise_diagnostics, sample_indices, sigma_frobenius
from modeldiff.diagnostics.summary import mean_ci

DT = torch.float64


class RandomFeatures(nn.Module):
    """``x -> head(BN_eval(cos(W x + b)))``: only the head is trained; BN has frozen running stats."""

    def __init__(self, p, width, k, gen):
        super().__init__()
        self.register_buffer("w", torch.randn(width, p, generator=gen, dtype=DT))
        self.register_buffer("b", torch.rand(width, generator=gen, dtype=DT) * 2 * math.pi)
        self.bn = nn.BatchNorm1d(width, affine=False).to(DT)
        self.bn.running_mean.uniform_(-0.3, 0.3, generator=gen)
        self.bn.running_var.uniform_(0.3, 1.5, generator=gen)
        self.head = nn.Linear(width, k).to(DT)

    def features(self, x):
        return self.bn(torch.cos(x @ self.w.T + self.b))

    def forward(self, x):
        return self.head(self.features(x))


def _problem(kind: str, seed: int = 0):
    """``(model, x, y, loss_fn, phi, outputs)`` with ``phi[n, p+1]`` the features entering the linear head."""
    gen = torch.Generator().manual_seed(seed)
    n, p, k = 60, 4, 3
    x = torch.randn(n, p, generator=gen, dtype=DT)
    torch.manual_seed(seed)
    if kind == "linear":
        model = nn.Linear(p, 1).to(DT)
        y = x @ torch.randn(p, generator=gen, dtype=DT) + 0.5 * torch.randn(n, generator=gen, dtype=DT)
        loss_fn = lambda out, t: 0.5 * (out[:, 0] - t) ** 2  # noqa: E731
        feats = x
    elif kind == "logistic":
        model = nn.Linear(p, k).to(DT)
        y = torch.randint(0, k, (n,), generator=gen)
        loss_fn = None  # cross-entropy
        feats = x
    else:
        model = RandomFeatures(p, 30, k, gen)
        y = torch.randint(0, k, (n,), generator=gen)
        loss_fn = None
        with torch.no_grad():
            model.eval()
            feats = model.features(x)
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(3.0)  # away from the origin: non-trivial curvature and noise
    return model.eval(), x, y, loss_fn, feats


def _closed_form(kind, model, feats, y):
    """``(H, Σ, L)`` as dense float64 arrays from the linear-head structure."""
    head = model if isinstance(model, nn.Linear) else model.head
    wgt, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
    phi = np.concatenate([feats.numpy(), np.ones((len(feats), 1))], 1)  # [n, q]
    n, q = phi.shape
    k = wgt.shape[0]
    # parameter order: weight [k, q-1] row-major, then bias [k]
    def jac(i):
        j = np.zeros((k, k * q))
        for c in range(k):
            j[c, c * (q - 1):(c + 1) * (q - 1)] = phi[i, :-1]
            j[c, k * (q - 1) + c] = 1.0
        return j
    z = phi[:, :-1] @ wgt.T + bias  # [n, k]
    hs, gs, losses = [], [], []
    for i in range(n):
        ji = jac(i)
        if kind == "linear":
            r = z[i, 0] - y[i].item()
            a, res, loss = np.ones((1, 1)), np.array([r]), 0.5 * r ** 2
        else:
            pr = np.exp(z[i] - z[i].max())
            pr /= pr.sum()
            a = np.diag(pr) - np.outer(pr, pr)
            e = np.zeros(k)
            e[int(y[i])] = 1
            res, loss = pr - e, -np.log(pr[int(y[i])])
        hs.append(ji.T @ a @ ji)
        gs.append(ji.T @ res)
        losses.append(loss)
    h = np.mean(hs, 0)
    g = np.array(gs)
    gc = g - g.mean(0)
    sigma = gc.T @ gc / n
    return h, sigma, float(np.mean(losses))


KINDS = ["linear", "logistic", "random_features"]


@pytest.fixture(scope="module", params=KINDS)
def case(request):
    model, x, y, loss_fn, feats = _problem(request.param)
    h, sigma, loss_value = _closed_form(request.param, model, feats, y)
    loss = TrainingLoss(model, x, y, loss_fn, batch_size=16)
    return request.param, loss, h, sigma, loss_value


def test_hvp_matches_closed_form_hessian(case):
    _, loss, h, _, loss_value = case
    assert np.allclose(loss.dense_hessian().numpy(), h, rtol=1e-10, atol=1e-12)
    assert loss.value()[0] == pytest.approx(loss_value, rel=1e-12)
    assert loss.dim == h.shape[0]


def test_lambda_max_by_lanczos(case):
    _, loss, h, _, _ = case
    lz = lanczos(loss.hvp, loss.dim, steps=40, tol=1e-10, seed=3, dtype=DT)
    assert lz["lambda_max"] == pytest.approx(np.linalg.eigvalsh(h)[-1], rel=1e-3)
    assert lz["converged"]
    # the basis is orthonormal and T = VᵀHV, HV = VT + β v⁺ e_kᵀ
    v = lz["basis"].numpy()
    assert np.allclose(v @ v.T, np.eye(len(v)), atol=1e-10)
    assert np.allclose(lz["t"].numpy(), v @ h @ v.T, atol=1e-9 * np.abs(h).max())
    assert lz["h_basis_norm2"] == pytest.approx(np.sum((v @ h) ** 2), rel=1e-10)


def test_hessian_frobenius_to_1e3(case):
    _, loss, h, _, _ = case
    truth = np.linalg.norm(h)
    lz = lanczos(loss.hvp, loss.dim, steps=30, tol=0.0, seed=1, dtype=DT)  # deflate 30 directions
    est = frobenius_squared(loss.hvp_blocks, loss.dim, probes=100, basis=lz["basis"],
                            basis_h_norm2=lz["h_basis_norm2"], seed=2, dtype=DT)
    assert est["hessian_fro"] == pytest.approx(truth, rel=1e-3)
    assert abs(est["hessian_fro"] - truth) <= 5 * est["hessian_fro_se"] + 1e-12 * truth


def test_trace_sigma_h_and_alignment_exact(case):
    kind, loss, h, sigma, loss_value = case
    st = DiagnosticSettings(lanczos_steps=loss.dim, lanczos_tol=0.0, probes=4, trace_examples=0, seed=0)
    out = diagnose_model(loss, st)
    tr = float(np.trace(sigma @ h))
    assert out["trace_sigma_h"] == pytest.approx(tr, rel=1e-8)
    assert out["trace_sigma_h_se"] == 0
    assert out["sigma_fro"] == pytest.approx(np.linalg.norm(sigma), rel=1e-10)
    assert out["trace_sigma"] == pytest.approx(np.trace(sigma), rel=1e-10)
    # Krylov space exhausted: ‖H‖_F is exact (no probe remainder left)
    assert out["hessian_fro"] == pytest.approx(np.linalg.norm(h), rel=1e-8)
    assert out["alignment"] == pytest.approx(tr / (np.linalg.norm(sigma) * np.linalg.norm(h)), rel=1e-7)
    assert out["alignment_mu"] == pytest.approx(tr / (2 * loss_value * np.linalg.norm(h) ** 2), rel=1e-7)
    assert -1 <= out["alignment"] <= 1


def test_trace_sigma_h_exact_without_and_with_short_basis(case):
    """All examples: exact whatever the basis (the in-basis part plus the exact remainder)."""
    _, loss, h, sigma, _ = case
    g = loss.grad()
    tr = float(np.trace(sigma @ h))
    assert noise_diagnostics(loss, g)["trace_sigma_h"] == pytest.approx(tr, rel=1e-9)
    lz = lanczos(loss.hvp, loss.dim, steps=3, tol=0.0, seed=5, dtype=DT)
    out = noise_diagnostics(loss, g, lanczos_result=lz)
    assert out["trace_sigma_h"] == pytest.approx(tr, rel=1e-9)
    assert out["exact"]


def test_sampled_sigma_frobenius_is_unbiased():
    _, loss, _, sigma, _ = next(_cases(["logistic"]))
    gc = loss.per_example_grads(torch.arange(loss.n)) - loss.grad()
    assert sigma_frobenius(gc, loss.n) == pytest.approx(np.linalg.norm(sigma), rel=1e-10)
    vals = [sigma_frobenius(gc[sample_indices(loss.n, 20, s)], loss.n) ** 2 for s in range(400)]
    truth = np.linalg.norm(sigma) ** 2
    se = np.std(vals, ddof=1) / math.sqrt(len(vals))
    assert abs(np.mean(vals) - truth) < 4 * se


def _cases(kinds):
    for kind in kinds:
        model, x, y, loss_fn, feats = _problem(kind)
        h, sigma, loss_value = _closed_form(kind, model, feats, y)
        yield kind, TrainingLoss(model, x, y, loss_fn, batch_size=64), h, sigma, loss_value


def test_hutchinson_error_bars_cover_at_nominal_rate():
    """95 % t-intervals on tr(H²) cover the truth in 85–100 % of 100 seeded runs (plain and deflated)."""
    _, loss, h, _, _ = next(_cases(["random_features"]))
    truth = float(np.sum(h ** 2))
    lz = lanczos(loss.hvp, loss.dim, steps=3, tol=0.0, seed=99, dtype=DT)
    dense = torch.as_tensor(h)  # the estimator's statistics do not depend on how H v is computed
    for basis in (None, lz):
        covered = 0
        for seed in range(100):
            kw = {"basis": basis["basis"], "basis_h_norm2": basis["h_basis_norm2"]} if basis else {}
            est = frobenius_squared(lambda v: v @ dense, loss.dim, probes=20, seed=seed, dtype=DT, **kw)
            lo, hi = est["trace_h2_ci"]
            covered += lo <= truth <= hi
        assert 85 <= covered <= 100, (basis is not None, covered)


def test_trace_sigma_h_error_bars_cover_at_nominal_rate():
    _, loss, h, sigma, _ = next(_cases(["logistic"]))
    truth = float(np.trace(sigma @ h))
    g = loss.grad()
    lz = lanczos(loss.hvp, loss.dim, steps=2, tol=0.0, seed=7, dtype=DT)
    covered = 0
    for seed in range(100):
        out = noise_diagnostics(loss, g, examples=2, trace_examples=20, lanczos_result=lz, seed=seed)
        covered += abs(out["trace_sigma_h"] - truth) <= 1.96 * out["trace_sigma_h_se"]
    assert 85 <= covered <= 100, covered


def test_batch_size_does_not_change_results():
    model, x, y, _, _ = _problem("random_features")
    a, b = TrainingLoss(model, x, y, batch_size=7), TrainingLoss(model, x, y, batch_size=1000)
    v = torch.randn(3, a.dim, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.hvp(v), b.hvp(v), rtol=1e-12, atol=1e-14)
    assert torch.allclose(a.grad(), b.grad(), rtol=1e-12, atol=1e-15)
    assert torch.allclose(a.per_example_grads(torch.arange(10)), b.per_example_grads(torch.arange(10)))


def test_cnn_with_batchnorm_hvp_equals_autograd_hessian():
    """Any module: a tiny conv net with batch norm (eval mode) against torch.func.hessian."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).to(DT)
    net[1].running_mean.uniform_(-0.2, 0.2)
    net[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(10, 1, 6, 6, dtype=DT)
    y = torch.randint(0, 3, (10,))
    loss = TrainingLoss(net, x, y, batch_size=4)
    assert not net.training
    dense = torch.func.hessian(lambda th: loss._sum_loss(th, x, y) / loss.n)(loss.theta)
    assert torch.allclose(loss.dense_hessian(), dense, rtol=1e-9, atol=1e-11)
    lz = lanczos(loss.hvp, loss.dim, steps=loss.dim, tol=1e-12, seed=0, dtype=DT)
    assert lz["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-6)


def _sgd_diverges(lam, lr, beta, nesterov):
    th = torch.tensor([1.0], dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([th], lr=lr, momentum=beta, nesterov=nesterov)
    for _ in range(800):
        opt.zero_grad()
        (0.5 * lam * th ** 2).sum().backward()
        opt.step()
    return not float(th.detach().abs()) < 1


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_edge_of_stability_threshold(nesterov):
    entry = {"lambda_max": 1.0, "hessian_fro": 1.0, "alignment_mu": 1.0}
    thr = optimizer_terms(entry, 0.1, 16, momentum=0.9, nesterov=nesterov)["eos_threshold_momentum"]
    assert not _sgd_diverges(0.98 * thr, 0.1, 0.9, nesterov)
    assert _sgd_diverges(1.02 * thr, 0.1, 0.9, nesterov)


def test_mean_ci():
    s = mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert s["mean"] == 2.0 and s["n"] == 3
    assert s["ci_low"] == pytest.approx(2 - 4.302652729911275 * 1 / math.sqrt(3))
    assert mean_ci([5.0])["ci_low"] is None and mean_ci([])["mean"] is None
