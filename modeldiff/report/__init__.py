"""The human-readable ModelDiff report: one self-contained HTML file, its PNGs and a JSON summary."""
from modeldiff.report.writer import write_report

__all__ = ["write_report"]
