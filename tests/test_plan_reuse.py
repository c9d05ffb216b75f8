"""Calibrate less (modeldiff/plan/reuse.py): which recipes share a calibration, and the per-machine cache."""
import os

from modeldiff.plan import reuse
from modeldiff.studies.config import load_study


def test_timing_identical_recipes_share_and_others_do_not():
    high, low = load_study("sgd_noise").recipes()
    same = high.replace(**{"optim.lr": 0.3, "optim.weight_decay": 1e-3, "epochs": 3, "name": "other"})
    assert reuse.timing_key(same) == reuse.timing_key(high)
    assert reuse.timing_key(low) != reuse.timing_key(high)  # batch 128 vs 16: different steps
    assert reuse.timing_key(high.replace(**{"model.width": 8})) != reuse.timing_key(high)
    # same model, data and trainer: the evaluation (finish) is shared, the steps are not
    assert reuse.finish_key(low) == reuse.finish_key(high)
    assert reuse.finish_key(high.replace(**{"model.width": 8})) != reuse.finish_key(high)
    a, b = load_study("case_studies/null/digits.yaml").recipes()
    assert reuse.timing_key(a) == reuse.timing_key(b)  # one recipe at two seeds: calibrated once


def test_cache_round_trip_off_and_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDIFF_PLAN_CACHE", str(tmp_path))
    key = reuse.fingerprint({"recipes": ["x"], "ensemble": 8}, "cpu")
    assert key != reuse.fingerprint({"recipes": ["x"], "ensemble": 16}, "cpu")
    assert reuse.load(key) is None
    path = reuse.save(key, {"seconds": 12.5})
    cal, where, _ = reuse.load(key)
    assert cal == {"seconds": 12.5} and where == path and path.parent == tmp_path
    old = path.stat().st_mtime - (reuse.CACHE_DAYS + 1) * 86400
    os.utime(path, (old, old))
    assert reuse.load(key) is None  # too old: measured again
    monkeypatch.setenv("MODELDIFF_PLAN_CACHE", "off")
    assert reuse.save(key, {"seconds": 1}) is None and reuse.load(key) is None
