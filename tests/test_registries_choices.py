"""CLI and study choices come from the registries (one list each), and building the CLI costs no torch."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datamodels.attribution.names import METHODS, PROJECTORS
from datamodels.base.errors import UserError
from datamodels.data.names import DATASETS
from datamodels.runs.names import LAUNCHERS
from modeldiff.cli.main import build_parser
from modeldiff.diff.names import SOLVERS

ROOT = Path(__file__).resolve().parents[1]
# (subcommand, option) -> the registry its choices must equal
REGISTRY_OPTIONS = {("attribute", "--method"): METHODS, ("attribute", "--projector"): PROJECTORS,
                    ("study", "--method"): METHODS, ("demo", "--method"): METHODS, ("demo", "--dataset"): DATASETS,
                    ("diff", "--solver"): SOLVERS, ("train", "--launcher"): LAUNCHERS}
# literal choices that are not names of pluggable pieces (numeric types of the diagnostics)
LITERAL_ALLOWED = {"--dtype"}


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _option(sub, flag):
    return next(a for a in sub._actions if flag in a.option_strings)


def _names(action) -> list[str]:
    """The names an option offers: its choices, or the registry behind a name-or-target type."""
    if action.choices is not None:
        return list(action.choices)
    return action.type.registry.names()


def test_cli_choices_are_the_registry_names():
    subs = _subparsers(build_parser())
    for (command, flag), registry in REGISTRY_OPTIONS.items():
        assert _names(_option(subs[command], flag)) == registry.names(), (command, flag)


def test_no_literal_choices_lists_left():
    """Every ``choices=`` in the packages reads a registry, except the allowed non-registry ones."""
    offenders = []
    for path in [*(ROOT / "modeldiff").rglob("*.py"), *(ROOT / "datamodels").rglob("*.py")]:
        for line in path.read_text().splitlines():
            m = re.search(r"""add_argument\(\s*["'](--[\w-]+)["'].*choices=\s*[\[(]""", line)
            if m and m.group(1) not in LITERAL_ALLOWED:
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not offenders, offenders


def test_a_registered_name_becomes_a_cli_choice():
    """The parser reads the registry when it is built: a newly registered method is accepted."""
    METHODS.register("fake_method", object, help="test only")
    try:
        args = build_parser().parse_args(["attribute", "store", "--out", "s.h5", "--method", "fake_method"])
        assert args.method == "fake_method"
    finally:
        METHODS.unregister("fake_method")
    assert "fake_method" not in METHODS


def test_every_registered_name_dispatches_to_an_implementation():
    """The five name registries hold implementations (imported on first use), not descriptions."""
    from datamodels.attribution.methods import AttributionMethod
    from datamodels.attribution.projectors import Projector

    for name in METHODS:
        assert issubclass(METHODS.get(name), AttributionMethod), name
    for name in PROJECTORS:
        got = PROJECTORS.get(name)
        assert callable(got) and (not isinstance(got, type) or issubclass(got, Projector)), name
    for registry in (DATASETS, SOLVERS, LAUNCHERS):
        for name in registry:
            assert callable(registry.get(name)), (registry.kind, name)
            assert registry.help(name), (registry.kind, name)


@pytest.mark.parametrize("argv", [
    ["attribute", "s", "--out", "o.h5", "--method", "lasso"],
    ["attribute", "s", "--out", "o.h5", "--projector", "gaussian"],
    ["diff", "a", "b", "--out", "o", "--solver", "arpack"],
    ["train", "default", "--out", "o", "--launcher", "slurm"],
    ["study", "sgd_noise", "--out", "o", "--method", "influence"],
    ["demo", "--dataset", "mnist"],
])
def test_unknown_choice_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_building_the_cli_and_the_name_modules_import_no_torch_or_numpy():
    code = ("import sys\n"
            "import datamodels.attribution.names, datamodels.data.names, datamodels.runs.names\n"
            "import modeldiff.diff.names\n"
            "from modeldiff.cli.main import build_parser\n"
            "build_parser().format_help()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'numpy' not in sys.modules, 'numpy imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_implementations_check_against_the_same_registries():
    from datamodels.attribution.api import check_settings
    from datamodels.attribution.trak import TrakSettings
    from datamodels.data.dataset import BUILTIN_DATASETS, load_dataset
    from datamodels.runs.launchers import fill_store
    from modeldiff.diff.validation import check_params
    from modeldiff.studies.config import AttributionSpec

    with pytest.raises(UserError, match="trak, datamodels"):
        check_settings("lasso", {})
    with pytest.raises(UserError, match="attribution.method must be one of trak, datamodels"):
        AttributionSpec(method="lasso")
    with pytest.raises(ValueError, match="auto, sketch, rademacher, fast_jl"):  # a name that is not a target
        TrakSettings(projector="gaussian")
    TrakSettings(projector="identity")  # chosen by proj_dim None, still a valid setting
    with pytest.raises(UserError, match="auto, full, randomized"):
        check_params(2, "arpack")
    with pytest.raises(UserError, match="launcher must be one of local, ray"):
        fill_store(object(), launcher="slurm")  # refused before the store is touched
    assert BUILTIN_DATASETS == tuple(DATASETS.names())
    with pytest.raises(UserError, match="'digits', 'cifar10'"):
        load_dataset("mnist")


def test_registry_check_and_iteration():
    assert list(SOLVERS) == ["auto", "full", "randomized"] and "full" in SOLVERS
    assert SOLVERS.check("full") == "full"
    assert METHODS.check("pkg.mod:fn", targets=True) == "pkg.mod:fn"
    with pytest.raises(UserError) as err:
        SOLVERS.check("arpack", key="--solver")
    assert str(err.value) == "--solver must be one of auto, full, randomized; got 'arpack'"


def test_search_families_are_one_list():
    from modeldiff.counterfactual.library import FAMILIES, generic_candidates
    from modeldiff.studies.validate import SEARCH_FAMILIES

    assert SEARCH_FAMILIES is FAMILIES
    assert generic_candidates((1, 8, 8), families=["blur"])  # a known family gives candidates
    with pytest.raises(UserError, match="unknown search family blurr: choose from patch, stroke, square, tint"):
        generic_candidates((1, 8, 8), families=["blur", "blurr"])  # a typo is not silently skipped
