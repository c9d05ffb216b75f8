"""The README's Python example runs as written (in a scratch folder)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    blocks = re.findall(r"<!-- example: own data -->\s*```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "README must hold exactly one example marked '<!-- example: own data -->'"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(blocks[0], "README example", "exec"), namespace)
    fit = namespace["fit"]
    assert fit.components_.shape == (3, 1437)
    assert (fit.explained_variance_a_ > 0).all()
    assert "explained variance" in capsys.readouterr().out
