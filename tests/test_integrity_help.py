"""``--help`` of every command: every option has help text and no default is stated twice."""
import re

import pytest

from modeldiff.cli.main import build_parser


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices.items())


@pytest.mark.parametrize("name,sub", _subparsers(), ids=[n for n, _ in _subparsers()])
def test_every_option_has_help_and_defaults_appear_once(name, sub):
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest} has no help"
    text = sub.format_help()
    for block in re.split(r"\n  (?=-|\w)", text):
        assert block.count("(default") <= 1, f"{name}: default stated twice in:\n{block}"
