"""TRAK's model output receives the model and the batch (trak / kronfluence style); the older form that
receives the logits is adapted; all forms give identical features, and a two-input model is expressible."""
import torch
from torch import nn

from datamodels.attribution.gradients import LogitsOutput, featurize, resolve_model_output
from datamodels.attribution.projectors import IdentityProjector
from datamodels.margins import margin


class TwoInputs(nn.Module):
    """logits = A a + B b for inputs a[B, 4], b[B, 4]."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3, bias=False)

    def forward(self, a, b):
        return self.a(a) + self.b(b)


class Packed(nn.Module):
    """The same network taking one input x[B, 2, 4]."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x[:, 0], x[:, 1])


def two_input_output(model, batch):
    x, y = batch
    logits = model(x[:, 0], x[:, 1])
    return margin(logits, y), 1 - logits.softmax(-1).gather(1, y[:, None]).squeeze(1)


class LogitsMargin:
    def output(self, out, y):
        return margin(out, y)

    def out_to_loss(self, out, y):
        return 1 - out.softmax(-1).gather(1, y[:, None]).squeeze(1)


def _features(model, x, y, spec):
    out, _ = resolve_model_output(spec)
    proj = IdentityProjector(sum(p.numel() for p in model.parameters()))
    return featurize(model, x, y, proj, 0, batch_size=4, model_output=out)


def test_every_form_gives_the_default_features():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    phi, q = _features(net, x, y, "margin")
    for spec in (LogitsMargin(), lambda out, y: (margin(out, y), LogitsMargin().out_to_loss(out, y)),
                 lambda model, batch: (margin(model(batch[0]), batch[1]),
                                       LogitsMargin().out_to_loss(model(batch[0]), batch[1]))):
        phi2, q2 = _features(net, x, y, spec)
        assert torch.equal(phi, phi2) and torch.equal(q, q2)
    assert isinstance(resolve_model_output(LogitsMargin())[0], LogitsOutput)


def test_a_two_input_model_through_the_batch():
    torch.manual_seed(1)
    two = TwoInputs().double()
    x, y = torch.randn(9, 2, 4, dtype=torch.float64), torch.randint(0, 3, (9,))
    phi, q = _features(two, x, y, two_input_output)
    ref_phi, ref_q = _features(Packed(two), x, y, "margin")
    assert phi.shape == (9, sum(p.numel() for p in two.parameters()))
    torch.testing.assert_close(phi, ref_phi)
    torch.testing.assert_close(q, ref_q)
