"""The library leaves the user's process alone: importing the packages and running ``compare`` change
neither the garbage collector's thresholds nor the environment (``MALLOC_*`` and the rest); the
command line applies its process settings in ``main()`` only, each with its opt-out."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPT_OUTS = ("MODELDIFF_GC", "MODELDIFF_MALLOC")

COMPARE = """
import ctypes, gc, inspect, json, os, sys, traceback
PLUMBING = ("/os.py", "/_collections_abc.py", "<frozen os>", "<frozen _collections_abc>")
writes, allocator_calls = [], []
environ_type = type(os.environ)
real_set, real_del, real_getattr = environ_type.__setitem__, environ_type.__delitem__, ctypes.CDLL.__getattr__

def writer():  # the file that asked for the write (not os.py / MutableMapping plumbing)
    return next(f.filename for f in reversed(traceback.extract_stack()[:-2]) if not f.filename.endswith(PLUMBING))

def set_item(self, key, value):
    writes.append([key, writer()])
    real_set(self, key, value)

def del_item(self, key):
    writes.append([key, writer()])
    real_del(self, key)

def cdll_getattr(self, name):
    if name == "mallopt":
        allocator_calls.append(writer())
    return real_getattr(self, name)

environ_type.__setitem__, environ_type.__delitem__, ctypes.CDLL.__getattr__ = set_item, del_item, cdll_getattr
before = [list(gc.get_threshold()), dict(os.environ)]
import modeldiff
import modeldiff.cli
from modeldiff import Algorithm, compare
imported = [list(gc.get_threshold()), dict(os.environ)]
kw = {"search": False} if "search" in inspect.signature(compare).parameters else {}
a = Algorithm(name="fast", model="linear", lr=0.2, batch_size=64, epochs=2)
b = Algorithm(name="slow", model="linear", lr=0.02, batch_size=64, epochs=2)
compare(a, b, "digits", out=sys.argv[1], models=8, components=1, ensemble_size=8,
        counterfactual={"n_test": 20, "bootstrap": 50}, **kw)
after = [list(gc.get_threshold()), dict(os.environ)]
print(json.dumps({"before": before, "imported": imported, "after": after, "writes": writes,
                  "allocator_calls": allocator_calls}))
"""

CLI = """
import gc, json, os, sys
before = list(gc.get_threshold())
from modeldiff.cli.main import main
imported = list(gc.get_threshold()), os.environ.get("MALLOC_MMAP_THRESHOLD_"), os.environ.get("OMP_WAIT_POLICY")
try:
    main(["--help"])
except SystemExit:
    pass
after = list(gc.get_threshold()), os.environ.get("MALLOC_MMAP_THRESHOLD_"), os.environ.get("OMP_WAIT_POLICY")
print(json.dumps({"before": before, "imported": imported, "after": after}), file=sys.stderr)
"""


def run_probe(code: str, *args, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in OPT_OUTS + ("OMP_WAIT_POLICY",)} | env_extra
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    stream = r.stdout if code is COMPARE else r.stderr
    return json.loads(stream.strip().splitlines()[-1])


def test_import_and_compare_leave_gc_and_environment_unchanged(tmp_path):
    out = run_probe(COMPARE, tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").is_file()  # the comparison did run
    ours = (str(ROOT / "datamodels"), str(ROOT / "modeldiff"))
    assert [w for w in out["writes"] if w[1].startswith(ours)] == []  # no environment write from the library
    assert [f for f in out["allocator_calls"] if f.startswith(ours)] == []  # no mallopt from the library
    before_gc, before_env = out["before"]
    written_elsewhere = {key for key, _ in out["writes"]}  # third-party imports (scikit-learn, torch's compiler)
    for stage in ("imported", "after"):
        gc_now, env_now = out[stage]
        assert gc_now == before_gc, stage
        assert {k: v for k, v in env_now.items() if k.startswith("MALLOC_")} == {}, stage
        changed = {k for k in before_env.keys() | env_now.keys() if before_env.get(k) != env_now.get(k)}
        assert changed <= written_elsewhere, (stage, sorted(changed - written_elsewhere))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_command_line_applies_its_settings_in_main_not_on_import():
    from modeldiff.cli.allocator import MMAP_THRESHOLD
    from modeldiff.cli.gc_policy import GEN0_THRESHOLD

    out = run_probe(CLI)
    default = out["before"]
    assert out["imported"] == [default, None, None]  # importing the command line changes nothing
    assert out["after"] == [[max(GEN0_THRESHOLD, default[0]), *default[1:]], str(MMAP_THRESHOLD), "PASSIVE"]


def test_the_opt_outs_and_a_users_own_settings_are_respected():
    out = run_probe(CLI, MODELDIFF_GC="default", MODELDIFF_MALLOC="default", OMP_WAIT_POLICY="ACTIVE")
    assert out["after"] == [out["before"], None, "ACTIVE"]
    mine = run_probe(CLI, MALLOC_MMAP_THRESHOLD_="1048576")
    assert mine["after"][1] == "1048576"  # not overwritten
