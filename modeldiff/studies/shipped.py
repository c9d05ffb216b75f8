"""Shipped study YAMLs, found by name without importing the packages that hold them.

A package that ships studies (one folder per study, ``STUDY/DATASET.yaml`` inside) names itself in
the ``modeldiff.studies`` entry-point group of its ``pyproject.toml``::

    [project.entry-points."modeldiff.studies"]
    case_studies = "case_studies"

Its folder is located with :func:`importlib.util.find_spec` (the package is not imported).
``case_studies`` is always searched, also from a source tree that was never installed.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

GROUP = "modeldiff.studies"
DEFAULT_PACKAGES = ("case_studies",)
DEFAULT_DATASET = "digits"  # ``sgd_noise`` means ``sgd_noise/digits``
LISTED_STEMS = ("digits", "digits_linear", "cifar10")  # the names an error message suggests


def study_roots() -> list[Path]:
    """Folders holding one sub-folder per shipped study, in search order (installed packages first)."""
    names = [ep.value for ep in importlib.metadata.entry_points(group=GROUP)]
    roots = []
    for name in [*names, *DEFAULT_PACKAGES]:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a dotted name whose parent is missing, or a broken entry
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = Path(location).resolve()
            if path not in roots:
                roots.append(path)
    return roots


def find_study(name: str) -> Path | None:
    """``STUDY`` or ``STUDY/DATASET`` -> the shipped YAML (the first root that has it), else None."""
    parts = name.split("/")
    if len(parts) > 2 or not all(parts):
        return None
    for root in study_roots():
        path = root / parts[0] / f"{parts[1] if len(parts) > 1 else DEFAULT_DATASET}.yaml"
        if path.is_file():
            return path
    return None


def shipped_names() -> list[str]:
    """``STUDY/DATASET`` of the shipped studies an error message lists."""
    return sorted({p.parent.name + "/" + p.stem for root in study_roots() for p in root.glob("*/*.yaml")
                   if p.stem in LISTED_STEMS})
