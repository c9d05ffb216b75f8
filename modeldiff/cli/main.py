"""The ``modeldiff`` command line: one subcommand per stage, each in its own module."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from datamodels.base.errors import UserError

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
    "modeldiff.cli.checkpoint",
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
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full chain of tracebacks (the user code's own included) after "
                             "the error: line; the same as MODELDIFF_DEBUG=1")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    for sub in subparsers.choices.values():  # one help style for every command
        sub.formatter_class = DefaultsOnceFormatter
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def is_write_failure(err: BaseException) -> bool:
    """True for a failure to write a file: an OSError, or the RuntimeError torch/h5py raise when a write
    stops short (full disk). Any other RuntimeError (torch's generic error: shapes, dtypes, devices) is not."""
    if isinstance(err, OSError):
        return True
    text = _one_line(str(err))
    return isinstance(err, RuntimeError) and any(key in text for key in _WRITE_FAILURES)


_WRITE_FAILURES = ("file write failed", "No space left", "unexpected pos", "failed writing file")


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
    if is_write_failure(err):
        return f"writing failed ({text[:200]}), most likely a full disk: free some space and run the command again"
    return f"{type(err).__name__}: {text[:300]}"


def _print_chain(err: BaseException) -> None:
    """The whole traceback chain (causes first, notes included) on stderr."""
    import traceback

    traceback.print_exception(err, file=sys.stderr)


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


def tune_process() -> dict[str, bool]:
    """The command line's process-wide settings, applied by :func:`main` and nowhere else (the library
    leaves a user's process alone: no allocator, collector or environment changes from its functions
    or imports). None changes a result, only speed; each has an opt-out. Returns which are in effect.

    - ``OMP_WAIT_POLICY=PASSIVE`` unless set: idle OpenMP threads sleep instead of spinning; on a busy
      shared CPU spinning threads of several processes starve each other (training steps measured 10x
      slower). Set before torch is imported (subcommands import it lazily); inherited by workers.
    - glibc malloc thresholds fixed at 32 MiB mmap / 64 MiB trim (:mod:`modeldiff.cli.allocator`,
      exported to worker processes): training median 1.06x faster (1.02-1.34x over 4 interleaved
      rounds, ``benchmarks/allocator.py``) and the same speed whatever ran before in the process, which
      brought the planner's demo training predictions from 0.82x/0.84x to 0.93x/0.86x of measured.
      ``MODELDIFF_MALLOC=default`` opts out.
    - the garbage collector's youngest-generation threshold 700 -> 10 000 (:mod:`modeldiff.cli.gc_policy`):
      time in the collector 1.31 -> 0.44 s (tabular study, 14.8 s) and 1.99 -> 0.90 s (optimizers study,
      42.8 s), same peak memory (``benchmarks/gc_policy.py``). ``MODELDIFF_GC=default`` opts out.
    """
    from modeldiff.cli.allocator import tune as tune_allocator
    from modeldiff.cli.gc_policy import tune as tune_gc

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"omp_passive": os.environ["OMP_WAIT_POLICY"] == "PASSIVE", "malloc": tune_allocator(), "gc": tune_gc()}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; user mistakes and I/O failures become one ``error:`` line and exit 2.

    ``--debug`` or ``MODELDIFF_DEBUG=1`` prints the full traceback chain after that line (for a
    failure in user code, the user's own frames too). Any other error (a bug, or torch's generic
    ``RuntimeError``) is one ``error:`` line naming its type, exit 1.
    The command's process settings are applied first (:func:`tune_process`); importing this module
    changes nothing.
    """
    from datamodels.base.log import cli_logging

    tune_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("MODELDIFF_DEBUG") == "1"
    with cli_logging(debug):  # library messages (logging.getLogger("modeldiff")) as plain lines on stderr
        return _run(args, debug)


def _run(args, debug: bool) -> int:
    try:
        _clean_stale(args)
        result = args.func(args)
    except UserError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        if debug:
            _print_chain(err)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, MemoryError) as err:
        if debug:
            _print_chain(err)
        if isinstance(err, MemoryError) or is_write_failure(err):
            print(f"error: {io_error_message(err)}", file=sys.stderr)
            return 2
        print(f"error: {type(err).__name__}: {_one_line(err)[:300]} (not an input or disk problem; "
              f"run with --debug for the traceback)", file=sys.stderr)
        return 1
    return int(result or 0)
