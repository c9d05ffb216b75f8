"""The study's diagnostics stage (``diagnostics: {models: N}``): per-algorithm table and plot in
both reports, keys in summary.json, diagnostics/ files, reuse on rerun; off by default."""
import json

import pytest
import yaml

from datamodels.base.errors import UserError
from modeldiff.studies.config import load_study
from modeldiff.studies.run import run_study

RECIPE = {"data": {"name": "digits"}, "model": {"arch": "digits_cnn", "width": 4}, "epochs": 2,
          "augment": {"flip": False, "translate": 0, "cutout": 0}}


def _study(tmp_path, **extra):
    study = {"name": "tiny_diag",
             "algorithm_a": {"recipe": {**RECIPE, "name": "hi", "batch_size": 16,
                                        "optim": {"lr": 0.1, "momentum": 0.9}}, "label": "high noise"},
             "algorithm_b": {"recipe": {**RECIPE, "name": "lo", "batch_size": 128,
                                        "optim": {"lr": 0.02, "momentum": 0.9}}, "label": "low noise"},
             "models": 4, "ensemble_size": 4, "components": 2,
             "attribution": {"method": "trak", "models": 2, "proj_dim": 64},
             "calibration": {"enabled": False}, "search": {"enabled": False},
             "counterfactual": {"auto_candidates": 0, "transforms": [], "n_test": 20, "bootstrap": 50}, **extra}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return load_study(str(path))


def test_diagnostics_off_by_default(tmp_path):
    assert _study(tmp_path).diagnostics.models == 0
    for name in ("sgd_noise", "sgd_noise/cifar10"):
        assert load_study(name).diagnostics.models == 0


def test_bad_diagnostics_key_is_one_line(tmp_path):
    with pytest.raises(UserError, match="diagnostics"):
        _study(tmp_path, diagnostics={"models": 2, "probes": 1})
    with pytest.raises(UserError, match="unknown study key 'diagnostics.probs'"):
        _study(tmp_path, diagnostics={"probs": 4})


@pytest.mark.slow
def test_study_with_diagnostics_section(tmp_path, caplog):
    caplog.set_level("INFO", logger="modeldiff")
    cfg = _study(tmp_path, diagnostics={"models": 2, "probes": 3, "lanczos_steps": 4})
    out = tmp_path / "run"
    summary = run_study(cfg, out, "cpu")
    assert "diagnostics (2 models each)" in caplog.text
    diag = summary["diagnostics"]
    assert diag["algorithms"]["a"]["label"] == "high noise" and diag["algorithms"]["b"]["label"] == "low noise"
    for tag, eta_b in (("a", 0.1 / 16), ("b", 0.02 / 128)):
        alg = diag["algorithms"][tag]
        assert alg["models"] == 2
        for key in ("eta_over_b", "train_loss", "lambda_max", "eos_threshold", "hessian_fro", "hessian_fro_se",
                    "alignment", "stability_ratio"):
            assert alg[key]["mean"] is not None and alg[key]["n"] == 2, (tag, key)
        assert alg["eta_over_b"]["mean"] == pytest.approx(eta_b)
        assert alg["lambda_max"]["mean"] > 0 and alg["hessian_fro"]["mean"] >= alg["lambda_max"]["mean"] * 0.99
        assert -1.0001 <= alg["alignment"]["mean"] <= 1.0001
    assert "‖H‖_F" in diag["comparison"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["diagnostics"] == json.loads(json.dumps(diag))
    doc = json.loads((out / "diagnostics" / "diagnostics.json").read_text())
    assert [len(r["models"]) for r in doc["algorithms"]] == [2, 2]
    assert all(e["trace_sigma_h_method"] == "probes" for r in doc["algorithms"] for e in r["models"])
    assert (out / "diagnostics" / "report.html").is_file()
    for d in ("a_minus_b", "b_minus_a"):
        html = (out / f"report_{d}" / "report.html").read_text()
        assert "Sharpness and SGD-noise diagnostics" in html and "stability" in html and "2/η" in html
        assert html.count("<img") >= 2
    # a rerun reuses the stage's file (same settings, same finished models)
    stamp = (out / "diagnostics" / "diagnostics.json").stat().st_mtime_ns
    again = run_study(cfg, out, "cpu")
    assert (out / "diagnostics" / "diagnostics.json").stat().st_mtime_ns == stamp
    assert again["diagnostics"] == diag
