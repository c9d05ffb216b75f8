"""The ``modeldiff`` command line (:func:`main`); one module per subcommand."""
from modeldiff.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
