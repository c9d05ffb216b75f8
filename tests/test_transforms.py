import pytest
import torch

from modeldiff.counterfactual.transforms import (
    ColorTint,
    FunctionTransform,
    GaussianBlur,
    Grayscale,
    PatchPaste,
    parse_transform,
    texture,
    window,
)


def batch(n=6, c=3, h=16, w=16, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_texture_is_a_binary_checkerboard_and_window_a_bright_frame():
    t = texture(4)
    assert set(t.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(t[0], torch.tensor([1.0, 0.0, 1.0, 0.0])) and torch.equal(t[1], 1 - t[0])
    assert t.mean() == 0.5
    w = window(6)
    assert (w[0] == 1).all() and (w[-1] == 1).all() and (w[:, 0] == 1).all() and (w[:, -1] == 1).all()
    assert w[1:-1, 1:-1].min() == 0 and w[:, 3].min() == 1  # dark panes, bright middle bar


def test_fixed_patch_lands_where_asked_and_leaves_the_rest_and_the_input_alone():
    x = batch()
    before = x.clone()
    out = PatchPaste(pattern="window", size=4, loc=(2, 5), color=(1.0, 0.0, 0.0))(x)
    assert torch.equal(x, before)
    expected = torch.zeros(3, 4, 4)
    expected[0] = window(4)
    assert torch.equal(out[:, :, 2:6, 5:9], expected.expand(6, -1, -1, -1))
    mask = torch.ones(16, 16, dtype=torch.bool)
    mask[2:6, 5:9] = False
    assert torch.equal(out[:, :, mask], x[:, :, mask])


def test_random_patch_is_seeded_and_varies_per_image():
    x = torch.full((40, 3, 12, 12), 0.5)
    p = PatchPaste(pattern="solid", size=3, loc="random", color=(1.0,), seed=3)
    first, again = p(x), p(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, p.with_params(seed=4)(x))
    corners = {tuple((img[0] == 1).nonzero().min(0).values.tolist()) for img in first}
    assert len(corners) > 10
    assert all((img[0] == 1).sum() == 9 for img in first)   # always whole, inside the image


def test_center_and_errors():
    x = batch(h=9, w=9)
    out = PatchPaste(pattern="solid", size=3, loc="center", color=(0.0,))(x)
    assert out[:, :, 3:6, 3:6].abs().sum() == 0
    with pytest.raises(ValueError, match="does not fit"):
        PatchPaste(size=10)(x)
    with pytest.raises(ValueError, match="leaves the 9x9 image"):
        PatchPaste(size=3, loc=(8, 0))(x)
    with pytest.raises(ValueError, match="unknown pattern"):
        PatchPaste(pattern="polkadots")
    with pytest.raises(ValueError, match=r"expected a float tensor \[n, C, H, W\]"):
        PatchPaste()(x[0])


def test_tensor_pattern_and_grey_images():
    x = batch(c=1)
    pattern = torch.tensor([[0.25, 0.75]])
    out = PatchPaste(pattern=pattern, loc=(0, 0))(x)
    assert torch.equal(out[:, 0, 0, :2], pattern.expand(6, -1, -1)[:, 0])
    out = PatchPaste(pattern="solid", size=2, loc=(0, 0), color=(1.0, 1.0, 1.0))(x)
    assert torch.allclose(out[:, 0, :2, :2], torch.ones(6, 2, 2))


def test_tint_grayscale_blur_behave():
    x = batch()
    red = ColorTint(color=(1.0, 0.0, 0.0), strength=1.0)(x)
    assert torch.equal(red[:, 0], torch.ones_like(red[:, 0])) and red[:, 1:].abs().max() == 0
    half = ColorTint(color=(1.0, 1.0, 0.0), strength=0.5)(x)
    assert torch.allclose(half, 0.5 * x + 0.5 * torch.tensor([1.0, 1.0, 0.0])[None, :, None, None])
    g = Grayscale()(x)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
    assert torch.allclose(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=2e-4)
    b = GaussianBlur(sigma=2.0)(x)
    assert b.shape == x.shape and b.std() < 0.6 * x.std()
    assert torch.allclose(GaussianBlur(1.0)(torch.full_like(x, 0.3)), torch.full_like(x, 0.3), atol=1e-6)


def test_custom_callable_gets_a_seeded_generator_and_output_is_clamped():
    def noisy(x, generator):
        return x + torch.randn(x.shape, generator=generator)
    t = FunctionTransform(fn=noisy, label="noise", info=("sigma=1",), seed=1)
    x = batch()
    assert torch.equal(t(x), t(x))
    assert t(x).min() >= 0 and t(x).max() <= 1
    assert repr(t) == "noise(sigma=1)"
    with pytest.raises(ValueError, match="changed the batch shape"):
        FunctionTransform(fn=lambda x: x[:, :1])(x)


def test_parse_transform_specs_and_repr():
    p = parse_transform("patch:pattern=texture,size=4,loc=random", seed=9)
    assert (p.pattern, p.size, p.loc, p.seed) == ("texture", 4, "random", 9)
    assert repr(p).startswith("patch(pattern=texture, size=4, loc=random")
    assert parse_transform("patch:pattern=window,size=6,loc=4/13").loc == (4, 13)
    t = parse_transform("tint:color=1/1/0,strength=0.3")
    assert t.color == (1, 1, 0) and t.strength == 0.3
    assert parse_transform("grayscale").params == {"strength": 1.0}
    assert parse_transform("blur:sigma=1.5").sigma == 1.5
    with pytest.raises(ValueError, match="unknown transform 'sepia'"):
        parse_transform("sepia")
    with pytest.raises(ValueError, match="bad parameter 'colour=1' for tint"):
        parse_transform("tint:colour=1")
    with pytest.raises(ValueError, match="expected a number, got 'big'"):
        parse_transform("patch:size=big")
