"""The planted study: does ModelDiff find a feature we know only algorithm A can use?

See :mod:`case_studies.planted.plant` for the construction (correctly labelled images of their
own class carrying a faint patch that A can see and B's input layer blanks). Besides the usual
study outputs it reports, against the planted training set:

* precision@k (k = 25, 50, 100) at the **positive end** (the end the report calls "top": the
  largest weights) of four rankings of the training set: the top A−B component (ModelDiff),
  and three controls on the same data — the top B−A component, and the top principal
  component of A's and of B's own row-normalised attributions (what looking at one algorithm
  alone finds);
* how much of the A−B residual variance lies along the planted set, against the top component's
  (:func:`planted_signal`: the top component can only be the planted direction when the share is
  near 1);
* the chance level (share of planted images among training images) and the best possible
  precision at each k (1, or n_planted / k when fewer are planted);
* the counterfactual effect of pasting the plant's own feature onto clean test images of the
  other classes (A's CI must exclude 0: A relies on it), and whether the search's A−B headline
  is a generic patch at the planted place towards the planted class (the plant's own
  transform is never a search candidate; data-derived overlays are off in the planted YAMLs).
"""
from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import numpy as np

from case_studies.planted.plant import plant
from datamodels.base.errors import UserError
from modeldiff.studies.config import StudyConfig
from modeldiff.studies.pipeline import load_study_data
from modeldiff.studies.run import run_study

log = logging.getLogger(__name__)

PRECISION_AT = (25, 50, 100)


def precision_at(weights: np.ndarray, planted: np.ndarray, ks=PRECISION_AT) -> dict[int, float]:
    """Share of planted examples among the ``k`` training examples of largest (signed) weight:
    the positive end, which the report shows as a component's "top" examples."""
    order = np.argsort(-np.asarray(weights, dtype=np.float64), kind="stable")
    planted = set(np.asarray(planted).tolist())
    return {k: float(np.mean([i in planted for i in order[:k]])) for k in ks}


