"""The planted study: does ModelDiff find a feature we know only algorithm A can use?

See :mod:`case_studies.planted.plant` for the construction. Besides the usual study outputs it
reports precision@k (k = 25, 50, 100) of the top A−B component's training examples (ranked by
|weight|) against the planted set, and the counterfactual effect of pasting the feature onto test
images of the other classes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from case_studies.pipeline import load_study_data
from case_studies.planted.plant import plant
from case_studies.run import run_study
from case_studies.study import StudyConfig

PRECISION_AT = (25, 50, 100)


def precision_at(weights: np.ndarray, planted: np.ndarray, ks=PRECISION_AT) -> dict[int, float]:
    """Share of planted examples among the ``k`` largest-|weight| training examples."""
    order = np.argsort(-np.abs(np.asarray(weights)))
    planted = set(np.asarray(planted).tolist())
    return {k: float(np.mean([i in planted for i in order[:k]])) for k in ks}


def run_planted(cfg: StudyConfig, out, device: str = "cpu", data_dir: str | None = None,
                method: str | None = None) -> dict:
    """Run the study on the planted data; adds ``summary["planted"]`` (also in summary.json)."""
    out = Path(out)
    planted = plant(load_study_data(cfg, data_dir), **cfg.plant)
    method = method or cfg.attribution.method
    summary = run_study(cfg, out, device, data_dir, method, data=planted.data,
                        extra_counterfactuals=[(planted.transform(), planted.target_class)])
    weights = np.load(out / "components_a_minus_b.npy")[0]
    reverse = np.load(out / "components_b_minus_a.npy")[0]
    paste = summary["directions"]["a_minus_b"]["counterfactuals"][0]
    summary["planted"] = {
        "n_planted_train": len(planted.planted_train), "target_class": planted.target_class,
        "precision_a_minus_b": precision_at(weights, planted.planted_train),
        "precision_b_minus_a": precision_at(reverse, planted.planted_train),
        "paste_effect": {"transform": paste["transform"], "a": paste["a"], "b": paste["b"], "diff": paste["diff"]},
    }
    (out / f"summary_{method}.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary
