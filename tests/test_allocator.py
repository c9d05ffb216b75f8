"""modeldiff.cli.allocator: fixed glibc malloc thresholds, exported to children, opt-out respected."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import json, os; from modeldiff.cli.allocator import tune; ok = tune(); "
         "print(json.dumps({'ok': ok, 'mmap': os.environ.get('MALLOC_MMAP_THRESHOLD_'), "
         "'trim': os.environ.get('MALLOC_TRIM_THRESHOLD_')}))")


def probe(**env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MODELDIFF_MALLOC"))} | env_extra
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(r.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tune_fixes_thresholds_and_exports_them_to_children():
    from modeldiff.cli.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

    out = probe()
    assert out == {"ok": True, "mmap": str(MMAP_THRESHOLD), "trim": str(TRIM_THRESHOLD)}


def test_opt_out_and_users_own_setting_are_respected():
    assert probe(MODELDIFF_MALLOC="default") == {"ok": False, "mmap": None, "trim": None}
    mine = probe(MALLOC_MMAP_THRESHOLD_="1048576")
    assert mine["ok"] and mine["mmap"] == "1048576" and mine["trim"] is None  # not overwritten


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_the_command_line_tunes_the_allocator_when_it_starts():
    code = "import os; import modeldiff.cli.main; print(os.environ.get('MALLOC_MMAP_THRESHOLD_'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "MODELDIFF_MALLOC"))}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert r.stdout.strip() not in ("", "None")
