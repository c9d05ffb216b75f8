"""Progress on stderr, for both packages: bars that are never silent and one-line headings.

Bars: :func:`progress_bar` is every bar of the library (the ``progress=`` switch turns it off);
:func:`step_bar` is a step counter (per training or calibration chunk) also kept alive (redrawn with its
elapsed time and current phase) while a phase without steps runs (a chunk's evaluation and commit, a
candidate's evaluation, the diagnostics).

Headings a person can follow while models are attributed (one line each):
``attributing A (high noise): model 5 of 32 (store row 4)`` before each model's gradients are
computed (TRAK), and ``attributing A: datamodels regression on 512 models, targets 0-99 of 360``
as the regression's progress bar (see :mod:`datamodels.attribution.regression`).
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

HEARTBEAT = 3.0  # seconds between redraws of a bar while nothing else updates it


@contextmanager
def heartbeat(bar, every: float = HEARTBEAT):
    """Redraw ``bar`` every ``every`` seconds while the ``with`` block runs."""
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            bar.refresh()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()


@contextmanager
def _nothing(bar):
    yield bar


@contextmanager
def step_bar(desc: str, total: int | None = None, every: float = HEARTBEAT, disable: bool = False):
    """``with step_bar("calibration chunk 1 of 2 (16 models)", 11) as bar: ... bar.update(1)``: a step
    counter that is also redrawn every ``every`` seconds (a long step or a phase without steps shows
    as alive, with the phase set by ``bar.set_postfix_str``)."""
    bar = progress_bar(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, progress=not disable)
    try:
        with heartbeat(bar, every) if not disable else _nothing(bar):
            yield bar
    finally:
        bar.close()


def progress_bar(iterable: Iterable | None = None, *, progress: bool | str = True, **kw) -> tqdm:
    """The one progress bar of both packages (tqdm on stderr; ``kw`` as tqdm takes them: ``desc``, ``total``,
    ``unit``, ``leave``, ...). ``progress`` is the switch every library function passes on: false shows nothing."""
    return tqdm(iterable, disable=not progress, **kw)


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
