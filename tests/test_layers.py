"""The layers of the code base (docs/CONTRACTS.md, "Layers"): no module imports upwards, no cycles.

Every import statement of ``datamodels/``, ``modeldiff/`` and ``case_studies/`` counts, at module level
or inside a function (lazy), under ``TYPE_CHECKING`` too, as does ``importlib.import_module("...")``
with a literal name. Each imported module is mapped to its *unit* (``datamodels.store``,
``modeldiff.report``, a top-level module such as ``datamodels.registry``), and each unit to its place
in :data:`LAYERS`: a unit may import units of lower layers only; units of one layer are independent
rooms (neither imports the other).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datamodels", "modeldiff", "case_studies")

# Lowest first. One inner list = one layer of independent units. A package's own __init__ (the unit
# named like the package) imports nothing of it and sits at the bottom of its package.
LAYERS: list[list[str]] = [
    ["datamodels", "datamodels.base"],  # errors, atomic writes, logging, progress
    ["datamodels.registry", "datamodels.margins"],
    ["datamodels.data"],
    ["datamodels.training"],  # recipes, models, trainer backends, the FFCV loader
    ["datamodels.store"],  # a store records its recipe and rebuilds its models from it
    ["datamodels.modelset"],  # the analysis contract; a store is one implementation
    ["datamodels.runs", "datamodels.attribution"],  # filling a store (training + store) | attribution
    ["modeldiff", "modeldiff.checks"],
    ["modeldiff.diff", "modeldiff.counterfactual", "modeldiff.diagnostics"],
    ["modeldiff.report"],
    ["modeldiff.studies", "modeldiff.result"],  # result: what compare() returns, read from a study folder
    ["modeldiff.plan"],
    ["modeldiff.api", "modeldiff.cli"],
    ["case_studies", "case_studies.*"],  # examples: imported by nobody in the library
]

# Upward imports tolerated while they are being replaced (none now: studies name their set-up step or
# runner as an import target in their YAML). An entry that no longer occurs fails the last test below.
PENDING_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str) -> str | None:
    """``module`` if it is a module or package of this repository, else its longest such prefix."""
    parts = module.split(".")
    while parts:
        base = ROOT.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path`` of a module of this repository."""
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, this_module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a module of this repository in ``source``, the code of
    module ``this_module`` (a package's ``__init__`` when ``is_package``)."""
    this = this_module.split(".")
    package = this if is_package else this[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names]  # a submodule, or a name of ``base``
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                resolved = resolve(name)
                if resolved:
                    found.append((node.lineno, resolved))
    return sorted(found)


def unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def layer_of(u: str) -> tuple[int, str]:
    """(layer index, the LAYERS entry ``u`` matches)."""
    for k, layer in enumerate(LAYERS):
        for entry in layer:
            if u == entry or (entry.endswith(".*") and u.startswith(entry[:-1])):
                return k, entry
    raise AssertionError(f"{u} has no place in LAYERS (tests/test_layers.py): add it to the layer it belongs to")


def edges() -> list[tuple[str, int, str, str, str]]:
    """``(file, line, imported module, from unit, to unit)`` for imports that cross units."""
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            src = unit(module_name(path))
            for line, module in imported_modules(path):
                dst = unit(module)
                if dst != src:
                    out.append((str(path.relative_to(ROOT)), line, module, src, dst))
    return out


def violations(all_edges) -> list[str]:
    bad = []
    for file, line, module, src, dst in all_edges:
        (ks, es), (kd, ed) = layer_of(src), layer_of(dst)
        if (file, dst) in PENDING_UPWARD:
            continue
        if kd > ks:
            bad.append(f"{file}:{line}: {src} imports {module}, a higher layer ({ed} above {es})")
        elif kd == ks:
            bad.append(f"{file}:{line}: {src} imports {module}, a room of its own layer ({ed} beside {es}): "
                       "move what both need lower, or what needs both higher")
    return bad


def cycles(all_edges) -> list[list[str]]:
    """Cycles of the unit graph (strongly connected components with more than one unit)."""
    graph: dict[str, set[str]] = {}
    for *_, src, dst in all_edges:
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def import_edges():
    return edges()


def test_every_unit_has_a_layer():
    units = {unit(module_name(p)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    for u in sorted(units):
        layer_of(u)  # raises naming the unit


def test_no_module_imports_upwards_or_sideways(import_edges):
    bad = violations(import_edges)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycle_between_units(import_edges):
    found = cycles([e for e in import_edges if (e[0], e[4]) not in PENDING_UPWARD])
    assert not found, f"import cycles between units: {found}"


def test_the_check_sees_upward_lazy_and_relative_imports():
    """The checker itself: upward imports inside a function and a sideways relative import are found,
    a downward relative import is not, and a two-unit cycle is reported."""
    src = ("def f():\n    from modeldiff.report.html import page\n    import case_studies\n"
           "from ..runs import runner\nfrom ..data import dataset\n")
    found = imports_in(src, "datamodels.attribution.probe", is_package=False)
    assert [m for _, m in found] == ["modeldiff.report.html", "case_studies", "datamodels.runs.runner",
                                     "datamodels.data.dataset"]
    probe_edges = [("datamodels/attribution/probe.py", line, m, "datamodels.attribution", unit(m)) for line, m in found]
    bad = violations(probe_edges)
    assert [b.split(" imports ")[1].split(",")[0] for b in bad] == ["modeldiff.report.html", "case_studies",
                                                                  "datamodels.runs.runner"]
    assert cycles([("a", 1, "x", "u.a", "u.b"), ("b", 1, "y", "u.b", "u.a")]) == [["u.a", "u.b"]]


def test_pending_upward_imports_still_exist(import_edges):
    present = {(file, dst) for file, _, _, _, dst in import_edges}
    stale = PENDING_UPWARD - present
    assert not stale, f"no longer imported, remove from PENDING_UPWARD: {sorted(stale)}"
