"""Headings a person can follow while models are attributed (on stderr, one line each).

``attributing A (high noise): model 5 of 32 (store row 4)`` before each model's gradients are
computed (TRAK), and ``attributing A: datamodels regression on 512 models, targets 0-99 of 360``
as the regression's progress bar (see :mod:`datamodels.attribution.regression`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator


def heading(text: str) -> None:
    """Print one progress heading on stderr (flushed: it must show while the work runs)."""
    print(text, file=sys.stderr, flush=True)


def announced(rows: Iterable[int], load: Callable[[int], object], label: str | None, total: int,
              start: int = 0) -> Iterator[tuple[int, object]]:
    """``(row, load(row))`` for each row, after a heading ``attributing LABEL: model k of TOTAL``
    (``k`` counts from ``start + 1``; no heading when ``label`` is None)."""
    for k, row in enumerate(rows, start + 1):
        if label is not None:
            heading(f"attributing {label}: model {k} of {total} (store row {int(row)})")
        yield int(row), load(int(row))
