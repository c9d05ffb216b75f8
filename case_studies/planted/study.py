"""The planted study: does ModelDiff find a feature we know only algorithm A can use?

See :mod:`case_studies.planted.plant` for the construction. Besides the usual study outputs it
reports precision@k (k = 25, 50, 100) of the top A−B component's training examples (ranked by
|weight|) against the planted set, and the counterfactual effect of pasting the feature onto test
images of the other classes.
"""
from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import numpy as np

from modeldiff.studies.pipeline import load_study_data
from case_studies.planted.plant import plant
from modeldiff.studies.run import run_study
from modeldiff.studies.config import StudyConfig
from modeldiff.errors import UserError

log = logging.getLogger(__name__)

PRECISION_AT = (25, 50, 100)


def precision_at(weights: np.ndarray, planted: np.ndarray, ks=PRECISION_AT) -> dict[int, float]:
    """Share of planted examples among the ``k`` largest-|weight| training examples."""
    order = np.argsort(-np.abs(np.asarray(weights)))
    planted = set(np.asarray(planted).tolist())
    return {k: float(np.mean([i in planted for i in order[:k]])) for k in ks}


def planted_recipes(cfg: StudyConfig, planted, data_dir=None):
    """The study's recipes with B blind to exactly the planted region (A must see all of it)."""
    a, b = cfg.recipes(data_dir)
    if a.model.blind_region is not None:
        raise UserError(f"algorithm A's recipe ({a.name}) must see every pixel: remove its model.blind_region")
    region = list(planted.region)
    if b.model.blind_region is None or list(b.model.blind_region) != region:
        log.info("planted study: algorithm B's model.blind_region set to plant.region %s", region)
        b = b.replace(**{"model.blind_region": region})
    return a, b


def run_planted(cfg: StudyConfig, out, device: str = "cpu", data_dir: str | None = None,
                method: str | None = None) -> dict:
    """Run the study on the planted data; adds ``summary["planted"]`` (also in summary.json)."""
    out = Path(out)
    known = set(inspect.signature(plant).parameters) - {"data"}
    if set(cfg.plant) - known:
        raise UserError(f"unknown plant key(s) {sorted(set(cfg.plant) - known)}: use {sorted(known)}")
    planted = plant(load_study_data(cfg, data_dir), **cfg.plant)
    method = method or cfg.attribution.method
    summary = run_study(cfg, out, device, data_dir, method, data=planted.data,
                        extra_counterfactuals=[(planted.transform(), planted.target_class)],
                        counterfactual_rows=planted.clean_test_rows, recipes=planted_recipes(cfg, planted, data_dir))
    weights = np.load(out / "components_a_minus_b.npy")[0]
    reverse = np.load(out / "components_b_minus_a.npy")[0]
    paste = summary["directions"]["a_minus_b"]["counterfactuals"][0]
    summary["planted"] = {
        "n_planted_train": len(planted.planted_train), "target_class": planted.target_class,
        "n_pasted_test": 0 if planted.pasted_test is None else len(planted.pasted_test),
        "precision_a_minus_b": precision_at(weights, planted.planted_train),
        "precision_b_minus_a": precision_at(reverse, planted.planted_train),
        "paste_effect": {"transform": paste["transform"], "a": paste["a"], "b": paste["b"], "diff": paste["diff"]},
    }
    (out / f"summary_{method}.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def format_planted(planted: dict) -> str:
    """Two lines: precision@k both ways and the pasted feature's effect on A and B."""
    prec = lambda d: ", ".join(f"@{k} {v:.2f}" for k, v in d.items())
    a, b = planted["paste_effect"]["a"], planted["paste_effect"]["b"]
    return (f"  planted set ({planted['n_planted_train']} training images): precision A−B {prec(planted['precision_a_minus_b'])}"
            f"; B−A {prec(planted['precision_b_minus_a'])}\n"
            f"  pasting the feature -> class {planted['target_class']}: A {a['mean']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}], "
            f"B {b['mean']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")
