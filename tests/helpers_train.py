"""Small recipes and CLI runners shared by the training tests."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY = {"name": "tiny", "model": {"arch": "digits_cnn", "width": 4}, "epochs": 2, "batch_size": 64,
        "optim": {"lr": 0.05}}


def write_recipe(folder: Path, name="tiny.yaml", **overrides) -> Path:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "modeldiff.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, **kw)


def the_error_line(stderr: str) -> str:
    """The one ``error:`` line of a refused command's stderr (asserted: exactly one, and no traceback).

    Other lines may come before it and are not counted: a command prints a notice when a step is
    still running after a few seconds (``modeldiff.checks.notice_if_slow``), which happens on a
    heavily loaded machine."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]
