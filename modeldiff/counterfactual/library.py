"""The generic candidate library of the confirmatory search (:mod:`modeldiff.counterfactual.search`).

Families (sizes and positions scale with the image; colours with its channels):

* the paper's patches — ``texture`` (black/white checkerboard), ``window`` (bright frame) and
  ``solid`` — at sizes ≈ 1/8, 1/4, 3/8, 1/2 of the image side, at the four corners, the centre
  and a random place per image; solid and window in white and black (grey images) or in
  white, black, red, green, blue, yellow (colour images);
* strokes (``stroke``): horizontal and vertical bars ≈ 1/4, 3/8 and 1/2 of the side long (one
  pixel wide, nothing painted around them); and glyphs in a painted square box ≈ 3/8 of the side:
  a ring, a horizontal, vertical or diagonal line through the box, "+" and "x"; white on black and
  black on white, at every place on a grid of stride ≈ side/8 (every pixel on images up to 15
  pixels), see :func:`stroke_candidates`;
* small squares (``square``): solid white, solid black and black/white texture squares ≈ 1/4 and 3/8 of
  the side, at every place of the same grid (the ``patch`` family has them at the corners and the
  centre only), see :func:`square_candidates`;
* tint (colour images, six colours), grayscale (colour images), Gaussian blur, contrast
  (flatten / stretch), sharpen, one-pixel shifts in four directions, low-pass and high-pass.

Users add kinds from their own packages with ``extra`` (any callables ``x -> x`` or
``(callable, target_class)`` pairs, or ``KIND:key=value`` spec strings, see
:func:`modeldiff.counterfactual.transforms.spec.parse_transform`).
"""
from __future__ import annotations

from modeldiff.counterfactual.transforms import ColorTint, GaussianBlur, Grayscale, PatchPaste, parse_transform
from modeldiff.counterfactual.transforms.contrast import Contrast
from modeldiff.counterfactual.transforms.frequency import HighPass, LowPass
from modeldiff.counterfactual.transforms.patterns import STROKES
from modeldiff.counterfactual.transforms.sharpen import Sharpen
from modeldiff.counterfactual.transforms.shift import Shift

# the generic families, in the order candidates are listed (study search.families, `modeldiff search --families`)
FAMILIES = ("patch", "stroke", "square", "tint", "grayscale", "blur", "contrast", "sharpen", "shift", "lowpass",
            "highpass")
# searched when a study names no families: all of them. Strokes and squares at every place make ~12x the
# candidates (107 -> 1,418 on 8x8 images); the search's screening pass (modeldiff.counterfactual.screen)
# keeps that affordable
DEFAULT_FAMILIES = FAMILIES
GREY_COLOURS = {"white": (1.0,), "black": (0.0,)}
RGB_COLOURS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0),
               "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0)}


def patch_sizes(side: int) -> list[int]:
    return sorted({max(1, round(side * f)) for f in (1 / 8, 1 / 4, 3 / 8, 1 / 2)})


def patch_places(height: int, width: int, size: int) -> list:
    """Corners, centre and random (top-left corners as ``(row, col)``)."""
    places = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), "center", "random"]
    out = []
    for p in places:
        if p not in out:
            out.append(p)
    return out


def grid(extent: int, size: int, stride: int) -> list[int]:
    """Top-left offsets of a ``size``-long object along an ``extent``-long axis, every ``stride``, last one included."""
    last = extent - size
    if last < 0:
        return []
    out = list(range(0, last + 1, stride))
    return out if out[-1] == last else out + [last]


