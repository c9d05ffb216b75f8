"""Random projections: JL inner products, determinism, chunking, CPU/GPU agreement."""
import math

import pytest
import torch

from datamodels.attribution import counter_rng
from datamodels.attribution.projectors import IdentityProjector, RademacherProjector, SketchProjector, make_projector

P, K = 20000, 512


def _vectors(n=12, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, P, generator=gen, dtype=dtype)
    # correlated pairs and a heavy-tailed one make the check less trivial
    base[1] = base[0] + 0.3 * base[1]
    base[2] = base[2] * torch.rand(P, generator=gen, dtype=dtype) ** 4
    return base


@pytest.mark.parametrize("make", [
    lambda: RademacherProjector(P, K, seed=3),
    lambda: SketchProjector(P, K, seed=3, sketch_dim=1024),
    lambda: SketchProjector(P, K, seed=3),
], ids=["rademacher", "sketch1024", "sketch_default"])
def test_inner_products_preserved_within_jl_tolerance(make):
    g = _vectors()
    pg = make().project(g, model_id=0)
    est = pg @ pg.T / K
    exact = g @ g.T
    norms = exact.diag().sqrt()
    err = (est - exact).abs() / (norms[:, None] * norms[None, :])
    # per pair the standard deviation is <= sqrt(2 / k); 5 sigma over 78 pairs
    assert err.max() < 5 * math.sqrt(2 / K)
    assert err.mean() < 1.5 * math.sqrt(2 / K)


def test_deterministic_and_model_dependent():
    g = _vectors(n=3)
    for cls in (RademacherProjector, SketchProjector):
        a = cls(P, 64, seed=1).project(g, model_id=5)
        b = cls(P, 64, seed=1).project(g, model_id=5)
        assert torch.equal(a, b)
        assert not torch.allclose(a, cls(P, 64, seed=1).project(g, model_id=6))
        assert not torch.allclose(a, cls(P, 64, seed=2).project(g, model_id=5))


@pytest.mark.parametrize("cls", [RademacherProjector, SketchProjector, IdentityProjector])
def test_per_parameter_pieces_equal_the_flat_vector(cls):
    g = _vectors(n=4)
    sizes = [7, 3000, 1, 12000, P - 15008]
    pieces = {f"p{i}": t.reshape(4, -1) for i, t in enumerate(torch.split(g, sizes, dim=1))}
    proj = {IdentityProjector: lambda: cls(P), RademacherProjector: lambda: cls(P, 64, seed=0),
            SketchProjector: lambda: cls(P, 64, seed=0, sketch_dim=1000)}[cls]()
    torch.testing.assert_close(proj.project(pieces, 2), proj.project(g, 2), rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="projector expects"):
        proj.project(g[:, :-5], 2)


def test_signs_are_balanced_and_blocks_are_consistent():
    key = counter_rng.make_key(0, 1)
    block = counter_rng.sign_block(key, 0, 4000, 256, "cpu")
    assert set(block.unique().tolist()) == {-1.0, 1.0}
    assert abs(block.mean()) < 4 / math.sqrt(block.numel())
    cols = block.T @ block / 4000
    assert (cols - torch.eye(256)).abs().max() < 6 / math.sqrt(4000)
    assert torch.equal(counter_rng.sign_block(key, 1234, 1300, 256, "cpu"), block[1234:1300])
    assert not torch.equal(counter_rng.sign_block(counter_rng.make_key(0, 2), 0, 4000, 256, "cpu"),
                           block)


def test_make_projector_choices():
    assert isinstance(make_projector("auto", P, 64, device="cpu"), SketchProjector)
    assert isinstance(make_projector("sketch", P, None), IdentityProjector)
    assert isinstance(make_projector("rademacher", P, 64), RademacherProjector)
    with pytest.raises(ValueError, match="CUDA"):
        make_projector("fast_jl", P, 64, device="cpu")
    with pytest.raises(ValueError, match="unknown projector"):
        make_projector("gaussian", P, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [RademacherProjector, SketchProjector])
def test_cpu_and_gpu_give_the_same_projection(cls):
    g = _vectors(n=5, dtype=torch.float32)
    cpu = cls(P, 256, seed=4, device="cpu").project(g, model_id=3)
    gpu = cls(P, 256, seed=4, device="cuda").project(g.cuda(), model_id=3).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-3)
    key = counter_rng.make_key(4, 3)
    assert torch.equal(counter_rng.sign_block(key, 10, 500, 77, "cuda").cpu(),
                       counter_rng.sign_block(key, 10, 500, 77, "cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_gpu_uses_fast_jl_or_says_why(caplog):
    with caplog.at_level("WARNING"):
        proj = make_projector("auto", P, 64, device="cuda")
    try:
        import fast_jl  # noqa: F401
        assert proj.name == "fast_jl"
    except ImportError:
        assert proj.name == "sketch" and "fast_jl unavailable" in caplog.text
