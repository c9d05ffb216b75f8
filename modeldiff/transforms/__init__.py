"""Counterfactual input transformations (see base.py for the contract and the list)."""
from modeldiff.transforms.base import Transform
from modeldiff.transforms.blur import GaussianBlur
from modeldiff.transforms.custom import FunctionTransform
from modeldiff.transforms.grayscale import Grayscale
from modeldiff.transforms.patch import PatchPaste
from modeldiff.transforms.patterns import PATTERNS, solid, texture, window
from modeldiff.transforms.spec import KINDS, parse_transform
from modeldiff.transforms.tint import ColorTint

__all__ = ["Transform", "PatchPaste", "ColorTint", "Grayscale", "GaussianBlur", "FunctionTransform",
           "PATTERNS", "texture", "window", "solid", "parse_transform", "KINDS"]
