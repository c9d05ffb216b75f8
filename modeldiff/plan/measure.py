"""Measuring on this machine (memory now and at its peak, wall time, process age); the predicted stage record."""
from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

MODEL_ERROR = 0.15  # relative half-width of a stage predicted from one calibration point


def rss_bytes() -> int:
    """Resident set size of this process now (bytes)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """``with PeakSampler() as s: ...`` then ``s.peak``: the largest RSS seen (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> "PeakSampler":
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@contextmanager
def timed():
    """``with timed() as t: ...`` then ``t["seconds"]``."""
    out, start = {}, time.perf_counter()
    yield out
    out["seconds"] = time.perf_counter() - start


def timed_call(fn, *args) -> float:
    """Seconds ``fn(*args)`` took."""
    with timed() as t:
        fn(*args)
    return t["seconds"]


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports included)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def release_memory() -> None:
    """Give freed heap back to the system, so that the next block's peak growth is its own."""
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # glibc


def stage(seconds: float, peak: float, disk: float = 0, low: float | None = None, high: float | None = None) -> dict:
    """A predicted stage; without ``low``/``high`` the interval is ``± MODEL_ERROR``."""
    low = seconds * (1 - MODEL_ERROR) if low is None else low
    high = seconds * (1 + MODEL_ERROR) if high is None else high
    return {"seconds": float(seconds), "seconds_low": float(low), "seconds_high": float(high),
            "peak_memory_bytes": int(peak), "disk_bytes": int(disk)}
