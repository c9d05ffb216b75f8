"""Shared by the integrity, fault-injection, fuzz and disk-full tests: a tiny finished store and an
in-process CLI runner (exit code, stdout, stderr; a traceback fails the test by propagating)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
from pathlib import Path

from tests.helpers_train import write_recipe

N_MODELS, ENSEMBLE = 6, 3


def run_cli(*args) -> tuple[int, str, str]:
    """``modeldiff ARGS`` in this process: ``(exit code, stdout, stderr)``."""
    from modeldiff.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def make_store(folder: Path, models: int = N_MODELS, ensemble: int = ENSEMBLE, seed: int = 0,
               save_weights: int | None = None) -> Path:
    """Train a tiny digits store (width 4, 1 epoch) through the CLI; returns its folder."""
    recipe = write_recipe(folder, epochs=1)
    out = folder / f"store_s{seed}"
    args = ["train", recipe, "--out", out, "--models", models, "--ensemble-size", ensemble, "--seed", seed]
    if save_weights is not None:
        args += ["--save-weights", save_weights]
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stdout + stderr
    return out


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def tree_digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (to prove nothing was written)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name != ".lock"}
