"""Test-suite settings: idle OpenMP threads sleep (see modeldiff/cli.py), set before torch loads."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
