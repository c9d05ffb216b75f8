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
         "status.npy", "checksums.npy", "weight_records.npy", "train_margins.npy", "weights/model_000001.pt"]
FAULTS = ["truncate", "delete", "flip"]
DM = ["--method", "datamodels", "--n-lambdas", "3", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    store = make_store(root, models=12, ensemble=4, save_weights=2)
    intact = Store.open(store)
    masks, margins = np.array(intact.masks), np.array(intact.test_margins)
    rng = np.random.default_rng(0)
    scores = write_influence(root / "random_scores.h5", rng.normal(size=(margins.shape[1], masks.shape[1])),
                             method="random")  # records no store: lds uses every valid eval model
    return root, store, masks, margins, scores


def _expected(masks, margins, rows):
    est = DatamodelsRegression(progress=False, n_lambdas=3)
    return est.fit(masks[rows], margins[rows]).coef_


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
    return np.concatenate([np.arange(a, b) for a, b in ranges])


@pytest.mark.parametrize("name", FILES)
def test_every_fault_is_refused_or_harmless(world, tmp_path, name):
    root, pristine, masks, margins, random_scores = world
    for fault in FAULTS:
        store = tmp_path / f"{fault}"
        shutil.copytree(pristine, store)
        _damage(store / name, fault)
        before = tree_digest(store)
        for extra in ([], ["--use-valid-only"]):
            out = tmp_path / f"{fault}{len(extra)}.h5"
            code, stdout, err = run_cli("attribute", store, "--out", out, *DM, *extra)
            assert code in (0, 2) and "Traceback" not in err, (name, fault, err)
            if code == 2:
                assert len(error_lines(err)) == 1 and not out.exists(), (name, fault, err)
                continue
            rows = _rows(out)
            got = read_influence(out).scores
            np.testing.assert_array_equal(got, _expected(masks, margins, rows), err_msg=f"{name} {fault}")
            assert f"from {len(rows)} models" in stdout
            if not extra:  # without --use-valid-only nothing damaged may be used
                assert set(rows) <= set(range(12))
        # TRAK reads the weights: a damaged weights file is refused, never loaded
        code, _, err = run_cli("attribute", store, "--out", tmp_path / f"{fault}t.h5", "--quiet", "--models", "1",
                               "--proj-dim", "8")
        assert code in (0, 2) and "Traceback" not in err, (name, fault, err)
        if name.startswith("weights/"):
            assert code == 2 and "model_000001.pt" in err, err
        # LDS against the damaged store: refused, or equal on the models it used
        code, stdout, err = run_cli("lds", random_scores, "--against", store, "--bootstrap", "10")
        assert code in (0, 2) and "Traceback" not in err, (name, fault, err)
        if code == 2:
            assert len(error_lines(err)) == 1, err
        else:
            used = Store.open(store).valid_indices()
            want = lds(read_influence(random_scores).scores, masks[used], margins[used], n_boot=10)
            assert str(want) in stdout, (name, fault, stdout)
        assert tree_digest(store) == before, (name, fault)  # readers never wrote
        shutil.rmtree(store)


def test_status_flip_to_pending_is_reported_as_fewer_models(world, tmp_path):
    """A flipped status byte that reads 'pending' is not damage: the row is simply not used (and retrained)."""
    _, pristine, masks, margins, _ = world
    store = shutil.copytree(pristine, tmp_path / "s")
    status = np.lib.format.open_memmap(store / "status.npy", mode="r+")
    status[4] = 0
    status.flush()
    del status
    code, stdout, err = run_cli("attribute", store, "--out", tmp_path / "x.h5", *DM)
    assert code == 0, err
    rows = _rows(tmp_path / "x.h5")
    assert 4 not in rows and "from 11 models" in stdout
    np.testing.assert_array_equal(read_influence(tmp_path / "x.h5").scores, _expected(masks, margins, rows))
