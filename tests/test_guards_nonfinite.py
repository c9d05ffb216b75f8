"""NaN/Inf never become silent results: non-finite data refused at load (split and row named),
outside models with non-finite weights left out with a count, scores never written non-finite,
``lds`` leaves non-finite rows out and says how many, HDF5 scores carry checksums."""
import logging

import numpy as np
import pytest
import torch
from torch import nn

from datamodels.attribution.influence_io import read_influence, write_influence
from datamodels.attribution.lds import lds
from datamodels.base.errors import UserError
from datamodels.data.dataset import Dataset
from tests.integrity_helpers import error_lines, run_cli


def _data(n_train=40, n_test=12, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_tr, x_te = torch.randn(n_train, d, generator=g), torch.randn(n_test, d, generator=g)
    return x_tr, (x_tr[:, 0] > 0).long(), x_te, (x_te[:, 0] > 0).long()


@pytest.mark.parametrize("split,row,value", [("train", 7, float("nan")), ("test", 3, float("inf"))])
def test_non_finite_inputs_are_refused_naming_split_and_row(split, row, value):
    x_tr, y_tr, x_te, y_te = _data()
    (x_tr if split == "train" else x_te)[row, 2] = value
    with pytest.raises(UserError, match=f"x_{split} row {row} has (NaN|infinite) values"):
        Dataset.from_tensors(x_tr, y_tr, x_te, y_te)


def test_a_nan_pixel_from_a_data_target_stops_train_before_a_store(tmp_path, monkeypatch):
    (tmp_path / "guard_nan_data.py").write_text(
        "import numpy as np\n"
        "def load():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.random((60, 1, 8, 8)).astype('float32'); x[11, 0, 4, 4] = np.nan\n"
        "    y = np.arange(60) % 2\n"
        "    return x[:40], y[:40], x[40:], y[40:]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {arch: digits_cnn, width: 4}\nepochs: 1\ndata: {target: 'guard_nan_data:load'}\n")
    code, out, err = run_cli("train", recipe, "--out", tmp_path / "s", "--models", 2)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and "x_train row 11 has NaN values" in lines[0]
    assert not (tmp_path / "s").exists()


def test_lds_leaves_non_finite_rows_out_and_counts_them():
    rng = np.random.default_rng(0)
    masks = rng.random((30, 20)) < 0.5
    scores = rng.normal(size=(6, 20))
    margins = masks.astype(float) @ scores.T + rng.normal(scale=0.1, size=(30, 6))
    clean = lds(scores, masks, margins, n_boot=50)
    damaged = scores.copy()
    damaged[2] = np.nan
    res = lds(damaged, masks, margins, n_boot=50)
    assert res.n_nonfinite == 1 and np.isnan(res.per_test[2])
    assert res.mean == pytest.approx(np.mean(np.delete(clean.per_test, 2)))
    assert "1 test rows with NaN" in str(res)
    with pytest.raises(UserError, match="all 6 test rows"):
        lds(np.full_like(scores, np.nan), masks, margins, n_boot=50)


def test_non_finite_scores_are_never_written(tmp_path):
    scores = np.ones((4, 6), np.float32)
    scores[1, 2] = np.inf
    with pytest.raises(UserError, match="1 of 4 test rows"):
        write_influence(tmp_path / "s.h5", scores, method="trak")
    assert not (tmp_path / "s.h5").exists()


def test_a_flipped_bit_in_hdf5_scores_is_an_error_on_read(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    path = write_influence(tmp_path / "s.h5", rng.normal(size=(16, 32)).astype(np.float32), method="trak")
    assert np.isfinite(read_influence(path).scores).all()
    with h5py.File(path, "r") as f:
        assert f["scores"].fletcher32
        offset = f["scores"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 17] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"):
        read_influence(path)


class _Linear(nn.Module):
    def __init__(self, num_classes=2, input_shape=(5,)):
        super().__init__()
        self.fc = nn.Linear(input_shape[0], num_classes)

    def forward(self, x):
        return self.fc(x)


def test_outside_models_with_nan_weights_are_left_out_with_a_count(tmp_path, caplog):
    from datamodels.attribution.api import attribute
    from datamodels.modelset import ModelSet

    data = Dataset.from_tensors(*_data())
    for i in range(4):
        torch.manual_seed(i)
        state = _Linear().state_dict()
        if i == 1:
            state["fc.weight"][0, 0] = float("nan")
        torch.save(state, tmp_path / f"model_{i:03d}.pt")
    masks = np.random.default_rng(0).random((4, data.n_train)) < 0.5
    models = ModelSet.from_folder(tmp_path, _Linear, masks, data)
    with caplog.at_level(logging.WARNING, logger="modeldiff"):
        scores = attribute(models, "trak", progress=False, proj_dim=8)
    assert np.isfinite(scores).all() and scores.shape == (data.n_test, data.n_train)
    assert "1 of 4 models have NaN or infinite weights" in caplog.text
    assert list(models.valid_indices()) == [0, 2, 3]
