"""Python's cyclic garbage collector, tuned for a ``modeldiff`` command's process.

A study's process holds ~0.4-0.5 million Python objects once PyTorch, ``torch._dynamo`` (imported by the
first per-example gradient), scikit-learn and matplotlib are loaded. With CPython's default thresholds
``(700, 10, 10)`` the collector walks them again and again: 1.4-2.1 s of a 15-41 s small study, timed
with ``gc.callbacks``. :func:`tune` raises the youngest generation's threshold to
:data:`GEN0_THRESHOLD` allocations: fewer, larger collections of the young objects, and far fewer full
ones (the older generations keep their ratios, and CPython still runs a full collection only once the
long-lived objects have grown by a quarter). Nothing else changes: every collection that runs is a
normal one, cyclic garbage is still freed (later), and exit is untouched.

Not done, though it would save more: freezing the heap at exit (``gc.freeze``; the interpreter's final
collections over it took 1.2-1.6 s after a study had finished). Measured here, a file a user's module
leaves open at module level is then never flushed — data lost — so exit keeps CPython's behaviour.

Measured side by side in ``benchmarks/gc_policy.py`` (figures in benchmarks/README.md). The command line
calls it; the library does not (a user's own process keeps its settings). ``MODELDIFF_GC=default``
leaves CPython's defaults alone.
"""
from __future__ import annotations

import gc
import os

GEN0_THRESHOLD = 10_000  # allocations minus deallocations between two collections of the youngest generation


def tune() -> bool:
    """Raise the youngest generation's threshold in this process; True when in effect, False when opted out."""
    if os.environ.get("MODELDIFF_GC") == "default":
        return False
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GEN0_THRESHOLD, gen0), gen1, gen2)
    return True
