"""`modeldiff diagnose` on two tiny digits stores: diagnostics.json keys, the printed table, the report."""
import json

import pytest
from helpers_train import cli, the_error_line, write_recipe

REQUIRED = ("eta_over_b", "train_loss", "lambda_max", "hessian_fro", "hessian_fro_se", "alignment",
            "stability_ratio")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    out = []
    for name, lr, bs in (("noisy", 0.1, 16), ("quiet", 0.02, 128)):
        recipe = write_recipe(root, f"{name}.yaml", epochs=1, batch_size=bs, optim__lr=lr)
        recipe.write_text(recipe.read_text().replace("name: tiny", f"name: {name}"))
        res = cli("train", recipe, "--out", root / name, "--models", 2, "--ensemble-size", 2)
        assert res.returncode == 0, res.stderr
        out.append(root / name)
    return root, out


@pytest.mark.slow
def test_diagnose_two_stores(stores):
    root, (a, b) = stores
    res = cli("diagnose", a, b, "--models", 2, "--probes", 3, "--trace-examples", 3, "--lanczos-steps", 6,
              "--out", root / "d", "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads((root / "d" / "diagnostics.json").read_text())
    assert [r["label"] for r in doc["algorithms"]] == ["noisy", "quiet"]
    for r in doc["algorithms"]:
        assert len(r["models"]) == 2
        for key in REQUIRED:
            assert set(r["summary"][key]) >= {"mean", "ci_low", "ci_high"}, key
            assert all(key in e for e in r["models"])
        s = r["summary"]
        assert s["hessian_fro"]["ci_low"] <= s["hessian_fro"]["mean"] <= s["hessian_fro"]["ci_high"]
        assert s["lambda_max"]["mean"] > 0 and s["hessian_fro"]["mean"] >= s["lambda_max"]["mean"] * 0.99
        assert -1.05 <= s["alignment"]["mean"] <= 1.05  # Cauchy–Schwarz, up to the estimators' noise
    assert doc["summary"]["noisy"]["eta_over_b"]["mean"] == pytest.approx(0.1 / 16)
    assert doc["summary"]["quiet"]["eta_over_b"]["mean"] == pytest.approx(0.02 / 128)
    e = doc["algorithms"][0]["models"][0]
    assert e["stability_ratio"] == pytest.approx(e["hessian_fro"] * 0.1 / 4)
    assert e["eos_threshold"] == pytest.approx(20.0)
    lines = res.stdout.splitlines()
    header = next(line for line in lines if line.startswith("algorithm"))
    for col in ("η/B", "λ_max", "2/η", "‖H‖_F ± se", "alignment", "‖H‖_F·η/√B"):
        assert col in header
    assert any(line.startswith("noisy") for line in lines) and any(line.startswith("quiet") for line in lines)
    assert "has the smaller ‖H‖_F" in res.stdout
    html = (root / "d" / "report.html").read_text()
    assert "data:image/png;base64," in html and "λ_max" in html


def test_diagnose_refuses_bad_input(stores, capsys):
    from modeldiff.cli.main import main

    root, (a, _) = stores
    (root / "exists").mkdir()
    for argv, needle in (([a, "--models", 0, "--out", root / "bad"], "--models"),
                         ([root / "missing", "--out", root / "bad2"], "does not exist"),
                         ([a, "--out", root / "exists"], "--force"),
                         ([a, "--labels", "x,y", "--out", root / "bad3"], "--labels")):
        assert main(["diagnose", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in the_error_line(err), err
