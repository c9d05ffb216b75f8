"""FeatureBank: the three ways TRAK keeps per-model features hold the same numbers and clean up."""
import os

import numpy as np
import pytest
import torch

from datamodels.attribution.feature_bank import FeatureBank


def _models(m=3, n=7, n_test=4, k=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, k, generator=g, dtype=dtype), torch.randn(n_test, k, generator=g, dtype=dtype))
            for _ in range(m)]


@pytest.mark.parametrize("capacity,budget,on_disk", [(None, 1 << 30, False), (None, 0, True),
                                                     (3, 1 << 30, False), (3, 0, True)])
def test_bank_returns_what_was_added_and_removes_its_files(capacity, budget, on_disk):
    models = _models()
    bank = FeatureBank(capacity, budget)
    for f, t in models:
        bank.add(f, t)
    pairs = bank.pairs()
    assert len(pairs) == 3
    for (f, t), (gf, gt) in zip(models, pairs):
        np.testing.assert_array_equal(np.asarray(gf), f.numpy())
        np.testing.assert_array_equal(np.asarray(gt), t.numpy())
    assert isinstance(pairs[0][0], np.memmap) == on_disk
    folder = bank._spill.name if bank._spill is not None else None
    assert (folder is not None) == on_disk
    bank.close()
    assert folder is None or not os.path.exists(folder)


def test_bank_refuses_more_models_than_announced():
    bank = FeatureBank(1, 1 << 30)
    (f, t), _ = _models(2)
    bank.add(f, t)
    with pytest.raises(ValueError, match="holds 1 models"):
        bank.add(f, t)
    bank.close()


def test_bank_spills_when_the_running_total_passes_the_budget():
    models = _models(m=3, n=10, n_test=2, k=4, dtype=torch.float32)
    per_model = (10 + 2) * 4 * 4
    bank = FeatureBank(None, budget_bytes=2 * per_model)  # two models fit, the third does not
    for i, (f, t) in enumerate(models):
        bank.add(f, t)
        assert (bank._spill is not None) == (i == 2)
    assert all(isinstance(a, np.memmap) for pair in bank.pairs() for a in pair)
    bank.close()
