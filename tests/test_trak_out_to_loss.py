"""TRAK without the out-to-loss term: the kernel product alone, checked against numpy on the features."""
import numpy as np
import pytest
import torch

from datamodels.attribution.gradients import featurize
from datamodels.attribution.projectors import IdentityProjector
from datamodels.attribution.trak import TRAK
from datamodels.data.dataset import load_dataset
from datamodels.training.models import build_model
from datamodels.training.recipe import ModelConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(data, seed):
    torch.manual_seed(seed)
    net = build_model(ModelConfig(arch="digits_cnn", width=2), 1, 10, (1, 8, 8), data.mean, data.std)
    return net.double().eval()


def test_scores_without_q_are_the_kernel_product_and_with_q_its_columns_scaled(digits):
    x, y, xt, yt = digits.x_train[:500], digits.y_train[:500], digits.x_test[:9], digits.y_test[:9]
    nets = [(3 + i, _model(digits, i)) for i in range(2)]
    kw = {"proj_dim": None, "lambda_reg": 1e-2, "normalize_kernel": False, "progress": False, "dtype": torch.float64}
    with_q = TRAK(**kw).run(iter(nets), x, y, xt, yt)
    est = TRAK(out_to_loss=False, **kw)
    without = est.run(iter(nets), x, y, xt, yt)
    kernel, q = 0.0, 0.0
    for mid, net in nets:  # the paper's formula, in numpy, from the per-example gradients
        proj = IdentityProjector(sum(p.numel() for p in net.parameters()))
        phi, qm = featurize(net, x, y, proj, mid, batch_size=100, progress=False)
        phi_t, _ = featurize(net, xt, yt, proj, mid, batch_size=100, with_q=False, progress=False)
        phi, phi_t = phi.numpy(), phi_t.numpy()
        inv = np.linalg.inv(phi.T @ phi + 1e-2 * np.eye(phi.shape[1]))
        kernel = kernel + phi_t @ inv @ phi.T / len(nets)
        q = q + qm.numpy() / len(nets)
    np.testing.assert_allclose(without, kernel, rtol=1e-6, atol=1e-9 * np.abs(kernel).max())
    np.testing.assert_allclose(with_q, kernel * q[None, :], rtol=1e-6, atol=1e-9 * np.abs(kernel).max())
    assert torch.equal(est.q_mean_, torch.ones(500, dtype=torch.float64))  # what TrakGroups keeps as q
    assert est.params()["out_to_loss"] is False
    assert not np.allclose(with_q, without, rtol=1e-3)  # the option changes the scores


def test_out_to_loss_must_be_a_boolean():
    with pytest.raises(ValueError, match="out_to_loss must be true or false"):
        TRAK(out_to_loss="no")
