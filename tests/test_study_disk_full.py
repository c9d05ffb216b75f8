"""A full disk (simulated ENOSPC) during ``modeldiff study``: at training, at attribution and at the
final writes and while a report folder is written, each run ends with one ``error:`` line and exit 2, leaves no half-written file and
no damaged store, and the run after space is freed gives results equal to an uninterrupted run."""
import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datamodels.attribution.influence_io import InfluenceWriter, read_influence
from datamodels.store.verify import verify
from tests.helpers_train import write_recipe
from tests.integrity_helpers import error_lines, run_cli

pytestmark = pytest.mark.slow  # full studies: runs in the full suite, not the developer loop


ARRAYS = ("masks", "seeds", "test_margins", "test_logits", "accuracy", "status", "checksums", "weight_records")


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def tiny_study(folder):
    """Two tiny digits algorithms, every stage on (null calibration, search, counterfactuals)."""
    recipe = write_recipe(folder, epochs=1)
    study = {"name": "tiny", "algorithm_a": {"recipe": recipe.name, "label": "A"},
             "algorithm_b": {"recipe": recipe.name, "label": "B", "seed": 1}, "models": 4, "ensemble_size": 2,
             "components": 2, "attribution": {"method": "trak", "models": 4, "proj_dim": 16},
             "counterfactual": {"transforms": ["patch:pattern=texture,size=2"], "auto_candidates": 1, "n_test": 20,
                                "bootstrap": 50},
             "calibration": {"splits": 5, "groups": 2},
             "search": {"families": ["blur", "shift"], "n_inputs": 20, "n_resamples": 50, "overlays": 1}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _leftovers(folder):
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def _summary(out):
    s = json.loads((out / "summary.json").read_text())
    for d in s["directions"].values():
        d.pop("report", None)
    return s


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("study_ref")
    study = tiny_study(root)
    code, _, err = run_cli("study", study, "--out", root / "out")
    assert code == 0, err
    # progress a person can follow: stage headings and one heading per attributed model
    for line in ("[1/6] training both algorithms", "attributing A: model 1 of 4 (store row 0)",
                 "attributing B: model 4 of 4", "null calibration: split 5 of 5", "transform 1 of"):
        assert line in err, (line, err[-3000:])
    return study, root / "out"


def _full(code, err, out):
    assert code == 2 and len(error_lines(err)) == 1 and "no space left" in error_lines(err)[0], err
    assert "Traceback" not in err
    assert not _leftovers(out), _leftovers(out)
    for tag in "ab":
        if (out / f"store_{tag}").exists():
            assert verify(out / f"store_{tag}").ok, verify(out / f"store_{tag}").lines()


def test_study_disk_full_at_each_stage_then_rerun_equals(reference, tmp_path, monkeypatch):
    study, ref = reference
    out = tmp_path / "out"
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *a, **k):  # the disk fills after 3 weights files
        calls.append(f)
        if len(calls) > 3:
            _enospc()
        return real_save(obj, f, *a, **k)

    with monkeypatch.context() as m:  # 1. during training
        m.setattr(torch, "save", save_until_full)
        code, _, err = run_cli("study", study, "--out", out)
    _full(code, err, out)
    with monkeypatch.context() as m:  # 2. while the scores are written
        m.setattr(InfluenceWriter, "write_rows", _enospc)
        code, _, err = run_cli("study", study, "--out", out)
    _full(code, err, out)
    assert not list(out.glob("scores_*.h5"))
    with monkeypatch.context() as m:  # 3. at the final writes (components, after the reports)
        m.setattr(np, "save", _enospc)
        code, _, err = run_cli("study", study, "--out", out)
    _full(code, err, out)
    assert not (out / "summary.json").exists()
    real_write_text = Path.write_text

    def report_page_full(self, *a, **k):  # the disk fills as a report's page is written (figures already are)
        if self.name == "report.html":
            _enospc()
        return real_write_text(self, *a, **k)

    for folder in out.glob("report_*"):  # written whole by run 3; run 4 must not leave a partial one
        shutil.rmtree(folder)
    with monkeypatch.context() as m:  # 4. while a report folder is written: no half-written report folder
        m.setattr(Path, "write_text", report_page_full)
        code, _, err = run_cli("study", study, "--out", out)
    _full(code, err, out)
    assert not list(out.glob("report_*")), list(out.glob("report_*"))
    code, _, err = run_cli("study", study, "--out", out)  # space freed
    assert code == 0, err
    assert _summary(out) == _summary(ref)
    for tag in "ab":
        for name in ARRAYS:
            np.testing.assert_array_equal(np.load(out / f"store_{tag}" / f"{name}.npy"),
                                          np.load(ref / f"store_{tag}" / f"{name}.npy"), f"{tag} {name}")
        np.testing.assert_array_equal(read_influence(out / f"scores_{tag}_trak.h5").scores,
                                      read_influence(ref / f"scores_{tag}_trak.h5").scores)
    for d in ("a_minus_b", "b_minus_a"):
        np.testing.assert_array_equal(np.load(out / f"components_{d}.npy"), np.load(ref / f"components_{d}.npy"))
        assert (out / f"report_{d}" / "report.html").is_file()
