"""glibc ``malloc`` with fixed mmap and trim thresholds from the start (Linux; elsewhere nothing).

glibc serves a block above its mmap threshold (128 KiB at start) with a fresh ``mmap`` and returns the
top of the heap to the system once more than the trim threshold is free there; both thresholds rise only
after a large mmapped block is freed (at most to 32 and 64 MiB). PyTorch on a CPU allocates and frees the
same buffers at every step, so a process's speed could depend on its history (what it had freed before):
ad-hoc single runs (not a benchmark) of a 32-model digits chunk took 18.2 s after a TRAK pass, 27.2 s without; and
``modeldiff plan``, which times training after its TRAK calibration, then predicted the demo's training
16-18 % short. :func:`tune` sets the thresholds glibc would reach by itself (32 MiB mmap, 64 MiB trim)
from the start, so every process runs in the same regime: interleaved side by side
(``benchmarks/allocator.py``, 4 rounds) it was never slower (1.02-1.34x, median 1.06x; run-to-run noise
on this shared CPU is larger) at +1.5 % peak memory.

Called by the command line's ``main()`` only (the library leaves a user's process alone); it also
exports ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` so that worker processes start with it.
``MODELDIFF_MALLOC=default`` leaves glibc's defaults alone; a user's own ``MALLOC_MMAP_THRESHOLD_`` wins.
"""
from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 32 << 20  # bytes: blocks up to this size come from the heap (glibc's dynamic maximum)
TRIM_THRESHOLD = 64 << 20  # bytes free at the top of the heap before it is returned (2x, as glibc sets it)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_done = False


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds in this process (once) and for its children; True when in effect."""
    global _done
    if _done:
        return True
    if os.environ.get("MODELDIFF_MALLOC") == "default":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # applied by glibc at start (a worker of ours, or the user's value)
        _done = True
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): other allocators, nothing to do
        return False
    if ok:
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
        os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(TRIM_THRESHOLD))
        _done = True
    return ok
