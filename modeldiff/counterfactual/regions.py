"""Where a transform writes: the fixed region of a local transform (a patch or stroke at a place), read
from its parameters as a search record keeps them (``params``).

A region is ``(row0, row1, col0, col1)``, rows ``row0 <= r < row1``. Transforms with no fixed place (a
patch at random places, blur, tint, ...) have none.
"""
from __future__ import annotations

import re


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

