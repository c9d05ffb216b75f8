"""Assemble the self-contained HTML page (figures inlined as base64 PNG)."""
from __future__ import annotations

import base64
from html import escape

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin:.3em 0} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em;max-width:100%}
td,th{border:1px solid #ccc;padding:.2em .45em;text-align:right} td{white-space:nowrap}
td.l{white-space:normal;overflow-wrap:anywhere}
th{background:#f3f3f3;font-weight:600} td.l,th.l{text-align:left} img{max-width:100%;height:auto;display:block;margin:.5em 0}
.meta{color:#555;font-size:.85em} .a{color:#b22} .b{color:#22b}
div.verdict{font-size:1.05em;background:#f6f6ee;border-left:4px solid #886;padding:.4em .9em;margin:.6em 0}
div.verdict ul{margin:.2em 0;padding-left:1.2em} div.verdict li{margin:.15em 0}
p.verdict{background:#f6f6ee;border-left:4px solid #886;padding:.5em .8em}
p.headline{font-weight:600} p.note{color:#444;font-size:.85em} p.other{font-size:.9em;margin:.3em 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em}
"""

def img(png: bytes, alt: str) -> str:
    """An <img> with the PNG inlined (no external file needed to view the page)."""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def paragraph(text: str, css: str = "") -> str:
    """A paragraph of plain (escaped) text."""
    cls = f' class="{css}"' if css else ""
    return f"<p{cls}>{escape(text)}</p>"


def note(trusted_html: str) -> str:
    """A small explanatory note (``trusted_html`` is inserted as is)."""
    return f'<p class="note">{trusted_html}</p>'


def table(header: list[str], rows: list[list], left: int = 1, css: str = "") -> str:
    """A table; the first ``left`` columns are left-aligned text, floats get 3 significant digits
    (format numbers with a CI through :mod:`modeldiff.report.numbers` before)."""
    def cell(v, i):
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        cls = ' class="l"' if i < left else ""
        return f"<td{cls}>{escape(text)}</td>"
    head = "".join(f'<th{" class=l" if i < left else ""}>{escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell(v, i) for i, v in enumerate(r)) + "</tr>" for r in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def page(title: str, meta_lines: list[str], sections: list[tuple[str, str]]) -> str:
    """The whole document; ``sections`` are ``(heading, trusted inner HTML)``."""
    meta = "".join(f"<div>{escape(line)}</div>" for line in meta_lines)
    body = "".join(f'<section id="{_id(h)}"><h2>{escape(h)}</h2>{inner}</section>' for h, inner in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f'<div class="meta">{meta}</div>{body}</body></html>\n')


def _id(heading: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in heading.lower()).strip("-")


def verdict_block(sentences: list[str], other_link: str | None = None, other_label: str = "") -> str:
    """The verdict as a short list of sentences, and a link to the other direction's report."""
    items = "".join(f"<li>{escape(t)}</li>" for t in sentences)
    link = (f'<p class="other">The other direction: <a href="{escape(other_link)}">{escape(other_label)}</a></p>'
            if other_link else "")
    return f'<div class="verdict"><ul>{items}</ul></div>{link}'
