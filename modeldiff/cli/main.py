"""The ``modeldiff`` command line: one subcommand per stage, each in its own module."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning threads of
# several processes starve each other (measured here: 10x slower training steps). Must be set
# before torch is imported; an explicit setting by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from datamodels.base.errors import UserError  # noqa: E402
from modeldiff.cli.allocator import tune as _tune_allocator  # noqa: E402 - after the OpenMP setting
from modeldiff.cli.gc_policy import tune as _tune_gc  # noqa: E402

_tune_allocator()  # fixed malloc thresholds: every process in the same, faster regime (modeldiff/cli/allocator.py)
_tune_gc()  # fewer garbage-collector passes over the ~0.5 million objects of a study (modeldiff/cli/gc_policy.py)

# Each module exposes ``add_parser(subparsers)`` and sets ``func`` on its parser.
SUBCOMMAND_MODULES = [
    "modeldiff.cli.train",
    "modeldiff.cli.attribute",
    "modeldiff.cli.lds",
    "modeldiff.cli.diff",
    "modeldiff.cli.counterfactual",
    "modeldiff.cli.search",
    "modeldiff.cli.diagnose",
    "modeldiff.cli.study",
    "modeldiff.cli.verify",
    "modeldiff.cli.plan",
]


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help only when the help does not state its default
    already, and not for options without one (``None``, flags)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or isinstance(action, argparse._StoreTrueAction):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldiff",
        description="Compare two learning algorithms by what their models learn.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    for sub in subparsers.choices.values():  # one help style for every command
        sub.formatter_class = DefaultsOnceFormatter
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def io_error_message(err: BaseException) -> str:
    """One line for an I/O failure (full disk, permissions, a vanished file ...)."""
    import errno

    if isinstance(err, OSError):
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        if err.errno == errno.ENOSPC or "No space left" in str(err):
            return f"no space left on the device{where}: free some space and run the same command again " \
                   "(finished work is kept; nothing half-written was left)"
        reason = err.strerror or str(err) or type(err).__name__
        return f"{_one_line(reason)}{where}: fix the path or permissions and run the command again"
    text = _one_line(str(err)) or type(err).__name__
    if "file write failed" in text or "No space left" in text or "unexpected pos" in text:
        return f"writing failed ({text[:200]}), most likely a full disk: free some space and run the command again"
    return f"{type(err).__name__}: {text[:300]}"


def _clean_stale(args) -> None:
    """Remove temporaries that killed runs left next to this command's outputs."""
    from pathlib import Path

    from datamodels.base.atomic import remove_stale_temporaries

    for name in ("out",):
        value = getattr(args, name, None)
        if value:
            for folder in (Path(value).parent, Path(value)):
                try:
                    remove_stale_temporaries(folder)
                except OSError:
                    pass


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; user mistakes and I/O failures become one ``error:`` line and exit 2.

    ``MODELDIFF_DEBUG=1`` lets exceptions propagate (tracebacks for debugging).
    """
    from datamodels.base.log import cli_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("MODELDIFF_DEBUG") == "1"
    with cli_logging(debug):  # library messages (logging.getLogger("modeldiff")) as plain lines on stderr
        return _run(args, debug)


def _run(args, debug: bool) -> int:
    try:
        _clean_stale(args)
        result = args.func(args)
    except UserError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, MemoryError) as err:
        if debug:
            raise
        print(f"error: {io_error_message(err)}", file=sys.stderr)
        return 2
    return int(result or 0)
