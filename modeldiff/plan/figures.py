"""The report stage's cost, timed on the study's data: the process's first figure (matplotlib's start, once), one
component's examples figure (``THUMBS`` thumbnails per row, or bars of all ``SUBPOP_TOP`` subpopulation members)
and one effect plot as tall as the study's largest (standing in for scatter, sweep and search plots)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modeldiff.plan.measure import stage, timed_call


@dataclass
class ReportCost:
    first: float  # seconds: matplotlib's import and the process's first figure
    grid: float  # one component's examples figure
    plot: float  # one single-axes plot


def plot_rows(shape) -> int:
    """Rows of a direction's largest effect plot: its counterfactual tests or its confirmed candidates."""
    return max(1, shape.counts["counterfactual_tests"], shape.cfg.search.n_confirm * bool(shape.counts["search_candidates"]))


def calibrate_report(data, rows: int) -> ReportCost:
    from modeldiff.report import figures
    from modeldiff.report.writer import THUMBS
    from modeldiff.studies.pipeline import SUBPOP_TOP

    first = timed_call(figures.effect_plot, ["first"], [(0.0, -1.0, 1.0)], [(0.0, -1.0, 1.0)])
    image = getattr(data, "is_image", True)
    idx = list(range(min(THUMBS if image else SUBPOP_TOP, data.n_train)))
    names = ("train +", "train −", "test top")
    if image:
        captions = [f"#{i} {int(data.y_train[i])}\n{0.0123:+.3g}" for i in idx]
        grid = timed_call(figures.image_grid, [(name, data.x_train, idx, captions) for name in names])
    else:
        grid = timed_call(figures.weight_bars, [(name, np.linspace(-1.0, 1.0, len(idx)), [f"#{i}" for i in idx])
                                                for name in names])
    effects = [(0.1 * i, 0.1 * i - 0.05, 0.1 * i + 0.05) for i in range(max(1, int(rows)))]
    labels = [f"{i}: patch 4px at (2, 2) → class {i % 10}" for i in range(len(effects))]
    return ReportCost(first, grid, timed_call(figures.effect_plot, labels, effects, effects[::-1]))


def predict_report(cost: ReportCost, shape, base_rss: int) -> dict:
    """Per direction a variance scatter, one examples figure per component, the effect plots of the tests and
    of the search and one plot per size sweep; matplotlib's start once."""
    n = shape.counts
    singles = 1 + bool(n["counterfactual_tests"]) + bool(n["search_candidates"]) + n["counterfactual_sweeps"]
    return stage(cost.first + 2 * (shape.cfg.components * cost.grid + singles * cost.plot), base_rss)