def stroke_candidates(height: int, width: int, colours: dict, seed: int = 0) -> list:
    """Bars, rings, lines and glyphs (:data:`~modeldiff.counterfactual.transforms.patterns.STROKES`) at every place
    of a stride-``max(1, side // 8)`` grid, white on a black box and black on a white one (from ``colours``)."""
    side = min(height, width)
    stride = max(1, side // 8)
    glyph = max(3, round(side * 3 / 8))
    shapes = [(p, n) for p in ("hbar", "vbar") for n in sorted({max(2, round(side * f)) for f in (1 / 4, 3 / 8, 1 / 2)})]
    # glyphs in a painted square box: the ring, the four single lines through it (both diagonals,
    # horizontal, vertical) and their unions "x" and "+"
    shapes += [(p, glyph) for p in ("ring", "diagonal", "antidiagonal", "plus", "cross", "hline", "vline")]
    out = []
    for pattern, size in shapes:
        h, w = {"hbar": (1, size), "vbar": (size, 1)}.get(pattern, (size, size))
        for r in grid(height, h, stride):
            for c in grid(width, w, stride):
                for fg, bg in (("white", "black"), ("black", "white")):  # on a box of the other colour
                    out.append(PatchPaste(pattern, size, (r, c), colours[fg], colours[bg], seed=seed))
    return out


def square_candidates(height: int, width: int, colours: dict, seed: int = 0) -> list:
    """Solid white, solid black and black/white texture squares ≈ 1/4 and 3/8 of the side at every place of
    the stride-``max(1, side // 8)`` grid (on a box of the other colour)."""
    side = min(height, width)
    stride = max(1, side // 8)
    out = []
    for size in sorted({max(2, round(side * f)) for f in (1 / 4, 3 / 8)}):
        for r in grid(height, size, stride):
            for c in grid(width, size, stride):
                out.append(PatchPaste("texture", size, (r, c), seed=seed))
                out.append(PatchPaste("solid", size, (r, c), colours["white"], colours["black"], seed=seed))
                out.append(PatchPaste("solid", size, (r, c), colours["black"], colours["white"], seed=seed))
    return out


def generic_candidates(image_shape, *, families=None, seed: int = 0) -> list:
    """The generic transforms for images ``[C, H, W]`` (see the module docstring).

    ``families``: subset of :data:`FAMILIES` (default :data:`DEFAULT_FAMILIES`, all of them); an
    unknown name is refused in one line.
    """
    from datamodels.base.errors import UserError

    c, h, w = (int(v) for v in image_shape)
    fam = set(families or DEFAULT_FAMILIES)
    unknown = sorted(map(str, fam - set(FAMILIES)))
    if unknown:
        raise UserError(f"unknown search famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}: "
                        f"choose from {', '.join(FAMILIES)}")
    colours = RGB_COLOURS if c == 3 else GREY_COLOURS
    out = []
    if "patch" in fam:
        for size in patch_sizes(min(h, w)):
            for place in patch_places(h, w, size):
                out.append(PatchPaste("texture", size, place, seed=seed))
                for name, col in colours.items():
                    bg = colours["black"] if name != "black" else colours["white"]
                    out.append(PatchPaste("solid", size, place, col, bg, seed=seed))
                    if size >= 3:
                        out.append(PatchPaste("window", size, place, col, bg, seed=seed))
    if "stroke" in fam:
        out += stroke_candidates(h, w, colours, seed)
    if "square" in fam:
        out += square_candidates(h, w, colours, seed)
    if c == 3 and "tint" in fam:
        out += [ColorTint(col, 0.3) for name, col in RGB_COLOURS.items() if name not in ("white", "black")]
    if c == 3 and "grayscale" in fam:
        out.append(Grayscale())
    if "blur" in fam:
        out += [GaussianBlur(0.5), GaussianBlur(1.0)]
    if "contrast" in fam:
        out += [Contrast(0.5), Contrast(1.5)]
    if "sharpen" in fam:
        out.append(Sharpen(1.0, 1.0))
    if "shift" in fam:
        out += [Shift(1, 0), Shift(-1, 0), Shift(0, 1), Shift(0, -1)]
    if "lowpass" in fam:
        out.append(LowPass(max(1.0, min(h, w) / 4)))
    if "highpass" in fam:
        out.append(HighPass(1.0))
    unique = {}
    for t in out:  # a square at a corner is also the patch family's: searched once
        unique.setdefault(repr(t), t)
    return list(unique.values())


def as_candidates(items, seed: int = 0) -> list[tuple]:
    """Normalise user candidates to ``(transform, target_class or None)`` pairs."""
    out = []
    for item in items:
        target = None
        if isinstance(item, tuple):
            item, target = item
        if isinstance(item, str):
            item = parse_transform(item, seed=seed)
        if not callable(item):
            raise ValueError(f"candidate {item!r} is not a transform (a callable x -> x)")
        out.append((item, None if target is None else int(target)))
    return out


def short_label(t) -> str:
    """A short human name of a transform for plots and headlines (e.g. "white solid 2px patch at (0, 0)")."""
    p = dict(getattr(t, "params", {}))
    name = getattr(t, "name", None)
    if name == "patch" and isinstance(p.get("pattern"), str):
        col = tuple(float(v) for v in p.get("color", ()))
        cname = next((k for d in (GREY_COLOURS, RGB_COLOURS) for k, v in d.items() if tuple(v) == col),
                     "/".join(f"{v:g}" for v in col))
        loc = p.get("loc")
        where = f"at ({loc[0]}, {loc[1]})" if isinstance(loc, tuple) else ("at a random place" if loc == "random" else "at the centre")
        what = "black/white texture" if p["pattern"] == "texture" else f"{cname} {p['pattern']}"
        return f"{what} {p['size']}px {'stroke' if p['pattern'] in STROKES else 'patch'} {where}"
    if name in ("blur", "contrast", "sharpen", "shift", "lowpass", "highpass", "tint", "grayscale"):
        inner = ", ".join(f"{k}={'/'.join(f'{x:g}' for x in v) if isinstance(v, tuple) else v}" for k, v in p.items()
                          if k != "kernel_size")
        return f"{name}({inner})"
    return repr(t)
