"""Fault injection: every file of a finished store is truncated, deleted and bit-flipped in turn;
each analysis command either refuses with one ``error:`` line, or gives exactly the results of
the undamaged store on the models it reports using. Readers never change the damaged store."""
import os
import shutil

import numpy as np
import pytest

from datamodels.attribution.influence_io import read_influence, write_influence
from datamodels.attribution.lds import lds
from datamodels.attribution.regression import DatamodelsRegression
from datamodels.store.store import Store
from tests.integrity_helpers import error_lines, make_store, run_cli, tree_digest

FILES = ["metadata.json", "masks.npy", "seeds.npy", "test_margins.npy", "test_logits.npy", "accuracy.npy",
         "status.npy", "checksums.npy", "weight_records.npy", "train_margins.npy", "weights/model_000000.pt",
         "weights/model_000001.pt"]
FAULTS = ["truncate", "delete", "flip"]
TRAK = ["--quiet", "--models", "1", "--proj-dim", "8"]
DM = ["--method", "datamodels", "--n-lambdas", "2", "--quiet"]


def _pending(store, row):
    status = np.lib.format.open_memmap(store / "status.npy", mode="r+")
    status[row] = 0
    status.flush()
    del status


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished 12-model store (weights of models 0 and 1), TRAK references on model 0 alone and on
    model 1 alone, and random scores that record no store (lds then uses every valid eval model)."""
    root = tmp_path_factory.mktemp("faults")
    store = make_store(root, models=12, ensemble=4, save_weights=2)
    intact = Store.open(store)
    masks, margins = np.array(intact.masks), np.array(intact.test_margins)
    refs = {}
    assert run_cli("attribute", store, "--out", root / "ref0.h5", *TRAK)[0] == 0
    refs[(0,)] = read_influence(root / "ref0.h5").scores
    only1 = shutil.copytree(store, root / "only1")
    _pending(only1, 0)  # a pending row is simply not used: TRAK then takes model 1
    assert run_cli("attribute", only1, "--out", root / "ref1.h5", *TRAK)[0] == 0
    refs[(1,)] = read_influence(root / "ref1.h5").scores
    rng = np.random.default_rng(0)
    scores = write_influence(root / "random_scores.h5", rng.normal(size=(margins.shape[1], masks.shape[1])),
                             method="random")
    return root, store, masks, margins, scores, refs


def _damage(file, fault):
    if fault == "delete":
        file.unlink()
    elif fault == "truncate":
        os.truncate(file, file.stat().st_size // 2)
    else:
        data = bytearray(file.read_bytes())
        data[-1] ^= 0x01
        file.write_bytes(bytes(data))


def _rows(scores_file):
    ranges = read_influence(scores_file, load_scores=False).method_params["model_ranges"]
    return tuple(int(i) for i in np.concatenate([np.arange(a, b) for a, b in ranges]))


@pytest.mark.parametrize("name", FILES)
def test_every_fault_is_refused_or_harmless(world, tmp_path, name):
    root, pristine, masks, margins, random_scores, refs = world
    for fault in FAULTS:
        store = tmp_path / f"{fault}"
        shutil.copytree(pristine, store)
        _damage(store / name, fault)
        before = tree_digest(store)
        for extra in ([], ["--use-valid-only"]):
            out = tmp_path / f"{fault}{len(extra)}.h5"
            code, stdout, err = run_cli("attribute", store, "--out", out, *TRAK, *extra)
            assert code in (0, 2) and "Traceback" not in err, (name, fault, err)
            if code == 2:
                assert len(error_lines(err)) == 1 and not out.exists(), (name, fault, err)
                if name.startswith("weights/") and not extra:
                    assert name in err, err  # the damaged weights file is named
                continue
            rows = _rows(out)
            np.testing.assert_array_equal(read_influence(out).scores, refs[rows], err_msg=f"{name} {fault}")
            assert "from 1 models" in stdout
        # LDS against the damaged store: refused, or equal on the models it used
        code, stdout, err = run_cli("lds", random_scores, "--against", store, "--bootstrap", "10")
        assert code in (0, 2) and "Traceback" not in err, (name, fault, err)
        if code == 2:
            assert len(error_lines(err)) == 1, err
        else:
            used = Store.open(store, use_valid_only=True).valid_indices(warn=False)
            want = lds(read_influence(random_scores).scores, masks[used], margins[used], n_boot=10)
            assert str(want) in stdout, (name, fault, stdout)
        assert tree_digest(store) == before, (name, fault)  # readers never wrote
        shutil.rmtree(store)


def test_datamodels_on_a_damaged_store_uses_exactly_the_intact_rows(world, tmp_path):
    """--use-valid-only: the damaged row is left out and the result equals the undamaged store's on
    the rows used; a status byte that now reads 'pending' is not damage, the row is just not used."""
    _, pristine, masks, margins, _, _ = world
    store = shutil.copytree(pristine, tmp_path / "s")
    m = np.lib.format.open_memmap(store / "test_margins.npy", mode="r+")
    m[7, 0] += 1.0
    m.flush()
    del m
    _pending(store, 4)
    code, _, err = run_cli("attribute", store, "--out", tmp_path / "x.h5", *DM)
    assert code == 2 and "damaged row(s) [7]" in error_lines(err)[0]
    code, stdout, err = run_cli("attribute", store, "--out", tmp_path / "x.h5", *DM, "--use-valid-only")
    assert code == 0, err
    rows = list(_rows(tmp_path / "x.h5"))
    assert rows == [0, 1, 2, 3, 5, 6, 8, 9, 10, 11] and "from 10 models" in stdout
    want = DatamodelsRegression(progress=False, n_lambdas=2).fit(masks[rows], margins[rows]).coef_
    np.testing.assert_array_equal(read_influence(tmp_path / "x.h5").scores, want)
