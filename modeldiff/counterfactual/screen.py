"""Screening: a cheap first pass of the search's discovery stage over every candidate.

Discovery evaluates every (transform, class) candidate on every discovery model; with the stroke
and square families an 8×8 library has ~1,300 candidates and that pass dominates the search's time.
Screening evaluates every candidate on the first ``screen_models`` models of each algorithm's
discovery half only, keeps the ``keep`` best of each direction by the point estimate of the
class-specific effect (``min(mean s_first − mean s_second, mean s_first)``, and for the
``"exclusive"`` ranking ``mean s_first − 3 mean s_second`` too; see
:mod:`modeldiff.counterfactual.ranking`), and evaluates those on the whole discovery half.

Screening uses discovery models and inputs only, so the confirmation (other models, other inputs)
keeps its validity. What it can cost is power: a candidate whose effect is invisible on a few
models is not confirmed. ``benchmarks/search_cost.py`` and the planted grid measure both.
"""
from __future__ import annotations

import numpy as np

from modeldiff.counterfactual.ranking import specific

SCREEN_MODELS = 4   # models per algorithm in the screening pass (the first ones of each discovery half)
SCREEN_KEEP = 100   # candidates kept per direction for the full discovery pass


class Discovery(list):
    """Discovery effects, one ``(e_a [m_a, K], e_b [m_b, K])`` log-odds pair per candidate.

    ``screened_out``: indices of the candidates that did not pass the screening; their effects are
    the screening models' only and they are never confirmed.
    """

    def __init__(self, items=(), screened_out=()):
        super().__init__(items)
        self.screened_out = frozenset(int(i) for i in screened_out)


def allowed_classes(candidates, k: int) -> list[np.ndarray]:
    """Per candidate the classes it may target: its own, or every one of ``k``."""
    return [np.arange(k) if target is None else np.array([int(target)]) for _, target in candidates]


def screen_scores(effects: list, allowed: list, ratio: float = 1.0) -> np.ndarray:
    """``[n_candidates, 2]``: per direction (A−B, B−A) the best allowed class's point score
    ``min(mean s_first − mean s_second, mean s_first − ratio · mean s_second, mean s_first)``
    (``s``: class-specific log-odds effects; ``ratio``: :func:`modeldiff.counterfactual.ranking.ranking_ratio`)."""
    out = np.empty((len(effects), 2))
    for i, (ea, eb) in enumerate(effects):
        sa, sb = specific(ea).mean(0), specific(eb).mean(0)
        cls = np.asarray(allowed[i])
        for d, (first, second) in enumerate(((sa, sb), (sb, sa))):
            out[i, d] = np.max(np.minimum.reduce([first - second, first - ratio * second, first])[cls])
    return out


def kept_indices(effects: list, allowed: list, keep: int, ratio: float = 1.0) -> np.ndarray:
    """Sorted indices of the candidates in the top ``keep`` of either direction's screening score."""
    scores = screen_scores(effects, allowed, ratio)
    top = set()
    for d in range(scores.shape[1]):
        order = np.lexsort((np.arange(len(scores)), -scores[:, d]))  # best first, ties by index
        top.update(int(i) for i in order[:keep])
    return np.array(sorted(top), dtype=int)
