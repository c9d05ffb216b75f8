"""The study's counterfactual transforms: user callables on feature vectors ``x[n, d] -> x'[n, d]``.

Features are z-scored, so ``by=1.0`` moves a feature by one training standard deviation.
"""
from __future__ import annotations

import torch

from case_studies.tabular.data import feature_index


class ShiftFeatures:
    """Add ``by`` (in standard deviations) to the named features."""

    def __init__(self, features: list[str], by: float = 1.0):
        self.index = [feature_index(f) for f in features]
        self.by = float(by)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[:, self.index] += self.by
        return out


def shift_features(features: list[str], by: float = 1.0) -> ShiftFeatures:
    """Factory used from the study YAML: ``{target: ...:shift_features, kwargs: {features: [...], by: 1.0}}``."""
    return ShiftFeatures(features, by)
