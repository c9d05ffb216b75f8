"""Command-line options that take a registered name or an import target ``pkg.mod:Thing``."""
from __future__ import annotations

import argparse


def name_or_target(registry):
    """An argparse ``type`` accepting ``registry``'s names or an import target (refused values exit 2
    with "invalid choice"). Imports nothing: the target is resolved where it is used."""
    from datamodels.registry import is_target

    def parse(value: str) -> str:
        if value in registry or is_target(value):
            return value
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(registry.names())}, "
                                         f"or an import target 'package.module:Name')")

    parse.registry = registry
    parse.__name__ = registry.kind  # argparse names the type in its messages
    return parse


def listing(registry) -> str:
    """``name (help), ...`` of a registry, for an option's help text."""
    return "; ".join(f"{n}: {registry.help(n)}" if registry.help(n) else n for n in registry.names())
