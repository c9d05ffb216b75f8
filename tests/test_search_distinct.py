"""Distinct findings: the confirmation takes the best candidate of each (place, class) or (kind, class)
and skips its near-copies, so a second, different feature down the ranking is tested; never more
than ``n_confirm`` tests per direction."""
import pytest
import torch

from modeldiff.counterfactual.distinct import finding_key, pick_distinct, same_finding
from modeldiff.counterfactual.search import Halves, SearchSettings, search

HW = (8, 8)


class Paste:
    def __init__(self, r, c, size, value=1.0):
        self.params = {"loc": [r, c], "size": size}
        self.r, self.c, self.size, self.value = r, c, size, value

    def __call__(self, x):
        x = x.clone()
        x[..., self.r:self.r + self.size, self.c:self.c + self.size] = self.value
        return x

    def __repr__(self):
        return f"paste {self.size}px at ({self.r}, {self.c})"


class Blur:
    def __init__(self, strength):
        self.params = {"strength": strength}

    def __call__(self, x):
        return x

    def __repr__(self):
        return "blur"


def key(t):
    return finding_key(t, t.params, HW)


def test_same_place_and_class_is_one_finding_other_class_or_place_is_not():
    a, b, far = key(Paste(2, 2, 3)), key(Paste(2, 3, 3)), key(Paste(5, 5, 2))
    assert same_finding((a, 5), (b, 5))                 # 6 of 9 pixels shared, same class
    assert not same_finding((a, 5), (b, 2))             # same place, another class
    assert not same_finding((a, 5), (far, 5))           # another place
    assert not same_finding((a, 5), (key(Paste(3, 4, 3)), 5))  # 2 of 9 pixels shared
    assert same_finding((key(Blur(1)), 3), (key(Blur(2)), 3)) and not same_finding((key(Blur(1)), 3), (a, 3))


def test_pick_skips_copies_and_keeps_order():
    ts = [Paste(2, 2, 3), Paste(2, 3, 3), Paste(2, 2, 2), Paste(5, 5, 2), Blur(1), Blur(2), Paste(2, 2, 3)]
    keys = [key(t) for t in ts]
    ranked = [{"index": i, "target_class": c} for i, c in [(0, 5), (1, 5), (2, 5), (6, 2), (4, 3), (5, 3), (3, 5)]]
    picked = pick_distinct(ranked, keys, 4)
    assert [(r["index"], r["target_class"]) for r in picked] == [(0, 5), (6, 2), (4, 3), (3, 5)]
    assert len(pick_distinct(ranked, keys, 10)) == 4    # fewer distinct findings than asked: all of them
    ranked[3]["screened_out"] = True
    assert [r["index"] for r in pick_distinct(ranked, keys, 4)] == [0]  # screened-out rows end the walk


def region_models(seed, n_models, top_left, bottom_right):
    """Softmax-linear models on 8x8 images: the mean of the top-left 3x3 block pushes class 1 by
    ``top_left`` and of the bottom-right 3x3 block class 2 by ``bottom_right`` (per-model spread)."""
    g = torch.Generator().manual_seed(seed)
    w1 = top_left * (1 + 0.2 * torch.randn(n_models, generator=g, dtype=torch.float64))
    w2 = bottom_right * (1 + 0.2 * torch.randn(n_models, generator=g, dtype=torch.float64))

    def predict(x):
        x = x.double()
        z = torch.zeros(len(w1), len(x), 4, dtype=torch.float64)
        z[:, :, 1] = w1[:, None] * x[:, 0, 0:3, 0:3].mean((1, 2))
        z[:, :, 2] = w2[:, None] * x[:, 0, 5:8, 5:8].mean((1, 2))
        return z.softmax(-1)
    return predict


@pytest.mark.parametrize("distinct", [False, True])
def test_search_tests_the_second_feature_only_when_distinct(distinct):
    """A reacts strongly to a bright square at the top left (towards 1; three library copies of it
    rank first) and less to one at the bottom right (towards 2); B reacts to neither. The plain
    top-3 tests only the copies; ``distinct`` tests and confirms the bottom-right square too (the
    two distinct findings there are: at most ``n_confirm`` tests either way)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(240, 1, 8, 8, generator=g) * 0.2
    y = (torch.arange(240) % 4).numpy()
    pa = (region_models(0, 12, 8.0, 3.0), region_models(1, 12, 8.0, 3.0))
    pb = (region_models(2, 12, 0.0, 0.0), region_models(3, 12, 0.0, 0.0))
    halves = Halves(pa, pb, (x[:120], x[120:]), (y[:120], y[120:]))
    cands = [(Paste(0, 0, 3), 1), (Paste(0, 1, 3), 1), (Paste(1, 0, 3), 1), (Paste(5, 5, 3), 2)]
    s = SearchSettings(n_confirm=3, n_resamples=200, distinct=distinct, screen_keep=0)
    out = search(halves, cands, s)["a_minus_b"]
    tested = [(t["transform"], t["target_class"]) for t in out.tested]
    assert len(tested) == (2 if distinct else 3)        # never more than n_confirm tests
    bottom = ("paste 3px at (5, 5)", 2)
    assert (bottom in tested) is distinct
    if distinct:
        assert bottom in [(r["transform"], r["target_class"]) for r in out.confirmed]
        assert tested[0] == ("paste 3px at (0, 0)", 1)
