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

from modeldiff.errors import UserError

# Each module exposes ``add_parser(subparsers)`` and sets ``func`` on its parser.
SUBCOMMAND_MODULES = [
    "modeldiff.cli.train",
    "modeldiff.cli.attribute",
    "modeldiff.cli.lds",
    "modeldiff.cli.diff",
    "modeldiff.cli.counterfactual",
    "modeldiff.cli.study",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldiff",
        description="Compare two learning algorithms by what their models learn.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
