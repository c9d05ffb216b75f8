"""Test-suite settings: idle OpenMP threads sleep (as modeldiff.cli.main.tune_process does for the command), set before torch loads."""
import os

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="module")
def digits():
    """The embedded digits dataset, loaded once per test module."""
    from datamodels.data.dataset import load_digits

    return load_digits()
