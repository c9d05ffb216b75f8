"""Progress a person can follow: a heading per attributed model ("attributing A: model 5
of 32"), the datamodels regression named in its bar, headings across TRAK groups of the null
calibration, and the silent-stretch tool that audits commands for long silences."""
import sys

import pytest

from tests.integrity_helpers import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("progress"), models=12, ensemble=4)


def test_trak_prints_a_heading_per_model(store, capfd):
    from datamodels.attribution.api import attribute

    attribute(store, "trak", n_models=3, proj_dim=8, progress="A (high noise)")
    err = capfd.readouterr().err
    for k in (1, 2, 3):
        assert f"attributing A (high noise): model {k} of 3 (store row {k - 1})" in err, err[-2000:]


def test_quiet_attribution_prints_nothing(store, capfd):
    from datamodels.attribution.api import attribute

    attribute(store, "trak", n_models=1, proj_dim=8, progress=False)
    assert "attributing" not in capfd.readouterr().err


def test_datamodels_bar_names_the_models(store, capfd):
    from datamodels.attribution.api import attribute

    attribute(store, "datamodels", progress="B", n_lambdas=2)
    err = capfd.readouterr().err
    assert "attributing B: datamodels regression on 12 models" in err and "targets 0-" in err, err[-2000:]


def test_null_groups_count_models_across_groups(store, capfd):
    from modeldiff.diff.null import trak_groups

    trak_groups(__import__("datamodels.store.store", fromlist=["Store"]).Store.open(store), [0, 1, 2, 3], 2,
                proj_dim=8, progress_label="A")
    err = capfd.readouterr().err
    assert "attributing A: model 3 of 4 (store row 2)" in err and "attributing A: model 4 of 4" in err, err[-2000:]


def test_silent_stretch_finds_the_longest_silence():
    from benchmarks._support.silent_stretch import watch

    code = "import time, sys; print('one', flush=True); time.sleep(1.0); sys.stderr.write('two\\r'); print('three')"
    r = watch([sys.executable, "-c", code])
    assert r["exit"] == 0 and r["events"] == 3
    gaps = {(g["before"], g["after"]): g["gap"] for g in r["longest"]}
    assert gaps[("one", "two")] >= 0.9  # the longest may be the start-up on a busy CPU
