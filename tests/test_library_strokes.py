"""Strokes in the generic library (bars, rings, lines, glyphs drawn over the image) and the component
-> library match that proposes where, what and towards which class to test."""
import numpy as np
import torch

from modeldiff.counterfactual.candidates import library_match
from modeldiff.counterfactual.library import generic_candidates, short_label, stroke_candidates
from modeldiff.counterfactual.transforms import PatchPaste


def test_strokes_paint_their_box():
    x = torch.full((2, 1, 8, 8), 0.3)
    out = PatchPaste("ring", 3, (2, 2), (1.0,), (0.0,))(x)
    assert out[0, 0, 3, 3] == 0.0                     # the ring's inside is the background colour
    assert out[0, 0, 2, 2:5].eq(1.0).all() and out[0, 0, 4, 2:5].eq(1.0).all()
    assert out[:, :, 5:].eq(0.3).all() and x.eq(0.3).all()
    bar = PatchPaste("hbar", 4, (1, 2), (1.0,), (0.0,))(x)
    assert bar[0, 0, 1, 2:6].eq(1.0).all() and (bar != x).sum() == 2 * 4
    plus = PatchPaste("plus", 3, (0, 0), (0.0,), (1.0,))(x)[0, 0, :3, :3]
    assert plus[1].eq(0.0).all() and plus[:, 1].eq(0.0).all() and plus[0, 0] == 1.0


def test_strokes_cover_every_place_on_small_images():
    cands = stroke_candidates(8, 8, {"white": (1.0,), "black": (0.0,)})
    bars = {(t.params["pattern"], t.params["size"], t.params["loc"]) for t in cands if t.params["pattern"] == "hbar"}
    assert {("hbar", 4, (r, c)) for r in range(8) for c in range(5)} <= bars
    assert len({repr(t) for t in cands}) == len(cands)
    for t in cands:                                   # each fits and changes something on a grey image
        assert (t(torch.full((1, 1, 8, 8), 0.5)) != 0.5).any()
    assert "stroke at (1, 2)" in short_label(PatchPaste("hbar", 4, (1, 2), (1.0,), (0.0,)))
    rgb = stroke_candidates(32, 32, {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)})
    assert len(rgb) < 1.5 * len(cands)                # a stride of side/8 on larger images


def test_library_match_finds_the_shared_bar_and_its_class():
    rng = np.random.default_rng(0)
    n = 400
    x = torch.from_numpy(rng.uniform(0, 0.4, size=(n, 1, 8, 8))).float()
    y = torch.from_numpy(rng.integers(0, 5, size=n))
    carriers = np.flatnonzero(y.numpy() == 3)[:50]
    x[carriers, 0, 1, 2:6] = 1.0                      # a 1x4 white bar at row 1, cols 2-5 on 50 of the 3s
    weights = rng.normal(0, 0.1, size=n)
    weights[carriers] += 1.0
    library = generic_candidates((1, 8, 8), families=("patch", "stroke"))
    best = library_match(weights, x, y, library, n_best=3)
    t, target = best[0]
    assert target == 3
    assert t.params["pattern"] == "hbar" and t.params["loc"] == (1, 2) and t.params["size"] == 4
    assert t.params["color"] == (1.0,)


def test_planted_match_reads_bars_as_one_pixel_thick():
    from case_studies.planted.match import match, record_region

    rec = {"params": {"pattern": "hbar", "size": 2, "loc": [1, 5]}, "target_class": 8}
    assert record_region(rec, (8, 8)) == (1, 2, 5, 7)
    assert match(rec, [0, 2, 5, 7], 8, (8, 8))["match"]          # half of a 2x2 plant, all of the bar
    assert record_region({"params": {"pattern": "plus", "size": 3, "loc": [1, 3]}}, (8, 8)) == (1, 4, 3, 6)


def test_default_families_are_every_family_and_each_candidate_is_listed_once():
    from modeldiff.counterfactual.library import DEFAULT_FAMILIES, FAMILIES, square_candidates

    assert tuple(DEFAULT_FAMILIES) == tuple(FAMILIES)
    default = generic_candidates((1, 8, 8))
    reprs = [repr(t) for t in default]
    assert len(reprs) == len(set(reprs))  # a square at a corner is also a patch: listed once
    grey = {"white": (1.0,), "black": (0.0,)}
    strokes, squares = stroke_candidates(8, 8, grey), square_candidates(8, 8, grey)
    assert {repr(t) for t in strokes} <= set(reprs) and {repr(t) for t in squares} <= set(reprs)
    without = generic_candidates((1, 8, 8), families=[f for f in FAMILIES if f not in ("stroke", "square")])
    assert len(default) == len({repr(t) for t in without} | {repr(t) for t in strokes} | {repr(t) for t in squares})
    places = {tuple(t.params["loc"]) for t in squares if t.params["size"] == 2}
    assert len(places) == 7 * 7  # a 2x2 square at every place of an 8x8 image


def test_boxed_lines_paint_the_box_around_the_line():
    x = torch.full((1, 1, 8, 8), 0.5)
    v = PatchPaste("vline", 3, (5, 3), (1.0,), (0.0,))(x)[0, 0]
    assert v[5:8, 4].eq(1.0).all() and v[5:8, 3].eq(0.0).all() and v[5:8, 5].eq(0.0).all()
    assert v[:5].eq(0.5).all() and v[:, :3].eq(0.5).all() and v[:, 6:].eq(0.5).all()
    h = PatchPaste("hline", 3, (0, 0), (0.0,), (1.0,))(x)[0, 0, :3, :3]
    assert h[1].eq(0.0).all() and h[0].eq(1.0).all() and h[2].eq(1.0).all()
    assert "white vline 3px stroke at (5, 3)" == short_label(PatchPaste("vline", 3, (5, 3), (1.0,), (0.0,)))


def test_library_draws_each_full_strength_3px_plant_at_every_place():
    """A plant written at full strength over a 3x3 box (datamodels.data.patterns) is one of the library's
    candidates, for every pattern but the checker (the library's texture has the other phase)."""
    from datamodels.data.patterns import write_pattern

    library = generic_candidates((1, 8, 8))
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs = [t(x) for t in library]
    for pattern in ("solid", "bar", "vbar", "ring", "cross"):
        for r in range(6):
            for c in range(6):
                planted = write_pattern(x, (r, r + 3, c, c + 3), pattern, amplitude=1.0)
                assert any(torch.equal(planted, out) for out in outputs), (pattern, r, c)
