"""How the transformation search ranks its discovery candidates, and the practical size of an effect.

Two rankings of a (transform T, target class c) pair from the per-model log-odds effects
``e[m, k]`` of the discovery half (``m`` models, effect towards class ``k`` on inputs not of
class ``k``; "first" is the algorithm the direction says relies more):

* ``"t"`` — ``min(t_Welch(first − second), t(first))`` at class c. A t-statistic rewards
  *consistency*: an occluder that nudges every model by 0.1 log-odds (t = 20) outranks a learnt
  shortcut that moves models by 2 ± 1.5 (t = 5), although only the second is a feature the
  algorithm learnt.
* ``"effect"`` — the *lower confidence bound* of a class-specific effect size in log-odds.
  The class-specific effect of one model is ``s_c = e_c − mean_{k≠c} e_k`` (what T does towards c
  beyond what it does towards every class: a transform that raises every class's log-odds, e.g.
  by flattening the image, gets s ≈ 0). The score is
  ``min(LCB(mean s_first − mean s_second), LCB(mean s_first))`` with one-sided ``level`` t-bounds
  (Welch's degrees of freedom for the difference): large effects win unless they are so variable
  that their bound falls below a smaller, surer one.

Practical size of a confirmed effect (:func:`practical_size`): beside the log-odds test, the
probability change and the share of predictions that flip to the target class, per algorithm;
an effect is *negligible in probability* when both differences between the algorithms are below
``PRACTICAL_MIN`` (one percentage point).
"""
from __future__ import annotations

import numpy as np

RANKINGS = ("exclusive", "effect", "t")
# the ranking a search uses unless told otherwise: "exclusive" found the plant in more of the seeded planted
# grid's variants than "effect" with the same models, its twins and the null clean (benchmarks/rerun_search.py)
DEFAULT_RANKING = "exclusive"
# (transform, class) pairs ranked per transform: its 2 best classes, so a transform whose best class is a
# reaction any model has can still bring its second (the planted grid: benchmarks/planted_grid.py)
CLASSES_PER_TRANSFORM = 2
EXCLUSIVE_RATIO = 3.0  # "exclusive": A's class-specific effect must exceed 3x B's ("B relies at most a third as much")
PRACTICAL_MIN = 0.01  # probability units: below one percentage point an effect is "negligible in probability"


def specific(e: np.ndarray) -> np.ndarray:
    """Class-specific effects ``[m, K]``: ``e_c − mean_{k≠c} e_k`` per model and class."""
    k = e.shape[-1]
    return e - (e.sum(axis=-1, keepdims=True) - e) / max(k - 1, 1)


def _t_quantile(level: float, df) -> np.ndarray:
    from scipy import stats

    return stats.t.ppf(level, np.maximum(df, 1.0))


def _welch(first: np.ndarray, second: np.ndarray):
    """Mean difference, its standard error and Welch's degrees of freedom over models (axis 0)."""
    va, vb = first.var(0, ddof=1) / first.shape[0], second.var(0, ddof=1) / second.shape[0]
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / np.maximum(va ** 2 / max(first.shape[0] - 1, 1) + vb ** 2 / max(second.shape[0] - 1, 1),
                                     1e-300)
    return first.mean(0) - second.mean(0), np.maximum(se, 1e-12), df


