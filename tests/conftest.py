"""Test-suite settings: idle OpenMP threads sleep (as modeldiff.cli.main.tune_process does for the command), set before torch loads."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
