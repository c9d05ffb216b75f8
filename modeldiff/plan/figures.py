"""The report stage's cost: the figures of two reports (one per direction), timed on the study's own data.

Timed: the process's first figure (matplotlib's import and set-up, once per study), one component's
examples figure (``THUMBS`` thumbnails per row, or weight bars of all ``SUBPOP_TOP`` members of each
subpopulation for data that are not images) and one effect plot as tall as the study's largest, which
stands in for the scatter, sweep and search plots (they cost about as much). The HTML is milliseconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from modeldiff.plan.measure import stage, timed


@dataclass
class ReportCost:
    first: float  # seconds: matplotlib's import and the process's first figure
    grid: float  # one component's examples figure
    plot: float  # one single-axes plot
    seconds: float = 0.0


def plot_rows(shape) -> int:
    """Rows of a direction's largest effect plot: its counterfactual tests or its confirmed candidates."""
    n = shape.counts
    return max(1, n["counterfactual_tests"], shape.cfg.search.n_confirm if n["search_candidates"] else 0)


def calibrate_report(data, rows: int) -> ReportCost:
    from modeldiff.report import figures
    from modeldiff.report.writer import THUMBS
    from modeldiff.studies.pipeline import SUBPOP_TOP

    start = time.perf_counter()
    with timed() as t_first:
        figures.effect_plot(["first"], [(0.0, -1.0, 1.0)], [(0.0, -1.0, 1.0)])
    image = getattr(data, "is_image", True)
    idx = list(range(min(THUMBS if image else SUBPOP_TOP, data.n_train)))
    names = ("train +", "train −", "test top")
    with timed() as t_grid:
        if image:
            captions = [f"#{i} {int(data.y_train[i])}\n{0.0123:+.3g}" for i in idx]
            figures.image_grid([(name, data.x_train, idx, captions) for name in names])
        else:
            figures.weight_bars([(name, np.linspace(-1.0, 1.0, len(idx)), [f"#{i}" for i in idx]) for name in names])
    rows = max(1, int(rows))
    effects = [(0.1 * i, 0.1 * i - 0.05, 0.1 * i + 0.05) for i in range(rows)]
    with timed() as t_plot:
        figures.effect_plot([f"{i}: patch 4px at (2, 2) → class {i % 10}" for i in range(rows)], effects, effects[::-1])
    return ReportCost(t_first["seconds"], t_grid["seconds"], t_plot["seconds"], time.perf_counter() - start)


def predict_report(cost: ReportCost, shape, base_rss: int) -> dict:
    """Per direction a variance scatter, one examples figure per component, the effect plots of the tests and
    of the search and one plot per size sweep; matplotlib's start once."""
    n = shape.counts
    singles = 1 + bool(n["counterfactual_tests"]) + bool(n["search_candidates"]) + n["counterfactual_sweeps"]
    return stage(cost.first + 2 * (shape.cfg.components * cost.grid + singles * cost.plot), base_rss)
