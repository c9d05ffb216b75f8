"""Where a transform writes: the fixed region of a local transform (a patch or stroke at a place), read
from its parameters as a search record keeps them (``params``), and distinct picks by region.

A region is ``(row0, row1, col0, col1)``, rows ``row0 <= r < row1``. Transforms with no fixed place (a
patch at random places, blur, tint, ...) have none.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

REDUNDANT_OVERLAP = 0.5  # two same-class findings whose regions share this much of the smaller one are one finding


def params_shape(p: dict) -> tuple[int | None, int | None]:
    """``(height, width)`` of what a transform with parameters ``p`` pastes, or ``(None, None)``."""
    pattern = p.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("tensor("):
        dims = [int(v) for v in re.findall(r"\d+", pattern)]
        if len(dims) >= 2:
            return dims[-2], dims[-1]
    if "height" in p and "width" in p:
        return int(p["height"]), int(p["width"])
    if "size" in p:  # a square patch or glyph; bars are one pixel thick
        return {"hbar": (1, int(p["size"])), "vbar": (int(p["size"]), 1)}.get(pattern, (int(p["size"]), int(p["size"])))
    return None, None


def params_region(p: dict, image_hw) -> tuple[int, int, int, int] | None:
    """The region a transform with parameters ``p`` writes on ``image_hw`` images, or None (no fixed place):
    ``region: [r0, r1, c0, c1]``, or ``loc: [row, col]`` / ``"center"`` with a size."""
    p = p or {}
    if isinstance(p.get("region"), (list, tuple)) and len(p["region"]) == 4:
        return tuple(int(v) for v in p["region"])
    h, w = params_shape(p)
    loc = p.get("loc")
    if h is None:
        return None
    height, width = (int(v) for v in image_hw)
    if isinstance(loc, (list, tuple)) and len(loc) == 2:
        r, c = int(loc[0]), int(loc[1])
    elif loc == "center":
        r, c = (height - h) // 2, (width - w) // 2
    else:  # "random" or absent
        return None
    return r, r + h, c, c + w


def overlap(a, b) -> int:
    """Pixels two regions share."""
    rows = min(a[1], b[1]) - max(a[0], b[0])
    cols = min(a[3], b[3]) - max(a[2], b[2])
    return max(rows, 0) * max(cols, 0)


def area(a) -> int:
    return (a[1] - a[0]) * (a[3] - a[2])


def distinct_picks(rows: Sequence[dict], regions: Sequence, n: int) -> list[int]:
    """Positions of the first ``n`` of ``rows`` (ranked dicts with ``target_class``) that are distinct: a
    row is skipped when an earlier pick has the same target class and a region sharing at least
    :data:`REDUNDANT_OVERLAP` of the smaller region (``regions[i]``: row i's region or None; rows without
    a region are always distinct)."""
    picked: list[int] = []
    for i, row in enumerate(rows):
        if len(picked) == n:
            break
        r = regions[i]
        if r is not None and any(regions[j] is not None and rows[j]["target_class"] == row["target_class"]
                                 and overlap(r, regions[j]) >= REDUNDANT_OVERLAP * min(area(r), area(regions[j]))
                                 for j in picked):
            continue
        picked.append(i)
    return picked
