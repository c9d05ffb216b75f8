"""Add a section of preformatted text to a written report (a study runner's own results, e.g. a
planted run beside its no-plant twin), in the report's own section markup."""
from __future__ import annotations

from html import escape
from pathlib import Path

from datamodels.base.atomic import atomic_write_text


def append_section(report_html, title: str, text: str) -> Path:
    """Insert ``<section><h2>title</h2><pre>text</pre></section>`` before ``</body>`` of ``report_html``
    (a section with the same title is replaced, so running twice leaves one). Returns the path."""
    from modeldiff.report.html import _id

    path = Path(report_html)
    html = path.read_text()
    sid = _id(title)
    start = html.find(f'<section id="{sid}">')
    if start >= 0:
        html = html[:start] + html[html.index("</section>", start) + len("</section>"):]
    block = f'<section id="{sid}"><h2>{escape(title)}</h2><pre>{escape(text)}</pre></section>'
    at = html.rfind("</body>")
    html = html[:at] + block + html[at:] if at >= 0 else html + block
    atomic_write_text(path, html)
    return path