def own_top_component(scores) -> np.ndarray:
    """Top principal component ``[n_train]`` of one algorithm's row-normalised, centred
    attributions (sign: largest |entry| positive, as ModelDiff's components)."""
    x = np.asarray(scores, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
    x -= x.mean(0)
    from sklearn.utils.extmath import randomized_svd
    _, _, vt = randomized_svd(x, 1, random_state=0)
    v = vt[0]
    return v * np.sign(v[np.argmax(np.abs(v))])


def planted_signal(scores_a, scores_b, planted_train, component) -> dict:
    """How much of the A−B residual variance lies along the planted set, against the top component.

    ModelDiff's residuals (rows of A and B L2-normalised, A's row minus its projection on B's,
    columns centred) projected on the unit vector that is uniform over ``planted_train``
    (``planted_variance``) and on ``component`` (the top A−B component, ``top_variance``);
    ``share`` = planted / top: the top component can be the planted direction only when this
    is near 1. ``cosine``: |cos| between the two directions."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (scores_a, scores_b))
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    keep = (na[:, 0] > 0) & (nb[:, 0] > 0)
    a, b = a[keep] / na[keep], b[keep] / nb[keep]
    r = a - (a * b).sum(1, keepdims=True) * b
    r -= r.mean(0)
    v = np.zeros(r.shape[1])
    v[np.asarray(planted_train)] = 1.0
    v /= np.linalg.norm(v)
    c = np.asarray(component, dtype=np.float64)
    c = c / np.linalg.norm(c)
    planted_var, top_var = float(np.mean((r @ v) ** 2)), float(np.mean((r @ c) ** 2))
    return {"planted_variance": planted_var, "top_variance": top_var, "share": planted_var / top_var,
            "cosine": float(abs(v @ c))}


def headline_at_plant(direction: dict, planted) -> dict:
    """Is the direction's search headline a patch over the planted region towards the planted
    class? Returns ``{"transform", "target_class", "at_plant", "effect_a", "effect_b", "b_small"}``."""
    conf = direction.get("confirmed") or []
    if not conf:
        return {"transform": None, "at_plant": False, "b_small": False}
    top = conf[0]
    p = top.get("params", {})
    r0, r1, c0, c1 = planted.region
    at = False
    if "size" in p and isinstance(p.get("loc"), list) and len(p["loc"]) == 2:
        r, c, k = int(p["loc"][0]), int(p["loc"][1]), int(p["size"])
        at = r < r1 and r + k > r0 and c < c1 and c + k > c0   # the patch overlaps the planted region
    lo = top["effects"]["log-odds"]
    a, b = lo["a"], lo["b"]
    b_small = (b["ci_low"] is not None and b["ci_low"] <= 0 <= b["ci_high"]) or abs(b["mean"]) <= a["mean"] / 3
    return {"transform": top["transform"], "target_class": top["target_class"],
            "at_plant": bool(at and top["target_class"] == planted.target_class and "patch" in top["transform"]),
            "effect_a": a, "effect_b": b, "b_small": bool(b_small), "p_adjusted": top["p_adjusted"]}


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
                        counterfactual_rows=planted.clean_test_rows, recipes=planted_recipes(cfg, planted, data_dir),
                        search_exclude=[planted.transform()])
    from datamodels.attribution.influence_io import read_influence

    weights = np.load(out / "components_a_minus_b.npy")[0]
    reverse = np.load(out / "components_b_minus_a.npy")[0]
    scores = {tag: read_influence(out / f"scores_{tag}_{method}.h5").scores for tag in "ab"}
    own = {tag: own_top_component(scores[tag]) for tag in "ab"}
    paste = summary["directions"]["a_minus_b"]["counterfactuals"][0]
    n_train, n_planted = len(planted.data.y_train), len(planted.planted_train)
    summary["planted"] = {
        "n_planted_train": n_planted, "n_train": n_train, "target_class": planted.target_class,
        "region": list(planted.region), "pattern": planted.pattern, "amplitude": planted.amplitude,
        "n_pasted_test": 0 if planted.pasted_test is None else len(planted.pasted_test),
        "chance": n_planted / n_train, "best_possible": {k: min(1.0, n_planted / k) for k in PRECISION_AT},
        "precision_a_minus_b": precision_at(weights, planted.planted_train),
        "precision_b_minus_a": precision_at(reverse, planted.planted_train),
        "precision_a_own": precision_at(own["a"], planted.planted_train),
        "precision_b_own": precision_at(own["b"], planted.planted_train),
        "paste_effect": {"transform": paste["transform"], "a": paste["a"], "b": paste["b"], "diff": paste["diff"]},
        "search_headline": headline_at_plant(summary["directions"]["a_minus_b"], planted),
        "signal": planted_signal(scores["a"], scores["b"], planted.planted_train, weights),
    }
    (out / f"summary_{method}.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def format_planted(planted: dict) -> str:
    """Precision@k (positive end) of ModelDiff and the three controls, chance, the pasted
    feature's effect on A and B, and the search headline."""
    prec = lambda d: ", ".join(f"@{k} {v:.2f}" for k, v in d.items())
    a, b = planted["paste_effect"]["a"], planted["paste_effect"]["b"]
    h = planted.get("search_headline") or {}
    return (f"  planted set ({planted['n_planted_train']} of {planted.get('n_train', '?')} training images, chance "
            f"{planted.get('chance', float('nan')):.3f}); precision at the positive end:\n"
            f"    ModelDiff A−B {prec(planted['precision_a_minus_b'])}\n"
            f"    control B−A   {prec(planted['precision_b_minus_a'])}\n"
            f"    control A own {prec(planted.get('precision_a_own', {}))}\n"
            f"    control B own {prec(planted.get('precision_b_own', {}))}\n"
            + (f"    residual variance along the planted set {planted['signal']['planted_variance']:.3g} vs the top "
               f"component's {planted['signal']['top_variance']:.3g} (share {planted['signal']['share']:.3g})\n"
               if "signal" in planted else "")
            + f"  search A−B headline: {h.get('transform')} (at the plant: {h.get('at_plant')}, B small: {h.get('b_small')})\n"
            f"  pasting the feature -> class {planted['target_class']}: A {a['mean']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}], "
            f"B {b['mean']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")
