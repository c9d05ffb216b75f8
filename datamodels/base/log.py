"""Logging for both packages: one logger tree under ``"modeldiff"``.

Library code logs with ``get_logger(__name__)`` and never configures handlers, levels or the root
logger (a notebook or application keeps its own logging set-up). The command line calls
:func:`setup_logging` once in ``main()``: messages of level ``INFO`` and above go to stderr as plain
lines (``--debug`` shows ``DEBUG`` too, with the logger's name).
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

ROOT = "modeldiff"  # every library logger is a child of this one


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger ``modeldiff`` (``name`` None) or ``modeldiff.<name>``.

    A module name of either package (``datamodels.store.store``, ``modeldiff.cli.main``) is placed
    under ``modeldiff`` (``modeldiff.datamodels.store.store``, ``modeldiff.cli.main``), so one
    handler on ``"modeldiff"`` sees both packages.
    """
    if not name or name == ROOT:
        return logging.getLogger(ROOT)
    if name.startswith(ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT}.{name}")


def setup_logging(debug: bool = False, stream=None) -> logging.Handler:
    """Send the ``modeldiff`` logger's records to ``stream`` (default stderr); for the command line only.

    Idempotent: a second call replaces the handler it installed before. Returns the handler.
    """
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        if getattr(h, "_modeldiff_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._modeldiff_cli = True
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s" if debug else "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    return handler


@contextmanager
def cli_logging(debug: bool = False, stream=None):
    """:func:`setup_logging` for the ``with`` block (one command), then the ``modeldiff`` logger as it was: a
    command run inside a Python process (a test, a notebook's ``main([...])``) leaves no handler behind."""
    logger = logging.getLogger(ROOT)
    level, propagate = logger.level, logger.propagate
    handler = setup_logging(debug, stream)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
