"""The warnings block at the top of a report: the study's sanity guards (modeldiff.studies.guards)."""
from __future__ import annotations

from html import escape

STYLE = "ul.warnings{background:#fff4e5;border-left:4px solid #d80;padding:.5em 1em .5em 2em}"


def warnings_section(warnings: list[dict]) -> tuple[str, str] | None:
    """``("Warnings", html)`` listing ``warnings`` (``{code, message, detail}`` dicts), or None when empty."""
    if not warnings:
        return None
    items = "".join(f"<li><b>{escape(w['code'])}</b>: {escape(w['message'])}</li>" for w in warnings)
    return "Warnings", (f"<style>{STYLE}</style><ul class=\"warnings\">{items}</ul>"
                        '<p class="note">Thresholds: docs/warnings.md.</p>')
