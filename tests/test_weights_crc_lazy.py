"""Cheap integrity without weakening it: opening a store checks weights files by size only
(no weights byte is read); a weights file's CRC-32 is checked when it is loaded or selected for an
attribution, and ``modeldiff verify`` still checks everything."""
import numpy as np
import pytest

from datamodels.base.errors import UserError
from datamodels.store import verify as verify_mod
from datamodels.store.store import Store
from tests.integrity_helpers import error_lines, make_store, run_cli


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """A finished 6-model store whose model 2 weights file has one bit flipped (same size)."""
    root = tmp_path_factory.mktemp("crc")
    store = make_store(root)
    file = store / "weights" / "model_000002.pt"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x04
    file.write_bytes(bytes(data))
    return store


def test_open_reads_no_weights_bytes(flipped, monkeypatch):
    calls = []
    real = verify_mod.file_crc
    monkeypatch.setattr(verify_mod, "file_crc", lambda f: calls.append(f) or real(f))
    store = Store.open(flipped)
    assert 2 in store.valid_indices().tolist()  # size intact: the open cannot tell
    assert calls == []
    store.load_model(0)  # an intact model loads (its bytes are checked as they are read)


def test_flipped_weights_are_refused_when_loaded(flipped):
    store = Store.open(flipped)
    with pytest.raises(UserError, match=r"weights/model_000002\.pt: checksum differs.*--repair"):
        store.load_model(2)


def test_verify_still_checks_every_crc(flipped):
    report = verify_mod.verify(flipped)
    assert sorted(report.rows) == [2] and "checksum" in report.rows[2][0]
    code, out, _ = run_cli("verify", flipped)
    assert code == 2 and "DAMAGED row 2" in out


def test_attribution_checks_the_models_it_selects(flipped, tmp_path):
    args = ["--quiet", "--models", "3", "--proj-dim", "8"]
    code, _, err = run_cli("attribute", flipped, "--out", tmp_path / "a.h5", *args)
    assert code == 2 and len(error_lines(err)) == 1 and "model_000002.pt" in err and not (tmp_path / "a.h5").exists()
    code, out, err = run_cli("attribute", flipped, "--out", tmp_path / "b.h5", *args, "--use-valid-only")
    assert code == 0, err
    from datamodels.attribution.influence_io import read_influence

    ranges = read_influence(tmp_path / "b.h5", load_scores=False).method_params["model_ranges"]
    assert ranges == [[0, 2], [3, 4]] and "from 3 models" in out  # model 3 took damaged model 2's place


def test_predictions_skip_or_refuse_the_damaged_model(flipped):
    x = Store.open(flipped).load_dataset().x_test[:4]
    with pytest.raises(UserError, match="model_000002.pt"):
        Store.open(flipped).predict_proba(x)
    probs = Store.open(flipped, use_valid_only=True).predict_proba(x)
    assert probs.shape[0] == 5 and np.isfinite(probs.numpy()).all()


def test_training_resume_repairs_a_flipped_weights_file(flipped, tmp_path):
    """The training coordinator checks every CRC (it is the repair path)."""
    import shutil

    store = shutil.copytree(flipped, tmp_path / "s")
    assert Store.open(store).make_writable().corrupted_indices().tolist() == [2]
