"""`modeldiff diff` on .npy, .pt and .h5 inputs; user errors print one line and exit 2, writing nothing."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from modeldiff import ModelDiff
from modeldiff.cli.main import main
from tests.helpers_train import the_error_line


def scores(tmp_path, n=60, m=90, seed=0):
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(n, m)).astype(np.float32), rng.normal(size=(n, m)).astype(np.float32)
    np.save(tmp_path / "a.npy", A), np.save(tmp_path / "b.npy", B)
    return A, B


def test_diff_npy_writes_everything(tmp_path, capsys):
    A, B = scores(tmp_path)
    out = tmp_path / "out"
    assert main(["diff", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--components", "3",
                 "--out", str(out), "--names", "big lr,small lr"]) == 0
    assert "report.html" in capsys.readouterr().out
    expected = ModelDiff(3).fit(A, B)
    np.testing.assert_allclose(np.load(out / "components.npy"), expected.components_, atol=1e-6)
    assert np.load(out / "test_projections.npy").shape == (60, 3)
    var = json.loads((out / "variances.json").read_text())
    np.testing.assert_allclose(var["explained_variance_a"], expected.explained_variance_a_, rtol=1e-6)
    assert var["names"] == ["big lr", "small lr"] and var["solver"] == "full"
    subs = json.loads((out / "subpopulations.json").read_text())
    assert len(subs) == 3 and len(subs[0]["train_positive"]) == 12
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert not list(tmp_path.glob(".out.tmp*"))


def test_diff_pt_and_h5_with_labels(tmp_path):
    from datamodels.attribution.influence_io import write_influence
    A, B = scores(tmp_path, n=30, m=40)
    torch.save(torch.from_numpy(A), tmp_path / "a.pt")
    torch.save({"scores": torch.from_numpy(B)}, tmp_path / "b.pt")
    assert main(["diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--components", "2",
                 "--out", str(tmp_path / "pt")]) == 0
    labels = dict(train_labels=np.arange(40) % 3, test_labels=np.arange(30) % 3)
    for name, x in (("a", A), ("b", B)):
        write_influence(tmp_path / f"{name}.h5", x, method="trak", **labels)
    assert main(["diff", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--components", "2",
                 "--out", str(tmp_path / "h5"), "--top", "5"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "h5" / "components.npy"),
                               np.load(tmp_path / "pt" / "components.npy"), atol=1e-6)
    subs = json.loads((tmp_path / "h5" / "subpopulations.json").read_text())
    assert sum(c["count"] for c in subs[0]["train_positive_classes"]) == 5


@pytest.mark.parametrize("case,message", [
    ("shape", "different shapes (60, 90) and (60, 89)"),
    ("missing", "does not exist"),
    ("extension", "unknown attribution file type '.csv'"),
    ("components", "n_components=60 must be smaller than the number of usable test rows 60"),
    ("nan", "scores_a has non-finite values"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, case, message):
    A, B = scores(tmp_path)
    a, b, k = tmp_path / "a.npy", tmp_path / "b.npy", "3"
    if case == "shape":
        np.save(b, B[:, :89])
    elif case == "missing":
        b = tmp_path / "nope.npy"
    elif case == "extension":
        b = tmp_path / "b.csv"
        b.write_text("1,2\n")
    elif case == "components":
        k = "60"
    elif case == "nan":
        A[5, 5] = np.nan
        np.save(a, A)
    out = tmp_path / "out"
    assert main(["diff", str(a), str(b), "--components", k, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in the_error_line(err), err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_existing_out_needs_force(tmp_path, capsys):
    scores(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    args = ["diff", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--components", "2", "--out", str(out)]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and (out / "old.txt").exists()
    assert main(args + ["--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "components.npy").exists()


def test_subprocess_exit_code_and_single_line(tmp_path):
    scores(tmp_path)
    result = subprocess.run([sys.executable, "-m", "modeldiff.cli", "diff", str(tmp_path / "a.npy"),
                             str(tmp_path / "missing.npy"), "--components", "2", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert the_error_line(result.stderr).startswith("error: attribution file")
    assert not (tmp_path / "o").exists()
