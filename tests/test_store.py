"""The store survives kill -9, detects corrupted rows, flags diverged models, refuses other settings."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from datamodels.base.errors import UserError
from datamodels.data.dataset import load_digits
from datamodels.runs.launchers import fill_store
from datamodels.store.store import DONE, Store
from datamodels.training.recipe import load_recipe
from tests.helpers_train import cli, the_error_line, write_recipe


def _train_args(recipe, out, models=10):
    return ["train", recipe, "--out", out, "--models", models, "--ensemble-size", 2, "--seed", 5]


@pytest.mark.slow
def test_resume_after_kill_minus_9(tmp_path):
    recipe = write_recipe(tmp_path, epochs=3)
    out = tmp_path / "store"
    args = [sys.executable, "-m", "modeldiff.cli", *map(str, _train_args(recipe, out, models=12))]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    done_before = np.array([], dtype=int)
    while time.time() < deadline:
        status_file = out / "status.npy"
        if status_file.exists():
            status = np.load(status_file)
            if 2 <= (status == DONE).sum() < len(status):
                done_before = np.flatnonzero(status == DONE)
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(done_before) >= 2, "training never got far enough to interrupt"
    store = Store.open(out)
    done_now = np.flatnonzero(store.status == DONE)
    assert len(done_now) < 12, "the run finished before it could be killed"
    snapshot = {i: (store.test_margins[i].copy(), os.stat(store.weight_path(i)).st_mtime_ns) for i in done_now}

    result = cli(*_train_args(recipe, out, models=12))
    assert result.returncode == 0, result.stderr
    store = Store.open(out)
    assert (store.status == DONE).all() and len(store.corrupted_indices()) == 0
    for i, (margins, mtime) in snapshot.items():  # finished models were not retrained or rewritten
        np.testing.assert_array_equal(store.test_margins[i], margins)
        assert os.stat(store.weight_path(i)).st_mtime_ns == mtime
    # the interrupted run plus its resume gives exactly what one clean run gives
    clean = tmp_path / "clean"
    assert cli(*_train_args(recipe, clean, models=12)).returncode == 0
    np.testing.assert_allclose(Store.open(clean).test_margins, store.test_margins, atol=1e-4)


@pytest.fixture
def small_store(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path))
    store = Store.create_or_resume(tmp_path / "s", recipe, load_digits(), 4, 0.5, seed=1)
    fill_store(store, ensemble_size=4)
    return store


def test_corrupted_row_is_detected_excluded_and_retrained(small_store):
    store = small_store
    assert len(store.valid_indices()) == 4
    store.test_margins[2, 7] += 1.0  # a bit flip on disk
    store.test_margins.flush()
    reopened = Store.open(store.path)
    assert reopened.corrupted_indices().tolist() == [2]
    with pytest.raises(UserError, match=r"damaged row\(s\) \[2\].*--use-valid-only"):
        reopened.valid_indices()  # analysis refuses a damaged store unless asked to use the intact rows
    assert Store.open(store.path, use_valid_only=True).valid_indices().tolist() == [0, 1, 3]
    assert fill_store(reopened, ensemble_size=4)["done"] == 4
    assert Store.open(store.path).valid_indices().tolist() == [0, 1, 2, 3]


def test_finished_rows_are_never_written_twice(small_store):
    with pytest.raises(RuntimeError, match="twice"):
        small_store.write_row(0, test_logits=0, test_margins=0, accuracy=0, diverged=False)


def test_diverged_models_are_flagged_counted_and_excluded(tmp_path):
    recipe = write_recipe(tmp_path, optim__lr=1e12, optim__momentum=0.0)
    out = tmp_path / "div"
    result = cli("train", recipe, "--out", out, "--models", 3, "--ensemble-size", 3)
    assert "3 diverged" in result.stdout, result.stdout + result.stderr
    store = Store.open(out)
    assert store.summary()["diverged"] == 3
    assert len(store.valid_indices()) == 0


def test_resume_with_other_settings_is_refused(small_store, tmp_path):
    data = load_digits()
    other = small_store.recipe.replace(**{"optim.lr": 0.2})
    with pytest.raises(UserError, match=r"recipe\.optim\.lr=0\.05.*0\.2"):
        Store.create_or_resume(small_store.path, other, data, 4, 0.5, seed=1)
    with pytest.raises(UserError, match="subset_fraction"):
        Store.create_or_resume(small_store.path, small_store.recipe, data, 4, 0.25, seed=1)
    x = data.x_train.clone()
    x[0] = 0
    changed = type(data).from_tensors(x, data.y_train, data.x_test, data.y_test, data.class_names, "digits")
    with pytest.raises(UserError, match="dataset.identity"):
        Store.create_or_resume(small_store.path, small_store.recipe, changed, 4, 0.5, seed=1)


def test_cli_bad_input_one_line_and_nothing_written(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lrr: 0.1}\n")
    result = cli("train", bad, "--out", tmp_path / "never")
    assert result.returncode == 2
    assert "optim.lrr" in the_error_line(result.stderr)
    assert not (tmp_path / "never").exists()
    result = cli("train", write_recipe(tmp_path), "--out", tmp_path / "never", "--subset-fraction", "1.5")
    assert result.returncode == 2 and "subset-fraction" in result.stderr
    assert not (tmp_path / "never").exists()


def test_reloaded_models_reproduce_stored_logits(small_store):
    probs = small_store.predict_proba(small_store.load_dataset().x_test[:50])
    stored = small_store.test_logits[:, :50]
    np.testing.assert_allclose(probs.log().numpy(), stored - np.log(np.exp(stored).sum(-1, keepdims=True)),
                               atol=1e-4)
