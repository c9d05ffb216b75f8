"""Real data: the SGD-noise pipeline on a CIFAR-10 subset, every stage checked for sane output."""
import json
import math

import numpy as np
import pytest

from datamodels.attribution.influence_io import read_influence
from modeldiff.studies.config import load_study
from modeldiff.studies.run import run_study
from tests._requirements import require_cifar10_dir

pytestmark = pytest.mark.slow  # CIFAR-10 study: runs in the full suite, not the developer loop


def test_sgd_noise_pipeline_on_cifar10_subset(tmp_path):
    data_dir = require_cifar10_dir()
    cfg = load_study("sgd_noise/cifar10_ci")
    summary = run_study(cfg, tmp_path, data_dir=str(data_dir))
    for alg in summary["algorithms"].values():
        assert alg["models"] == cfg.models and alg["diverged"] == 0
        assert alg["accuracy"] > 0.13, alg  # chance is 0.10 on 10 classes
    for tag in "ab":
        scores = read_influence(tmp_path / f"scores_{tag}_trak.h5")
        assert scores.scores.shape == (100, 200) and np.isfinite(scores.scores).all()
        assert np.abs(scores.scores).max() > 0
    for direction in summary["directions"].values():
        assert all(math.isfinite(v) for v in direction["explained_variance_a"] + direction["explained_variance_b"])
        assert len(direction["counterfactuals"]) >= 4  # 2 overlays + texture + window
        assert any("texture" in c["transform"] for c in direction["counterfactuals"])
        html = open(direction["report"]).read()
        assert "<img" in html and "Counterfactual" in html
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["dataset"] == "cifar10"
