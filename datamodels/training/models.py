"""Architectures, each built for ``M`` models at once (see :mod:`datamodels.training.ensemble_layers`).

``net(x)`` takes ``x[M, B, C, H, W]`` (model ``i`` sees its own batch ``x[i]``) and returns logits
``[M, B, K]``. A one-model net (``M == 1``) also takes ``x[B, C, H, W]`` and returns ``[B, K]``: a
plain PyTorch model, as torch.func, TRAK and traker expect.

Implementations: ``digits_cnn`` (3 conv layers, ~25k parameters at width 16), ``resnet9`` (the
CIFAR-10 speed-run ResNet-9, width 64 = the classic 64-128-256-512), ``linear`` (logistic regression).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from datamodels.training.ensemble_layers import GroupLinear, Normalize, conv_bn

if TYPE_CHECKING:  # recipe.py reads the built-in names from this module's registry: no import cycle
    from datamodels.training.recipe import ModelConfig


class EnsembleNet(nn.Module):
    """Base: reshapes ``[M, B, C, H, W]`` to ``[B, M*C, H, W]`` and the output back to ``[M, B, K]``."""

    def __init__(self, n_models: int, num_classes: int, mean, std):
        super().__init__()
        self.n_models, self.num_classes = n_models, num_classes
        self.normalize = Normalize(n_models, mean, std)
        self.blind_region = None  # (row0, row1, col0, col1) zeroed before anything else

    def see(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input layer: blank the blind region (if any), then normalise."""
        if self.blind_region is not None:
            r0, r1, c0, c1 = self.blind_region
            keep = torch.ones(x.shape[-2:], dtype=x.dtype, device=x.device)
            keep[r0:r1, c0:c1] = 0
            x = x * keep
        return self.normalize(x)

    def body(self, x: torch.Tensor) -> torch.Tensor:  # [B, M*C, H, W] -> [B, M*K]
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 4
        if single:
            if self.n_models != 1:
                raise ValueError(f"an ensemble of {self.n_models} models takes x[M, B, C, H, W]")
            x = x.unsqueeze(0)
        m, b = x.shape[:2]
        x = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:])
        out = self.body(self.see(x)).view(b, m, self.num_classes).transpose(0, 1)
        return out[0] if single else out


class DigitsCNN(EnsembleNet):
    """conv(w)-conv(2w)-pool-conv(2w)-pool-linear for 8x8 inputs (any H, W divisible by 4)."""

    def __init__(self, n_models, num_classes, in_channels, image_hw, width, mean, std):
        super().__init__(n_models, num_classes, mean, std)
        m, w = n_models, width
        self.features = nn.Sequential(
            conv_bn(m, in_channels, w), conv_bn(m, w, 2 * w), nn.MaxPool2d(2),
            conv_bn(m, 2 * w, 2 * w), nn.MaxPool2d(2),
        )
        self.flat_dim = 2 * w * (image_hw[0] // 4) * (image_hw[1] // 4)
        self.head = GroupLinear(m, self.flat_dim, num_classes)

    def body(self, x):
        return self.head(self.features(x).reshape(x.shape[0], -1))


class Residual(nn.Module):
    def __init__(self, n_models, channels):
        super().__init__()
        self.inner = nn.Sequential(conv_bn(n_models, channels, channels), conv_bn(n_models, channels, channels))

    def forward(self, x):
        return x + self.inner(x)


class ResNet9(EnsembleNet):
    """The ResNet-9 of the DAWNBench / airbench CIFAR-10 speed runs; logits scaled by 1/8."""

    LOGIT_SCALE = 0.125  # keeps early logits small; standard in the speed-run recipes

    def __init__(self, n_models, num_classes, in_channels, image_hw, width, mean, std):
        super().__init__(n_models, num_classes, mean, std)
        m, w = n_models, width
        self.features = nn.Sequential(
            conv_bn(m, in_channels, w),
            conv_bn(m, w, 2 * w), nn.MaxPool2d(2), Residual(m, 2 * w),
            conv_bn(m, 2 * w, 4 * w), nn.MaxPool2d(2),
            conv_bn(m, 4 * w, 8 * w), nn.MaxPool2d(2), Residual(m, 8 * w),
            nn.AdaptiveMaxPool2d(1),
        )
        self.head = GroupLinear(m, 8 * w, num_classes)

    def body(self, x):
        return self.head(self.features(x).reshape(x.shape[0], -1)) * self.LOGIT_SCALE


class LinearNet(EnsembleNet):
    """Multinomial logistic regression on the normalised pixels."""

    def __init__(self, n_models, num_classes, in_channels, image_hw, width, mean, std):
        super().__init__(n_models, num_classes, mean, std)
        self.flat_dim = in_channels * image_hw[0] * image_hw[1]
        self.head = GroupLinear(n_models, self.flat_dim, num_classes)

    def body(self, x):
        return self.head(x.reshape(x.shape[0], -1))


class ModelStack(nn.Module):
    """``M`` separate one-model nets (e.g. user modules) behind the ensemble interface:
    ``x[M, B, *input_shape] -> [M, B, K]`` (model ``i`` on ``x[i]``)."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.n_models = len(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(x[i]) for i, model in enumerate(self.models)])


ARCHITECTURES = {"digits_cnn": DigitsCNN, "resnet9": ResNet9, "linear": LinearNet}


def build_model(cfg: ModelConfig, n_models: int, num_classes: int, image_shape, mean, std) -> EnsembleNet:
    """An untrained ensemble of ``n_models`` (PyTorch's default initialisation for each)."""
    if len(image_shape) != 3:
        from datamodels.base.errors import UserError

        raise UserError(f"built-in model {cfg.arch!r} takes images [C, H, W] but the inputs have shape "
                        f"{list(image_shape)}: give your own model as model.target")
    c, h, w = image_shape
    net = ARCHITECTURES[cfg.arch](n_models, num_classes, c, (h, w), cfg.width, mean, std)
    net.blind_region = tuple(cfg.blind_region) if cfg.blind_region else None
    return net


def extract_single(net: EnsembleNet, i: int) -> dict[str, torch.Tensor]:
    """Model ``i``'s state dict, loadable into the same architecture built with ``n_models=1``."""
    m = net.n_models
    out = {}
    for key, value in net.state_dict().items():
        if value.dim() == 0:  # BatchNorm's num_batches_tracked: shared counter
            out[key] = value.clone()
        else:
            out[key] = value.contiguous().view(m, value.shape[0] // m, *value.shape[1:])[i].clone()
    return out


@torch.no_grad()
def insert_single(net: EnsembleNet, i: int, state: dict[str, torch.Tensor]) -> None:
    """Write model ``i``'s one-model ``state`` (as :func:`extract_single` gives it) back into ``net``."""
    m = net.n_models
    for key, value in net.state_dict().items():
        if value.dim() > 0:
            k = value.shape[0] // m
            value[i * k:(i + 1) * k].copy_(state[key])


def stack_singles(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`extract_single`: one ensemble state dict from ``M`` single-model ones."""
    return {k: states[0][k].clone() if states[0][k].dim() == 0 else torch.cat([s[k] for s in states])
            for k in states[0]}


def init_ensemble(cfg: ModelConfig, seeds, num_classes, image_shape, mean, std, init_state=None,
                  reset_head=True) -> EnsembleNet:
    """An ensemble whose model ``i`` is initialised from ``seeds[i]`` alone (so its numbers do not
    depend on the other members), optionally starting from ``init_state`` (a single-model state
    dict: pretraining) with the head re-drawn from the model's seed when ``reset_head``."""
    states = []
    for seed in seeds:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))
        single = build_model(cfg, 1, num_classes, image_shape, mean, std)
        torch.random.set_rng_state(gen_state)
        state = single.state_dict()
        if init_state is not None:
            fresh_head = {k: v for k, v in state.items() if k.startswith("head.")}
            state = {k: v.clone() for k, v in init_state.items()}
            if reset_head:
                state.update(fresh_head)
        states.append(state)
    net = build_model(cfg, len(seeds), num_classes, image_shape, mean, std)
    net.load_state_dict(stack_singles(states))
    return net
