"""Acceptance of the notebook-first API: scripts run as ``__main__`` define their own net factory and
optimizer (or train their own models), call ``compare(..., search=False)`` on digits with 8 models per
side, read the result's attributes and exit 0; a store made from ``__main__`` objects is refused by
the command line in one line that says it reopens from Python only."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def _run(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT, **kw)


@pytest.mark.slow
def test_script_with_its_own_net_and_optimizer(tmp_path):
    out = tmp_path / "run"
    done = _run(SCRIPTS / "compare_in_main.py", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok ")
    refused = _run("-m", "modeldiff.cli", "attribute", out / "store_a", "--out", tmp_path / "s.h5")
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert "reopened from Python only" in errors[0] and "__main__.make_net" in errors[0]
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.slow
def test_script_comparing_two_model_sets_from_folders(tmp_path):
    done = _run(SCRIPTS / "compare_model_sets.py", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok ")
    assert (tmp_path / "run" / "comparison" / "summary.json").is_file()
