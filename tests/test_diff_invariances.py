"""What must not change the result: row scales, solver, input type, precision, chunking, rows excluded."""
import warnings

import numpy as np
import pytest
import torch

import modeldiff.diff.residual_pca as diff_module
from modeldiff import ModelDiff


def data(seed, n=120, m=300, rank=6):
    rng = np.random.default_rng(seed)
    scale = np.geomspace(5.0, 0.8, rank)
    B = rng.normal(size=(n, rank)) @ (scale[:, None] * rng.normal(size=(rank, m))) + rng.normal(size=(n, m))
    A = B + 0.8 * rng.normal(size=(n, rank)) @ (scale[:, None] * rng.normal(size=(rank, m)))
    return A.astype(np.float32), B.astype(np.float32)


def assert_same_fit(x, y, atol=1e-5):
    np.testing.assert_allclose(x.components_, y.components_, atol=atol)
    np.testing.assert_allclose(x.explained_variance_a_, y.explained_variance_a_, atol=atol)
    np.testing.assert_allclose(x.explained_variance_b_, y.explained_variance_b_, atol=atol)
    np.testing.assert_allclose(x.test_projections_, y.test_projections_, atol=10 * atol)


@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_row_scaling_changes_nothing(which):
    A, B = data(0)
    scales = np.random.default_rng(1).uniform(1e-3, 1e3, size=(A.shape[0], 1)).astype(np.float32)
    A2 = A * scales if which in ("a", "both") else A
    B2 = B * scales[::-1] if which in ("b", "both") else B
    assert_same_fit(ModelDiff(4).fit(A, B), ModelDiff(4).fit(A2, B2))


@pytest.mark.parametrize("seed", [0, 1])
def test_full_and_randomized_agree(seed):
    A, B = data(seed, n=600, m=800)
    full = ModelDiff(5, solver="full").fit(A, B)
    rand = ModelDiff(5, solver="randomized", random_state=seed).fit(A, B)
    assert (rand.solver_, full.solver_) == ("randomized", "full")
    cos = np.abs((full.components_ * rand.components_).sum(axis=1))
    assert cos.min() >= 0.99, cos
    scale = full.explained_variance_a_.max()   # variances along slightly different directions
    np.testing.assert_allclose(rand.explained_variance_a_, full.explained_variance_a_, atol=1e-2 * scale)
    np.testing.assert_allclose(rand.explained_variance_b_, full.explained_variance_b_, atol=1e-2 * scale)


@pytest.mark.parametrize("solver", ["full", "randomized"])
def test_numpy_torch_and_memmap_inputs_agree(solver, tmp_path):
    A, B = data(2, n=520, m=600)
    ref = ModelDiff(3, solver=solver).fit(A, B)
    assert_same_fit(ref, ModelDiff(3, solver=solver).fit(torch.from_numpy(A), torch.from_numpy(B)))
    np.save(tmp_path / "a.npy", A), np.save(tmp_path / "b.npy", B)
    mm = [np.load(tmp_path / f"{x}.npy", mmap_mode="r") for x in "ab"]
    assert_same_fit(ref, ModelDiff(3, solver=solver).fit(*mm))


def test_float64_and_float32_close():
    A, B = data(3)
    f32 = ModelDiff(4).fit(A, B)
    f64 = ModelDiff(4, dtype=torch.float64).fit(A.astype(np.float64), B.astype(np.float64))
    assert f64.components_.dtype == np.float64 and f32.components_.dtype == np.float32
    assert_same_fit(f32, f64, atol=1e-4)


@pytest.mark.parametrize("chunk_bytes", [1, 4096, 1 << 30])
def test_chunking_changes_nothing(chunk_bytes, monkeypatch):
    A, B = data(4, n=510, m=520)
    ref = ModelDiff(3, solver="randomized").fit(A, B)
    monkeypatch.setattr(diff_module, "_CHUNK_BYTES", chunk_bytes)
    assert_same_fit(ref, ModelDiff(3, solver="randomized").fit(A, B))


def test_same_seed_same_numbers_and_swapped_arguments_give_b_minus_a():
    A, B = data(5, n=520, m=530)
    one = ModelDiff(3, solver="randomized", random_state=7).fit(A, B)
    two = ModelDiff(3, solver="randomized", random_state=7).fit(A, B)
    np.testing.assert_array_equal(one.components_, two.components_)
    swapped = ModelDiff(3).fit(B, A)
    np.testing.assert_allclose(swapped.row_cosine_, one.row_cosine_, atol=1e-6)
    assert not np.allclose(np.abs(swapped.components_), np.abs(one.components_), atol=1e-2)


def test_all_zero_rows_are_excluded_with_a_warning():
    A, B = data(6)
    A[[3, 50]] = 0.0
    B[[7]] = 0.0
    with pytest.warns(UserWarning, match=r"excluding 3 test rows .*2 in scores_a, 1 in scores_b"):
        md = ModelDiff(4).fit(A, B)
    keep = np.setdiff1d(np.arange(A.shape[0]), [3, 7, 50])
    np.testing.assert_array_equal(md.excluded_rows_, [3, 7, 50])
    assert np.isnan(md.test_projections_[[3, 7, 50]]).all()
    assert np.isnan(md.row_cosine_[[3, 7, 50]]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = ModelDiff(4).fit(A[keep], B[keep])
    np.testing.assert_allclose(md.components_, clean.components_, atol=1e-5)
    np.testing.assert_allclose(md.test_projections_[keep], clean.test_projections_, atol=1e-4)
    np.testing.assert_allclose(md.explained_variance_a_, clean.explained_variance_a_, atol=1e-6)


def test_zero_rows_excluded_on_the_randomized_path_too():
    A, B = data(7, n=540, m=560)
    A[[0, 200, 201]] = 0.0
    with pytest.warns(UserWarning, match="excluding 3 test rows"):
        md = ModelDiff(3, solver="randomized").fit(A, B)
    keep = np.setdiff1d(np.arange(A.shape[0]), [0, 200, 201])
    clean = ModelDiff(3, solver="randomized").fit(A[keep], B[keep])
    np.testing.assert_allclose(md.components_, clean.components_, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    A, B = data(8, n=600, m=700)
    for solver in ("full", "randomized"):
        cpu = ModelDiff(4, solver=solver).fit(A, B)
        gpu = ModelDiff(4, solver=solver, device="cuda").fit(A, B)
        on_gpu = ModelDiff(4, solver=solver).fit(torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda())
        assert_same_fit(cpu, gpu, atol=1e-4)
        assert_same_fit(cpu, on_gpu, atol=1e-4)
