"""A study runner's own section in a written report: inserted before </body>, escaped, and replaced
(not repeated) when the runner writes it again."""
from modeldiff.report.extra_section import append_section
from modeldiff.report.html import page


def test_section_is_inserted_escaped_and_replaced(tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page("t", ["m"], [("Components", "<p>c</p>")]))
    append_section(path, "Planted and twin", "A -> class 3 <b>")
    append_section(path, "Planted and twin", "second")
    html = path.read_text()
    assert html.count("<h2>Planted and twin</h2>") == 1 and "second" in html and "class 3" not in html
    assert html.index("Components") < html.index("Planted and twin") < html.index("</body>")
    append_section(path, "Other", "x < y")
    assert "x &lt; y" in path.read_text() and "second" in path.read_text()
