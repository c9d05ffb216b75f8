"""Does a search finding name the planted feature? And does it count, given the no-plant twin?

A search record (one entry of ``summary["directions"][d]["confirmed"]``) *matches* the plant when
it is a local transform (its ``params`` place it in a fixed region of the image: ``region``, or
``loc = [row, col]`` / ``"center"`` with ``size`` or a tensor pattern's shape) whose region
overlaps the planted one enough (:func:`at_place`), and its target class is the planted class.
``kind`` = local at a fixed place (a global transform such as blur, or a patch at random places,
never matches).

A finding **counts** only if it matches in the planted run and the twin (same recipes, nothing
planted) confirms no transform at the same (place, class): whatever the twin confirms there comes
from the recipes (e.g. B's paste augmentation), not from the plant.
"""
from __future__ import annotations

from modeldiff.counterfactual.regions import area, overlap, params_region

TOP = 3  # the headline and the next confirmed ones: "one of the top 3 confirmed"
COVER_PLANT = 0.5  # the transform must cover at least this share of the planted region ...
COVER_SELF = 0.25  # ... and the planted region at least this share of the transform (not half the image)


def record_region(rec: dict, image_hw) -> tuple[int, int, int, int] | None:
    """``[row0, row1, col0, col1]`` a search record's transform writes, or None (not at a fixed place)."""
    return params_region(rec.get("params") or {}, image_hw)


def at_place(region, planted_region) -> bool:
    """The transform's region covers >= ``COVER_PLANT`` of the planted region, and the planted region
    >= ``COVER_SELF`` of the transform's."""
    if region is None:
        return False
    shared = overlap(region, planted_region)
    return shared >= COVER_PLANT * area(planted_region) and shared >= COVER_SELF * area(region)


def match(rec: dict, planted_region, target_class: int, image_hw) -> dict:
    """``{"place", "class", "kind", "match"}`` of one search record against the plant."""
    region = record_region(rec, image_hw)
    place = at_place(region, tuple(planted_region))
    cls = int(rec.get("target_class", -1)) == int(target_class)
    kind = region is not None
    return {"place": bool(place), "class": bool(cls), "kind": bool(kind), "match": bool(place and cls and kind)}


def direction_matches(direction: dict, planted_region, target_class: int, image_hw, top: int = TOP) -> dict:
    """The plant among a direction's confirmed transforms (best first).

    Returns ``{"headline": bool, "top": bool, "rank": 1-based rank of the first match or None,
    "n_confirmed": int, "records": [match dicts of the first ``top``]}``.
    """
    confirmed = direction.get("confirmed") or []
    found = [match(r, planted_region, target_class, image_hw) for r in confirmed]
    rank = next((i + 1 for i, m in enumerate(found) if m["match"]), None)
    return {"headline": rank == 1, "top": rank is not None and rank <= top, "rank": rank,
            "n_confirmed": len(confirmed), "records": found[:top]}


def twin_confirms_place(twin_direction: dict, planted_region, target_class: int, image_hw) -> bool:
    """Whether the no-plant twin confirms any transform at the planted (place, class), at any rank."""
    return direction_matches(twin_direction, planted_region, target_class, image_hw,
                             top=10 ** 9)["rank"] is not None


def counted(planted: dict, twin_at_place: bool) -> dict:
    """The finding counts only with the plant and not in the twin: ``{"headline", "top"}`` booleans."""
    return {"headline": bool(planted["headline"] and not twin_at_place),
            "top": bool(planted["top"] and not twin_at_place)}
