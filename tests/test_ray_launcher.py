"""Two Ray workers fill one store, and their rows equal those of the same models trained locally.

A local Ray instance (2 CPUs) is started by the launcher and shut down after. CI sets
``MODELDIFF_REQUIRE_RAY=1`` so a missing Ray fails this test instead of skipping it.
"""
import os

import numpy as np
import pytest

from datamodels.data.dataset import load_digits
from datamodels.runs.launchers import fill_store
from datamodels.store.store import DONE, Store
from datamodels.training.recipe import recipe_from_dict
from tests._requirements import require_module

pytestmark = pytest.mark.slow  # Ray: runs in the full suite, not the developer loop

TINY64 = {"model": {"arch": "digits_cnn", "width": 4}, "precision": "float64", "epochs": 2, "batch_size": 64,
          "optim": {"lr": 0.05}, "augment": {"translate": 1}}


def test_two_ray_workers_fill_one_store_like_a_local_run(tmp_path):
    require_module("ray", "MODELDIFF_REQUIRE_RAY", "pip install 'modeldiff[ray]'")
    digits, recipe = load_digits(), recipe_from_dict(TINY64)
    ray_store = Store.create_or_resume(tmp_path / "ray", recipe, digits, 4, 0.5, seed=7)
    summary = fill_store(ray_store, launcher="ray", workers=2, ensemble_size=2)  # 2 chunks of 2 models
    assert summary["done"] == 4 and summary["pending"] == 0 and summary["corrupted"] == 0
    pids = summary["worker_pids"]
    assert len(pids) == 2 and os.getpid() not in pids, f"expected 2 Ray worker processes, got {pids}"

    local_store = Store.create_or_resume(tmp_path / "local", recipe, digits, 4, 0.5, seed=7)
    assert fill_store(local_store, ensemble_size=4)["worker_pids"] == [os.getpid()]  # one ensemble of 4, here
    ray_store, local_store = Store.open(tmp_path / "ray"), Store.open(tmp_path / "local")
    assert (ray_store.status == DONE).all()
    np.testing.assert_array_equal(ray_store.masks, local_store.masks)
    np.testing.assert_array_equal(ray_store.seeds, local_store.seeds)
    # a model's numbers do not depend on its ensemble or its process (float64 training)
    np.testing.assert_allclose(ray_store.test_logits, local_store.test_logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ray_store.train_margins, local_store.train_margins, rtol=0, atol=1e-6)
    assert np.ptp(ray_store.test_margins[:, 0]) > 1e-3  # and they are four different models
