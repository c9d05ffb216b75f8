"""The network of the optimizer study, as a user module (named by ``model.target``).

``digits_cnn(input_shape, num_classes, width)``: conv(w)-BN-ReLU, conv(2w)-BN-ReLU, pool,
conv(2w)-BN-ReLU, pool, linear: the built-in ``digits_cnn`` written as a plain ``nn.Module``
(inputs normalised by fixed digits statistics), mapping ``x[B, 1, 8, 8]`` to logits ``[B, K]``.
"""
from __future__ import annotations

from torch import nn

DIGITS_MEAN, DIGITS_STD = 0.3054, 0.3761  # scikit-learn digits scaled to [0, 1], training split


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class DigitsCNN(nn.Module):
    def __init__(self, input_shape, num_classes: int, width: int = 16):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(conv_bn(c, width), conv_bn(width, 2 * width), nn.MaxPool2d(2),
                                      conv_bn(2 * width, 2 * width), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Linear(2 * width * (h // 4) * (w // 4), num_classes)

    def forward(self, x):
        return self.head(self.features((x - DIGITS_MEAN) / DIGITS_STD))


def digits_cnn(input_shape, num_classes: int, width: int = 16) -> DigitsCNN:
    return DigitsCNN(input_shape, num_classes, width)
