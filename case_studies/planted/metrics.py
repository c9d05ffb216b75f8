"""Measurements of a planted run against its ground truth: precision of training-set rankings,
the planted direction's share of the residual variance, and each algorithm's reliance on the plant."""
from __future__ import annotations

import numpy as np

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


def reliance(counterfactual: dict) -> dict:
    """A's and B's reliance on the plant from the paste test's result dict (``counterfactual_effects``):
    the mean effect on the planted class's log-odds of pasting the plant on clean test images of the
    other classes, with CIs. ``b_third``: B's upper CI bound is at most a third of A's lower bound
    (a conservative reading of "B's reliance <= A's / 3")."""
    lo = counterfactual.get("log_odds") or {}
    a, b = lo.get("a") or counterfactual["a"], lo.get("b") or counterfactual["b"]
    ratio = b["mean"] / a["mean"] if a["mean"] else float("nan")
    b_third = a["ci_low"] is not None and b["ci_high"] is not None and a["ci_low"] > 0 \
        and b["ci_high"] <= a["ci_low"] / 3
    return {"unit": "log-odds" if lo else "probability", "a": a, "b": b, "b_over_a": ratio,
            "a_relies": bool(a["ci_low"] is not None and a["ci_low"] > 0), "b_third": bool(b_third)}
