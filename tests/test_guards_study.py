"""End to end: a study whose models stay at chance, attributed with 4 TRAK models, says so in
summary.json, on the console and at the top of both reports; a study whose model factory was edited
is refused, and with --allow-changed-code carries a code_changed warning."""
import json

import pytest

from tests.integrity_helpers import error_lines, run_cli

RECIPE = """name: {name}
data: {{name: digits}}
model: {model}
optim: {{lr: {lr}}}
batch_size: 64
epochs: {epochs}
"""
STUDY = """name: {name}
algorithm_a: {{recipe: a.yaml, label: a}}
algorithm_b: {{recipe: b.yaml, label: b}}
models: 4
ensemble_size: 4
attribution: {{method: trak, models: 4, proj_dim: 32}}
search: {{enabled: false}}
counterfactual: {{auto_candidates: 1, transforms: ["blur:sigma=1.0"], sizes: [2], n_test: 20}}
"""


def _study(folder, lr, epochs=1, model="{arch: digits_cnn, width: 4}"):
    for tag, scale in (("a", 1.0), ("b", 0.5)):
        (folder / f"{tag}.yaml").write_text(RECIPE.format(name=tag, lr=lr * scale, epochs=epochs, model=model))
    (folder / "study.yaml").write_text(STUDY.format(name=folder.name))
    return folder / "study.yaml"


@pytest.mark.slow
def test_a_near_chance_study_with_a_four_model_null_is_flagged_everywhere(tmp_path):
    study = _study(tmp_path, lr=1e-5)
    code, out, err = run_cli("study", study, "--out", tmp_path / "out")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    codes = {w["code"] for w in summary["warnings"]}
    assert {"near_chance", "null_uninformative"} <= codes
    assert "warning [near_chance]" in out and "warning [null_uninformative]" in out
    for direction in ("a_minus_b", "b_minus_a"):
        page = (tmp_path / "out" / f"report_{direction}" / "report.html").read_text()
        assert page.index("near_chance") < page.index("Verdict")


@pytest.mark.slow
def test_an_edited_model_factory_is_refused_then_flagged(tmp_path, monkeypatch):
    net = tmp_path / "guard_study_nets.py"
    body = ("from torch import nn\n\n\ndef make(num_classes=10, input_shape=(1, 8, 8)):\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.{act}(), nn.Linear(16, num_classes))\n")
    net.write_text(body.format(act="ReLU"))
    monkeypatch.syspath_prepend(str(tmp_path))
    study = _study(tmp_path, lr=0.05, epochs=3, model="{target: 'guard_study_nets:make'}")
    assert run_cli("study", study, "--out", tmp_path / "out")[0] == 0
    first = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "code_changed" not in {w["code"] for w in first["warnings"]}
    net.write_text(body.format(act="Tanh"))
    code, out, err = run_cli("study", study, "--out", tmp_path / "out")
    assert code == 2 and "guard_study_nets" in error_lines(err)[0]
    code, out, err = run_cli("study", study, "--out", tmp_path / "out", "--allow-changed-code")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "code_changed" in {w["code"] for w in summary["warnings"]} and "warning [code_changed]" in out