def t_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The ``"t"`` ranking per class ``[K]``: ``min(t_Welch(first − second), t(first))``."""
    diff, se, _ = _welch(first, second)
    own = first.mean(0) / np.maximum(first.std(0, ddof=1) / np.sqrt(first.shape[0]), 1e-12)
    return np.minimum(diff / se, own)


def effect_scores(first: np.ndarray, second: np.ndarray, level: float = 0.95, ratio: float = 1.0) -> dict:
    """The ``"effect"`` ranking per class (``ratio`` > 1: the ``"exclusive"`` one, A's effect beyond
    ``ratio`` times B's): ``{"score", "lcb_diff", "lcb_first", "diff", "specific_first"}`` each ``[K]``."""
    sf, ss = specific(first), specific(second)
    diff, se, df = _welch(sf, ss)
    lcb_diff = diff - _t_quantile(level, df) * se
    n = sf.shape[0]
    own_se = np.maximum(sf.std(0, ddof=1) / np.sqrt(n), 1e-12)
    lcb_first = sf.mean(0) - _t_quantile(level, n - 1) * own_se
    score = np.minimum(lcb_diff, lcb_first)
    if ratio != 1.0:
        beyond, se_r, df_r = _welch(sf, ratio * ss)
        score = np.minimum(score, beyond - _t_quantile(level, df_r) * se_r)
    return {"score": score, "lcb_diff": lcb_diff, "lcb_first": lcb_first, "diff": diff,
            "specific_first": sf.mean(0)}


def ranking_ratio(ranking: str) -> float:
    """How many times B's class-specific effect A's must exceed under ``ranking`` (1 but for ``"exclusive"``)."""
    if ranking not in RANKINGS:
        raise ValueError(f"unknown search ranking {ranking!r}; choose from {', '.join(RANKINGS)}")
    return EXCLUSIVE_RATIO if ranking == "exclusive" else 1.0


def scores(first: np.ndarray, second: np.ndarray, ranking: str, level: float = 0.95) -> np.ndarray:
    """The score per class ``[K]`` of ``ranking`` from per-model effects ``first [m1, K]``, ``second [m2, K]``."""
    if ranking == "t":
        return t_scores(first, second)
    return effect_scores(first, second, level, ranking_ratio(ranking))["score"]


def rank_candidates(disc: list, allowed: list, flip: bool, ranking: str = "effect", level: float = 0.95,
                    screened_out=(), per_transform: int = 1) -> list[dict]:
    """Every candidate at its ``per_transform`` best allowed classes, best first.

    With ``per_transform`` > 1 the ranking is over (transform, class) pairs: a transform that
    moves the models towards a strong class and, less, towards another still has its second class
    ranked beside every other pair (a shortcut at a place where the models also react to other
    things can be the transform's second class, not its first).

    ``disc``: per candidate ``(e_a [m_a, K], e_b [m_b, K])`` discovery log-odds effects;
    ``allowed``: per candidate the classes it may target; ``flip``: the direction is B − A;
    ``screened_out``: indices that did not pass the screening (:mod:`modeldiff.counterfactual.screen`):
    ranked after every other candidate, with ``"screened_out": True``.
    Returns dicts ``{"index", "target_class", "score", "t", "effect_diff", "lcb_diff", "specificity",
    "screened_out"}`` sorted by ``score`` (the chosen ranking's) descending, ties by index.
    """
    ratio = ranking_ratio(ranking)
    out, dropped = [], frozenset(int(i) for i in screened_out)
    for i, (ea, eb) in enumerate(disc):
        first, second = (eb, ea) if flip else (ea, eb)
        t = t_scores(first, second)
        eff = effect_scores(first, second, level, ratio)
        score = t if ranking == "t" else eff["score"]
        cls = np.asarray(allowed[i])
        best = cls[np.lexsort((cls, -score[cls]))][:per_transform]  # best first, ties by class
        for c in map(int, best):
            out.append({"index": i, "target_class": c, "score": float(score[c]), "t": float(t[c]),
                        "effect_diff": float(first[:, c].mean() - second[:, c].mean()),
                        "lcb_diff": float(eff["lcb_diff"][c]), "specificity": float(eff["specific_first"][c]),
                        "screened_out": i in dropped})
    out.sort(key=lambda r: (r["screened_out"], -r["score"], r["index"], r["target_class"]))
    return out


def flip_share(control: np.ndarray, treated: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    """Per model ``[m]``: share of inputs not of class ``c`` whose prediction becomes ``c`` under the transform
    (``control``, ``treated``: probabilities ``[m, n, K]``)."""
    keep = np.asarray(y) != c
    before, after = control[:, keep].argmax(-1), treated[:, keep].argmax(-1)
    return ((after == c) & (before != c)).mean(axis=1) if keep.any() else np.zeros(control.shape[0])


def practical_size(prob_first: np.ndarray, prob_second: np.ndarray, flips_first: np.ndarray,
                   flips_second: np.ndarray) -> dict:
    """Probability change and flip share of each algorithm (means over models) and whether the
    difference is negligible in probability (both differences below :data:`PRACTICAL_MIN`)."""
    dp = float(np.mean(prob_first) - np.mean(prob_second))
    df = float(np.mean(flips_first) - np.mean(flips_second))
    return {"probability_a": float(np.mean(prob_first)), "probability_b": float(np.mean(prob_second)),
            "probability_diff": dp, "flips_a": float(np.mean(flips_first)), "flips_b": float(np.mean(flips_second)),
            "flips_diff": df, "threshold": PRACTICAL_MIN,
            "negligible": bool(abs(dp) < PRACTICAL_MIN and abs(df) < PRACTICAL_MIN)}
