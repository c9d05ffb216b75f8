"""The training benchmark's plain reference network is the ensemble trainer's ``digits_cnn``.

``benchmarks/train_throughput.py`` compares the ensemble trainer with a plain PyTorch loop; the
comparison is only fair if both train the same function. Checked in float64: the same weights
give the same logits.
"""
import pytest
import torch

from benchmarks._support.plain_digits import plain_cnn, train_plain
from datamodels.data.dataset import load_digits
from datamodels.training.models import extract_single, init_ensemble
from datamodels.training.recipe import recipe_from_dict


@pytest.mark.parametrize("width", [4, 8])
def test_plain_reference_computes_the_same_function(width):
    data = load_digits()
    recipe = recipe_from_dict({"model": {"arch": "digits_cnn", "width": width}})
    ens = init_ensemble(recipe.model, [5], data.num_classes, data.image_shape, data.mean, data.std).double()
    single = {k: v for k, v in extract_single(ens, 0).items() if v.dim() > 0}
    plain = plain_cnn(width, data.num_classes, data.mean[0], data.std[0]).double()
    plain_state = {k: v for k, v in plain.state_dict().items() if v.dim() > 0}
    assert [v.shape for v in single.values()] == [v.shape for v in plain_state.values()]
    plain.load_state_dict({**plain.state_dict(), **dict(zip(plain_state, single.values()))})
    with torch.no_grad():
        for module in (ens, plain):  # non-trivial batch-norm statistics
            for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
                bn.running_mean.fill_(0.1)
                bn.running_var.fill_(2.0)
        ens.eval(), plain.eval()
        x = data.x_test[:64].double()
        torch.testing.assert_close(plain(x), ens(x), rtol=0, atol=1e-10)


def test_plain_reference_refuses_other_architectures():
    data = load_digits()
    recipe = recipe_from_dict({"model": {"arch": "linear"}})
    with pytest.raises(SystemExit, match="digits_cnn"):
        train_plain(recipe, data, torch.ones(data.n_train, dtype=torch.bool).numpy(), 0)
