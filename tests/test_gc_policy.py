"""modeldiff.cli.gc_policy: the command line raises the collector's first threshold (only that), the opt-out
keeps CPython's defaults, and cyclic garbage is still collected."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import gc, json; d = gc.get_threshold(); import modeldiff.cli.main; "
         "print(json.dumps([d, gc.get_threshold()]))")


def thresholds(**env_extra) -> tuple[list, list]:
    env = {k: v for k, v in os.environ.items() if k != "MODELDIFF_GC"} | env_extra
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return tuple(json.loads(r.stdout))


def test_the_command_line_raises_only_the_first_threshold():
    from modeldiff.cli.gc_policy import GEN0_THRESHOLD

    default, tuned = thresholds()
    assert tuned == [max(GEN0_THRESHOLD, default[0]), default[1], default[2]]
    assert tuned[0] > default[0]  # CPython's default (700) is below ours


def test_the_opt_out_keeps_the_defaults():
    default, kept = thresholds(MODELDIFF_GC="default")
    assert kept == default


def test_cyclic_garbage_is_still_collected_automatically_under_the_policy():
    import gc
    import weakref

    from modeldiff.cli.gc_policy import tune

    saved = gc.get_threshold()
    try:
        assert tune()
        made = 20 * gc.get_threshold()[0]

        class Node:
            pass

        refs = []
        for _ in range(made):  # unreachable cycles, no explicit gc.collect(): only the automatic collections free them
            n = Node()
            n.me = n
            refs.append(weakref.ref(n))
            del n
        alive = sum(r() is not None for r in refs)
        assert alive <= 2 * gc.get_threshold()[0], (alive, made)
    finally:
        gc.set_threshold(*saved)
