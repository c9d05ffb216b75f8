"""Optional pieces of the test suite (ffcv, Ray, the CIFAR-10 files): skip, or fail when CI requires them.

CI sets ``MODELDIFF_REQUIRE_FFCV=1``, ``MODELDIFF_REQUIRE_RAY=1`` and ``MODELDIFF_CIFAR10_DIR``;
then a missing piece fails the test instead of skipping it, so nothing is skipped silently there.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

CIFAR10_ENV = "MODELDIFF_CIFAR10_DIR"


def required(flag: str) -> bool:
    """True when the environment variable ``flag`` is set to anything but ``""``/``0``."""
    return os.environ.get(flag, "").strip() not in ("", "0")


def require_module(name: str, flag: str, hint: str):
    """Import ``name``; when it is unusable, fail if ``flag`` is set, else skip (saying ``hint``)."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 — ImportError, or OSError from a compiled extension
        message = f"{name} is not usable ({type(err).__name__}: {err}); {hint}"
        if required(flag):
            pytest.fail(f"{flag} is set but {message}", pytrace=False)
        pytest.skip(message)


def require_cifar10_dir() -> Path:
    """The folder named by ``MODELDIFF_CIFAR10_DIR`` (ImageFolder layout); skip when unset, fail when wrong."""
    value = os.environ.get(CIFAR10_ENV, "").strip()
    if not value:
        pytest.skip(f"set {CIFAR10_ENV} to a CIFAR-10 ImageFolder (train/, test/) to run the CIFAR-10 tests")
    path = Path(value)
    if not ((path / "train").is_dir() and (path / "test").is_dir()):
        pytest.fail(f"{CIFAR10_ENV}={value} has no train/ and test/ class folders", pytrace=False)
    return path
