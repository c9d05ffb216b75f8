"""Progress bars that are never silent: a step counter (per training or calibration chunk) and bars
kept alive (redrawn with their elapsed time and current phase) while a phase without steps runs (a
chunk's evaluation and commit, a candidate's evaluation, the diagnostics)."""
from __future__ import annotations

import threading
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
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=disable)
    try:
        with heartbeat(bar, every) if not disable else _nothing(bar):
            yield bar
    finally:
        bar.close()
