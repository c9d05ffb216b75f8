"""docs/tutorial.ipynb runs top to bottom in a fresh kernel (a scratch folder as its working
directory): no cell fails, the verdict is printed and the report's figures are shown inline."""
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


@pytest.mark.slow
def test_tutorial_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "test accuracy" in text and "beyond the null" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the report's figures are shown inline"
    assert (tmp_path / "runs" / "tutorial" / "report_a_minus_b" / "figures" / "search.svg").is_file()
