"""Every code block of the docs site (docs/*.md) and of the README is run: Python blocks are executed
(per page, in order, in a scratch folder), YAML blocks are loaded as the recipe or study they show,
and command lines are parsed by the `modeldiff` argument parser (scripts, modules and studies they
name must exist). The README's two marked "own algorithm" examples run in test_readme_example.py.
The site itself must build with `mkdocs build --strict`."""
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"(<!-- example: [^>]+-->\s*)?^([ \t]*)```(\w*)\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
# Pages whose Python blocks are whole programs, executed in order; the fragments of the other pages
# (names defined by the reader) are compiled.
RUN_PAGES = {"own-algorithm.md", "stores.md", "report.md", "index.md", "concepts.md", "planner.md",
             "diagnostics.md", "studies.md", "api.md", "python_api.md", "README.md"}
# Run pages whose YAML blocks are fragments (a recipe's `optim` line, a study naming the reader's own module
# "my_pkg.attr:..."): parsed, not loaded as a recipe or study.
YAML_FRAGMENT_PAGES = {"python_api.md"}


def blocks(page: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of the page's fenced blocks (dedented; no language = text), less the README's
    marked examples."""
    import textwrap

    return [(lang or "text", textwrap.dedent(code)) for marker, _, lang, code in FENCE.findall(page.read_text())
            if not marker]


def test_every_page_is_scanned_and_blocks_have_a_language():
    assert len(PAGES) >= 8
    for page in PAGES:  # an unlabelled block would escape the tests below
        text = page.read_text()
        assert text.count("```") == 2 * len(FENCE.findall(text)), f"{page.name}: a fence the tests do not see"
    langs = {lang for page in PAGES for lang, _ in blocks(page)}
    assert langs <= {"python", "yaml", "bash", "text", "json"}, langs


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in RUN_PAGES or p.name in YAML_FRAGMENT_PAGES],
                         ids=lambda p: p.name)
def test_fragments_compile_and_parse(page):
    import json

    for lang, code in blocks(page):
        if lang == "python":
            compile(code, page.name, "exec")
        elif lang == "yaml":
            assert yaml.safe_load(code) is not None
        elif lang == "json":
            json.loads(re.sub(r"\.\.\.", "null", code.replace("{...}", "{}")))


@pytest.mark.parametrize("page", [p for p in PAGES if p.name in RUN_PAGES
                                  and any(lang == "python" for lang, _ in blocks(p))], ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    codes = [code for lang, code in blocks(page) if lang == "python"]
    for i, code in enumerate(codes):
        exec(compile(code, f"{page.name} block {i}", "exec"), namespace)  # noqa: S102 - our own docs
    assert codes


def _yaml_blocks():
    return [(page, code) for page in PAGES if page.name in RUN_PAGES - YAML_FRAGMENT_PAGES
            for lang, code in blocks(page) if lang == "yaml"]


@pytest.mark.parametrize("page,code", _yaml_blocks(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_yaml_blocks_load(page, code, tmp_path, monkeypatch):
    from datamodels.training.recipe import recipe_from_dict
    from modeldiff.studies.config import load_study

    data = yaml.safe_load(code)
    assert isinstance(data, dict)
    monkeypatch.chdir(tmp_path)
    if "algorithm_a" in data:
        (tmp_path / "study.yaml").write_text(code)
        cfg = load_study(str(tmp_path / "study.yaml"))
        assert cfg.recipes()[0].name and cfg.labels()[0]
    elif "name" in data:
        assert recipe_from_dict(data).name == data["name"]
    else:  # a fragment of a study: added to a shipped study, which must still load and validate
        from modeldiff.studies.run import _check_report_settings

        study = yaml.safe_load((ROOT / "case_studies/tabular/breast_cancer.yaml").read_text())
        study.update(data)
        (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
        cfg = load_study(str(tmp_path / "study.yaml"))
        _check_report_settings(cfg)
        assert all(getattr(cfg, k) == v for k, v in data.items())


def _command_lines():
    out = []
    for page in PAGES:
        for lang, code in blocks(page):
            if lang != "bash":
                continue
            for line in code.splitlines():
                line = line.split(" #", 1)[0].strip()
                if line and not line.startswith("#"):
                    out.append((page.name, line))
    return out


@pytest.mark.parametrize("page,line", _command_lines())
def test_command_lines_parse(page, line):
    from modeldiff.cli import build_parser

    words = shlex.split(line)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # environment assignments
    if words[0] in ("modeldiff", ".venv/bin/modeldiff"):
        parser = build_parser()
        try:
            args = parser.parse_args(words[1:])
        except SystemExit as err:
            raise AssertionError(f"{page}: `{line}` does not parse (exit {err.code})") from None
        assert args is not None
        if words[1] in ("study", "plan"):
            from modeldiff.studies.config import load_study

            target = words[2]
            if not target.endswith(".yaml"):
                load_study(target)
            elif "algorithm_a" in (ROOT / target).read_text():
                load_study(str(ROOT / target))
        for word in words[2:]:
            if word.endswith(".yaml") and "/" in word:
                assert (ROOT / word).is_file(), f"{page}: {word} does not exist"
    elif words[0] in ("python", "python3", ".venv/bin/python"):
        if words[1] == "-m" and words[2] != "venv":
            assert importlib.util.find_spec(words[2]) is not None, f"{page}: no module {words[2]}"
        elif words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), f"{page}: no script {words[1]}"
    elif words[0].startswith("./scripts/"):
        assert (ROOT / words[0]).is_file()
    else:
        raise AssertionError(f"{page}: unknown command in a docs block: {line}")


def test_mkdocs_build_strict(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "compare" in (tmp_path / "site" / "api" / "index.html").read_text()
