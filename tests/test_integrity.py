"""Store integrity end to end: verify, read-only readers, weights checksums, exact repair,
ensemble size fixed at creation, stores of the previous release, LDS on truly held-out masks."""
import json
import os

import numpy as np
import pytest

from datamodels.attribution.lds import held_out
from datamodels.base.errors import UserError
from datamodels.store.store import Store
from datamodels.store.verify import verify
from tests.helpers_train import write_recipe
from tests.integrity_helpers import copy_store, error_lines, make_store, run_cli, tree_digest

ARRAYS = ("masks", "seeds", "test_margins", "test_logits", "accuracy", "status", "checksums", "weight_records",
          "train_margins")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("integrity"))


@pytest.fixture
def store(finished, tmp_path):
    return copy_store(finished, tmp_path / "store")


def _retrain(store_dir, ensemble=3):
    recipe = write_recipe(store_dir.parent, name="again.yaml", epochs=1)
    return run_cli("train", recipe, "--out", store_dir, "--models", 6, "--ensemble-size", ensemble, "--seed", 0)


def _same_arrays(a, b):
    for name in ARRAYS:
        x, y = np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy")
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_clean_store_verifies_and_readers_write_nothing(store, tmp_path):
    assert verify(store).ok
    code, out, _ = run_cli("verify", store)
    assert code == 0 and "intact" in out
    before = tree_digest(store)
    code, _, err = run_cli("attribute", store, "--out", tmp_path / "s.h5", "--quiet", "--proj-dim", "16")
    assert code == 0, err
    code, _, err = run_cli("lds", tmp_path / "s.h5", "--against", store, "--bootstrap", 10)
    assert code == 2 and len(error_lines(err)) == 1  # every eval model was attributed: none held out
    assert tree_digest(store) == before
    s = Store.open(store)
    assert not s.masks.flags.writeable and not s.test_margins.flags.writeable


def test_truncated_array_is_never_zero_extended_and_is_repaired_exactly(store, finished):
    size = os.path.getsize(store / "test_margins.npy")
    os.truncate(store / "test_margins.npy", size - 100)
    with pytest.raises(UserError, match=r"test_margins\.npy truncated.*verify .* --repair"):
        Store.open(store)
    code, _, err = run_cli("attribute", store, "--out", store.parent / "s.h5", "--quiet")
    assert code == 2 and len(error_lines(err)) == 1 and "test_margins.npy truncated" in err
    assert os.path.getsize(store / "test_margins.npy") == size - 100  # the reader did not touch it
    code, out, _ = run_cli("verify", store)
    assert code == 2 and "DAMAGED test_margins.npy: truncated" in out
    code, out, err = _retrain(store)
    assert code == 0, err
    assert "repaired" in err and "damaged row(s) [5]" in err  # only the row that lost bytes
    _same_arrays(store, finished)  # bit-identical: same ensemble groups as the first run


def test_damaged_weights_are_detected_refused_and_retrained(store, finished):
    (store / "weights" / "model_000001.pt").unlink()
    w4 = store / "weights" / "model_000004.pt"
    w4.write_bytes(w4.read_bytes()[:-10])
    report = verify(store)
    assert sorted(report.rows) == [1, 4]
    assert "missing" in report.rows[1][0] and "size" in report.rows[4][0]
    code, _, err = run_cli("attribute", store, "--out", store.parent / "s.h5", "--quiet")
    assert code == 2 and len(error_lines(err)) == 1 and "--use-valid-only" in err and "--repair" in err
    code, out, err = run_cli("attribute", store, "--out", store.parent / "s.h5", "--quiet", "--use-valid-only",
                             "--proj-dim", "16")
    assert code == 0, err
    assert "from 4 models of 6" in out and "2 damaged row(s)" in err
    code, out, err = _retrain(store)
    assert code == 0, err
    assert "2 damaged row(s) [1, 4]" in err
    _same_arrays(store, finished)
    name = "weights/model_000001.pt"
    assert (store / name).read_bytes() == (finished / name).read_bytes()


def test_bit_flip_in_a_row_is_found_and_repair_command_works(store, finished):
    m = np.load(store / "test_logits.npy", mmap_mode="r+")
    m[2, 5, 1] += 1.0
    m.flush()
    del m
    code, out, _ = run_cli("verify", store)
    assert code == 2 and "DAMAGED row 2" in out
    code, out, err = run_cli("verify", store, "--repair")
    assert code == 0, out + err
    assert "store intact" in out
    _same_arrays(store, finished)


