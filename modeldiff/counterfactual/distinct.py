"""Distinct findings: which ranked discovery candidates the confirmation takes.

A library that draws every shape at every place proposes many near-copies of one reaction (a 4-px
bar at (2, 2) and at (2, 3), a 3-px bar at (2, 3), all towards the same class). Confirming the top
``n_confirm`` of the ranking as it is spends the confirmation on copies of the best finding, and a
second, different feature further down is never tested. :func:`pick_distinct` walks the ranking
best first and skips a candidate that repeats one already taken:

* both are local transforms at a fixed place (:func:`modeldiff.counterfactual.regions.params_region`)
  towards the same class, and their regions share at least ``SAME_PLACE`` of the smaller one;
* or neither has a fixed place, and they are of the same kind (the transform's class) towards the
  same class (blur at two strengths is one finding).

It changes only which candidates are confirmed, never how: the confirmation half, the Holm
adjustment over the tested candidates (at most ``n_confirm`` per direction) and the confirmation
rule are those of the search.
"""
from __future__ import annotations

from modeldiff.counterfactual.regions import area, overlap, params_region

SAME_PLACE = 0.5  # share of the smaller region two local findings must share to be the same finding


def finding_key(transform, params: dict, image_hw):
    """``("place", region)`` for a transform at a fixed place, else ``("kind", type name)``."""
    region = params_region(params, image_hw)
    return ("place", region) if region is not None else ("kind", type(transform).__name__)


def same_finding(a: tuple, b: tuple) -> bool:
    """Whether two ``(finding_key, target_class)`` pairs are the same finding (see the module docstring)."""
    (ka, ca), (kb, cb) = a, b
    if ca != cb or ka[0] != kb[0]:
        return False
    if ka[0] == "kind":
        return ka[1] == kb[1]
    return overlap(ka[1], kb[1]) >= SAME_PLACE * min(area(ka[1]), area(kb[1]))


def pick_distinct(ranked: list[dict], keys: list, n: int) -> list[dict]:
    """The first ``n`` rows of ``ranked`` (dicts with ``index`` and ``target_class``, best first) that
    repeat no row taken before them; ``keys[index]`` is the candidate's :func:`finding_key`.
    Screened-out rows are never taken."""
    taken: list[dict] = []
    seen: list[tuple] = []
    for row in ranked:
        if len(taken) == n or row.get("screened_out"):
            break
        me = (keys[row["index"]], int(row["target_class"]))
        if any(same_finding(me, other) for other in seen):
            continue
        taken.append(row)
        seen.append(me)
    return taken
