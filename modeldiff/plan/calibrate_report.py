"""The report stage's calibration: what one direction's report figures cost on this machine.

A study writes two reports (one per direction); their time is the figures' (matplotlib layout, drawing
and PNG encoding; the HTML around them is milliseconds). Timed here on the study's own data: the first
figure of the process (matplotlib's import, font set-up and first draw: once per study), one component's
example figure (a thumbnail grid of ``THUMBS`` per row, or, for data that are not images, weight bars of
all ``SUBPOP_TOP`` members of each subpopulation, as the report draws them) and
one single-axes plot (an effect plot with as many rows as the study's largest, standing in for the
scatter, sweep and search plots, which cost about as much).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from modeldiff.plan.memory import timed


@dataclass
class ReportCalibration:
    first_seconds: float  # matplotlib's import and the first figure of the process
    grid_seconds: float  # one component's examples figure
    plot_seconds: float  # one single-axes plot (an effect plot of ``plot_rows`` rows)
    plot_rows: int
    seconds: float = 0.0


def calibrate_report(data, rows: int) -> ReportCalibration:
    """Time the figures of a report on ``data`` (thumbnails of its images, or weight bars), with effect plots
    of ``rows`` rows (the most tests or confirmed candidates a direction shows)."""
    from modeldiff.report import figures
    from modeldiff.report.writer import THUMBS
    from modeldiff.studies.pipeline import SUBPOP_TOP

    start = time.perf_counter()
    rows = max(1, int(rows))
    with timed() as t_first:
        figures.effect_plot(["first"], [(0.0, -1.0, 1.0)], [(0.0, -1.0, 1.0)])
    image = getattr(data, "is_image", True)
    # as many examples as the report draws: THUMBS thumbnails per row, or every subpopulation member as a bar
    idx = list(range(min(THUMBS if image else SUBPOP_TOP, data.n_train)))
    with timed() as t_grid:
        if image:
            captions = [f"#{i} {int(data.y_train[i])}\n{0.0123:+.3g}" for i in idx]
            figures.image_grid([(name, data.x_train, idx, captions) for name in ("train +", "train −", "test top")])
        else:
            values = np.linspace(-1.0, 1.0, len(idx))
            figures.weight_bars([(name, values, [f"#{i}" for i in idx]) for name in ("train +", "train −", "test top")])
    labels = [f"{i}: patch 4px at (2, 2) → class {i % 10}" for i in range(rows)]
    effects = [(0.1 * i, 0.1 * i - 0.05, 0.1 * i + 0.05) for i in range(rows)]
    with timed() as t_plot:
        figures.effect_plot(labels, effects, effects[::-1])
    return ReportCalibration(t_first["seconds"], t_grid["seconds"], t_plot["seconds"], rows,
                             time.perf_counter() - start)