@pytest.mark.parametrize("content", [b"", b"{}", b'{"format": "modeldiff-store"', b"[1, 2]"])
def test_damaged_metadata_is_one_line_naming_the_file(store, content):
    (store / "metadata.json").write_bytes(content)
    for args in (("verify", store), ("attribute", store, "--out", store.parent / "s.h5"),
                 ("train", write_recipe(store.parent, epochs=1), "--out", store, "--models", 6, "--ensemble-size", 3)):
        code, _, err = run_cli(*args)
        assert code == 2, (args, err)
        lines = error_lines(err)
        assert len(lines) == 1 and "metadata.json" in lines[0] and "Traceback" not in err, err


def test_status_damage_is_repaired(store, finished):
    np.lib.format.open_memmap(store / "status.npy", mode="r+")[3] = 7
    assert "invalid status 7" in verify(store).rows[3][0]
    (store / "checksums.npy").write_bytes(b"")  # empty file
    code, out, err = _retrain(store)
    assert code == 0, err
    _same_arrays(store, finished)


def test_other_ensemble_size_is_refused_on_resume(store):
    code, _, err = _retrain(store, ensemble=2)
    assert code == 2 and "--ensemble-size 3" in error_lines(err)[0]
    assert json.loads((store / "metadata.json").read_text())["ensemble_size"] == 3


def test_store_of_previous_release_opens_and_resumes(store):
    meta = json.loads((store / "metadata.json").read_text())
    meta.pop("ensemble_size")
    meta["arrays"].pop("weight_records")
    (store / "metadata.json").write_text(json.dumps(meta))
    (store / "weight_records.npy").unlink()
    # rows were checksummed with the weight records in them: rewrite them as the old release did
    s = Store.open(store)
    s.arrays["checksums"] = np.load(store / "checksums.npy", mmap_mode="r+")
    for i in range(6):
        s.arrays["checksums"][i] = s._row_checksum(i)
    s.arrays["checksums"].flush()
    report = verify(store)
    assert report.ok and any("earlier release" in n for n in report.notes)
    assert any("ensemble size not recorded" in n for n in report.notes)
    assert len(Store.open(store).valid_indices()) == 6
    code, _, err = _retrain(store, ensemble=2)  # unknown: accepted, then recorded
    assert code == 0 and "recording 2" in err
    assert json.loads((store / "metadata.json").read_text())["ensemble_size"] == 2


def test_held_out_excludes_equal_and_dependent_masks():
    rng = np.random.default_rng(0)
    n = 400
    used = np.zeros((10, n), bool)
    for row in used:
        row[rng.permutation(n)[:200]] = True
    ev = np.zeros((8, n), bool)
    for row in ev:
        row[rng.permutation(n)[:200]] = True
    ev[2] = used[5]  # same subset
    ev[6] = used[1]
    ev[6, np.flatnonzero(used[1])[:20]] = False  # a near copy (90 % overlap)
    ev[6, np.flatnonzero(~used[1])[:20]] = True
    h = held_out(ev, used)
    assert h.n_same == 1 and h.n_dependent == 1
    assert h.keep.tolist() == [True, True, False, True, True, True, False, True]


def test_lds_against_same_seed_store_excludes_shared_subsets(finished, tmp_path):
    other = make_store(tmp_path, models=6, seed=0)  # same seed as the attributed store, other folder
    scores = tmp_path / "s.h5"
    assert run_cli("attribute", finished, "--out", scores, "--quiet", "--proj-dim", "16", "--models", 3)[0] == 0
    code, out, err = run_cli("lds", scores, "--against", other, "--bootstrap", 10)
    assert code == 0, err
    assert "excluded 3 of 6" in err and "same --seed" in err
    assert "3 held-out subsets (3 models)" in out


def test_empty_recipe_and_digits_caps_are_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, _, err = run_cli("train", empty, "--out", tmp_path / "x")
    assert code == 2 and "empty" in error_lines(err)[0]
    capped = write_recipe(tmp_path, name="capped.yaml", data={"name": "digits", "per_class_train": 10})
    code, _, err = run_cli("train", capped, "--out", tmp_path / "y")
    assert code == 2 and "per_class_train" in error_lines(err)[0]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_stale_temporaries_of_killed_runs_are_removed(store, tmp_path):
    dead = 2 ** 22 + 12345  # above the usual pid_max: no such process
    stale = [store / "weights" / f".model_000000.pt.tmp-{dead}-abc", tmp_path / f".s.h5.tmp-{dead}-xyz"]
    for p in stale:
        p.write_bytes(b"half")
    assert any("leftover" in n for n in verify(store).notes)
    assert _retrain(store)[0] == 0
    assert run_cli("attribute", store, "--out", tmp_path / "s.h5", "--quiet", "--proj-dim", "16")[0] == 0
    assert not any(p.exists() for p in stale)
