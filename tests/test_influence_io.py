"""Influence-dataset export: round trip, chunked writes, atomicity, clear errors."""
import json
import math

import h5py
import numpy as np
import pytest

from datamodels.attribution.influence_io import InfluenceWriter, read_influence, update_attrs, write_influence
from datamodels.base.errors import UserError


def _write(path, scores, **kw):
    n_test, n_train = scores.shape
    rng = np.random.default_rng(1)
    kw.setdefault("train_labels", rng.integers(0, 10, n_train))
    kw.setdefault("test_labels", rng.integers(0, 10, n_test))
    return write_influence(path, scores, method="trak", method_params={"proj_dim": 64, "lam": 0.0},
                           dataset_name="digits", dataset_identity="ab" * 32,
                           recipe_yaml="lr: 0.1\n", n_models=5, store_path="runs/a", **kw)


def test_round_trip_readable_with_h5py_alone(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 13)).astype(np.float32)
    test_idx = rng.permutation(100)[:7]
    _write(tmp_path / "s.h5", scores, test_indices=test_idx)
    inf = read_influence(tmp_path / "s.h5")
    np.testing.assert_array_equal(inf.scores, scores)
    np.testing.assert_array_equal(inf.test_indices, test_idx)
    np.testing.assert_array_equal(inf.train_indices, np.arange(13))
    assert inf.method == "trak" and inf.method_params == {"proj_dim": 64, "lam": 0.0}
    assert inf.n_models == 5 and math.isnan(inf.lds) and inf.recipe_yaml == "lr: 0.1\n"
    with h5py.File(tmp_path / "s.h5", "r") as f:  # the documented plain-h5py route
        assert f["scores"].dtype == np.float32 and f["scores"].chunks is not None
        assert json.loads(f.attrs["method_params"])["proj_dim"] == 64
        assert f.attrs["format"] == "modeldiff-influence"
    update_attrs(tmp_path / "s.h5", lds=0.25)
    assert read_influence(tmp_path / "s.h5").lds == pytest.approx(0.25)


def test_large_matrix_written_in_blocks_out_of_order(tmp_path):
    n_test, n_train = 600, 3000
    rng = np.random.default_rng(2)
    full = rng.normal(size=(n_test, n_train)).astype(np.float32)
    starts = list(range(0, n_test, 128))
    rng.shuffle(starts)
    with InfluenceWriter(tmp_path / "big.h5", n_test, n_train, method="datamodels",
                         compression="gzip") as w:
        for s in starts:
            w.write_rows(s, full[s:s + 128])
        w.set_attr("lds", 0.5)
    inf = read_influence(tmp_path / "big.h5")
    np.testing.assert_array_equal(inf.scores, full)
    assert inf.lds == 0.5 and inf.method == "datamodels"


def test_incomplete_or_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "part.h5"
    with pytest.raises(RuntimeError, match="never written"):
        with InfluenceWriter(path, 10, 4, method="trak") as w:
            w.write_rows(0, np.zeros((5, 4)))
    with pytest.raises(KeyError):
        with InfluenceWriter(path, 10, 4, method="trak") as w:
            w.write_rows(0, np.zeros((10, 4)))
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("attr, value, message", [
    ("method", None, "missing attribute 'method'"),
    ("n_models", "five", "attribute 'n_models' should be of type integer"),
    ("format", "something-else", "not a modeldiff influence dataset"),
    ("format_version", 99, "format_version 99 is not supported"),
    ("method_params", "{not json", "not valid JSON"),
])
def test_wrong_attribute_gets_clear_error(tmp_path, attr, value, message):
    path = tmp_path / "s.h5"
    _write(path, np.ones((3, 4), np.float32))
    with h5py.File(path, "r+") as f:
        if value is None:
            del f.attrs[attr]
        else:
            f.attrs[attr] = value
    with pytest.raises(UserError, match=message):
        read_influence(path)


def test_not_hdf5_and_missing_dataset(tmp_path):
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(UserError, match="not an HDF5 file"):
        read_influence(tmp_path / "x.h5")
    _write(tmp_path / "s.h5", np.ones((3, 4), np.float32))
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        del f["test_labels"]
    with pytest.raises(UserError, match="missing dataset 'test_labels'"):
        read_influence(tmp_path / "s.h5")
    with pytest.raises(UserError, match="does not exist"):
        read_influence(tmp_path / "nope.h5")
