"""Library messages go through ``logging.getLogger("modeldiff")``: the command line shows them as plain stderr
lines and leaves the logger as it found it; library code neither prints nor builds its own progress bars."""
import ast
import io
import logging
from pathlib import Path

from datamodels.base.log import cli_logging, get_logger
from tests.helpers_train import write_recipe
from tests.integrity_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _state():
    logger = logging.getLogger("modeldiff")
    return list(logger.handlers), logger.level, logger.propagate


def test_cli_shows_library_messages_as_plain_lines_and_restores_the_logger(tmp_path, monkeypatch):
    import datamodels.training.backends as backends

    monkeypatch.setattr(backends, "_LOGGED", set())  # the trainer choice is logged once per recipe and process
    before = _state()
    code, out, err = run_cli("train", write_recipe(tmp_path, epochs=1), "--out", tmp_path / "store", "--models", "2",
                             "--ensemble-size", "2")
    assert code == 0, err
    assert "trainer auto -> " in err and "INFO" not in err and "modeldiff.datamodels" not in err, err  # plain text
    assert "trainer auto" not in out and _state() == before


def test_cli_logging_shows_info_and_above_then_restores():
    stream, before = io.StringIO(), _state()
    with cli_logging(stream=stream):
        get_logger("datamodels.store.store").warning("note: a damaged row")
        get_logger("modeldiff.studies.run").info("[1/6] training both algorithms")
        get_logger("modeldiff.plan").debug("not shown")
    assert stream.getvalue() == "note: a damaged row\n[1/6] training both algorithms\n"
    assert _state() == before


def test_library_code_neither_prints_nor_makes_its_own_bars():
    """Only the command line prints (its results); every progress bar comes from datamodels/base/progress.py."""
    offenders = []
    for path in [*ROOT.glob("datamodels/**/*.py"), *ROOT.glob("modeldiff/**/*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("modeldiff/cli/") or rel == "datamodels/base/progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{rel}:{node.lineno} print")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                offenders += [f"{rel}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "tqdm"]
    assert not offenders, offenders
