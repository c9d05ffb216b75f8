"""The README's "Your own algorithm" examples run as written (in a scratch folder): the Python
version (<= 25 lines) and the study YAML (with fewer models, to stay fast)."""
import re
from pathlib import Path

import pytest
import yaml

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(marker: str, lang: str) -> str:
    pattern = rf"<!-- example: {re.escape(marker)} -->\s*```{lang}\n(.*?)```"
    blocks = re.findall(pattern, README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, f"README must hold exactly one {lang} block marked '<!-- example: {marker} -->'"
    return blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    code = _block("own algorithm (python)", "python")
    assert len(code.strip().splitlines()) <= 25
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README example", "exec"), namespace)  # noqa: S102 - the README block is ours
    summary = namespace["summary"]
    assert summary["algorithms"]["a"]["models"] == 8 and summary["algorithms"]["a"]["accuracy"] > 0.8
    assert len(summary["directions"]["a_minus_b"]["explained_variance_a"]) == 3
    assert summary["directions"]["a_minus_b"]["counterfactuals"], "the user transform was tested"
    out = capsys.readouterr().out
    assert "explained variance under adam" in out and (tmp_path / "runs/adam-vs-sgd/summary.json").is_file()


@pytest.mark.slow
def test_readme_study_yaml_runs(tmp_path, monkeypatch):
    from modeldiff.studies.config import load_study
    from modeldiff.studies.run import run_study

    text = _block("own algorithm (yaml)", "yaml")
    study = yaml.safe_load(text)
    for spec in (study["algorithm_a"], study["algorithm_b"]):  # only user targets name the data and model
        assert ":" in spec["recipe"]["data"]["target"] and ":" in spec["recipe"]["model"]["target"]
    (tmp_path / "study.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    cfg = load_study(str(tmp_path / "study.yaml"))
    cfg.models, cfg.attribution.models = 4, 4  # as `modeldiff study ... --models 4`
    summary = run_study(cfg, tmp_path / "run")
    assert summary["algorithms"]["b"]["label"] == "sgd" and summary["algorithms"]["b"]["models"] == 4
    assert summary["directions"]["b_minus_a"]["counterfactuals"][0]["target_class"] == 0
