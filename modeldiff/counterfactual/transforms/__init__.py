"""Counterfactual input transformations (see base.py for the contract and the list)."""
from modeldiff.counterfactual.transforms.base import Transform
from modeldiff.counterfactual.transforms.blur import GaussianBlur
from modeldiff.counterfactual.transforms.custom import FunctionTransform
from modeldiff.counterfactual.transforms.grayscale import Grayscale
from modeldiff.counterfactual.transforms.patch import PatchPaste
from modeldiff.counterfactual.transforms.patterns import PATTERNS, solid, texture, window
from modeldiff.counterfactual.transforms.spec import KINDS, parse_transform
from modeldiff.counterfactual.transforms.tint import ColorTint

__all__ = ["Transform", "PatchPaste", "ColorTint", "Grayscale", "GaussianBlur", "FunctionTransform",
           "PATTERNS", "texture", "window", "solid", "parse_transform", "KINDS"]
