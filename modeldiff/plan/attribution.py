"""Attribution's cost: TRAK's per-example gradients, kernel and scoring, or a datamodels lasso, timed at the
study's settings and scaled. TRAK is timed on an *untrained* model of the recipe (its cost depends on the
architecture, not the weights) before the training calibration, on a heap like a fresh ``modeldiff attribute``
process's (after training, the planner's heap hid ~130 MiB of TRAK's growth on the digits CNN).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from modeldiff.plan.measure import PeakSampler, release_memory, rss_bytes, stage, timed, timed_call

CAL_TRAK_EXAMPLES = 128  # at least this many training examples' per-example gradients are timed
CAL_LASSO_TARGETS = 16  # test examples of the synthetic datamodels problem


@dataclass
class AttributionCost:
    method: str
    per_example: float = 0.0  # TRAK: seconds per example, per-example gradient + projection, one model
    load: float = 0.0  # TRAK: seconds to load one model
    kernel_per_row: float = 0.0  # TRAK: one row of Φ (ΦᵀΦ)⁻¹, the inverse included
    score_per_mac: float = 0.0  # TRAK: scoring matmul, per multiply-add
    lasso_per_target: float = 0.0  # datamodels: one test example's lasso path
    growth: int = 0  # bytes above the process while featurising / fitting


def untrained_model(recipe, data, device: str) -> torch.nn.Module:
    """One untrained model of ``recipe`` as ``modeldiff attribute`` loads a trained one (precision, eval mode)."""
    from datamodels.training.model_factory import DataSpec, init_module

    dtype = torch.float64 if recipe.precision == "float64" else torch.float32
    return init_module(recipe.model, DataSpec.of(data), seed=0).to(device, dtype).eval()


def calibrate_trak(recipe, data, proj_dim: int, batch_size: int, device: str) -> AttributionCost:
    """Time loading, featurising (a fresh projector per model; a full batch and the last partial one), the kernel
    inverse and scoring for an untrained model of ``recipe``."""
    from datamodels.attribution.gradients import featurize, n_params
    from datamodels.attribution.projectors import make_projector
    from datamodels.attribution.trak import kernel_features

    model = untrained_model(recipe, data, device)
    with tempfile.TemporaryDirectory(prefix="modeldiff-plan-") as tmp, timed() as t_load:
        torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
        state = torch.load(os.path.join(tmp, "model.pt"), map_location="cpu", weights_only=True)
        untrained_model(recipe, data, device).load_state_dict(state)
    rest = data.n_train % batch_size if data.n_train > batch_size else 0
    n = min(data.n_train, max(batch_size + rest, CAL_TRAK_EXAMPLES))
    release_memory()
    base = rss_bytes()
    with PeakSampler() as sampler:  # the first call's one-time allocations stay for a whole study: counted
        proj = make_projector("auto", n_params(model), proj_dim, 0, torch.device(device), None)
        featurize(model, data.x_train[:32], data.y_train[:32], proj, 0, batch_size=batch_size)  # warm-up
        with timed() as t_feat:  # as the next model: its own projector and seed
            proj = make_projector("auto", n_params(model), proj_dim, 0, torch.device(device), None)
            featurize(model, data.x_train[:n], data.y_train[:n], proj, 1, batch_size=batch_size)
    phi = torch.randn(min(data.n_train, 4096), proj_dim)
    a, b = torch.randn(min(1024, data.n_test), proj_dim), torch.randn(min(8192, data.n_train), proj_dim)
    return AttributionCost("trak", t_feat["seconds"] / n, t_load["seconds"],
                           timed_call(kernel_features, phi, 1e-3) / len(phi),
                           timed_call(torch.matmul, a, b.T) / (a.shape[0] * b.shape[0] * proj_dim),
                           growth=max(0, sampler.peak - base))


def calibrate_datamodels(n_models: int, n_train: int, fraction: float, n_lambdas: int, device: str) -> AttributionCost:
    """A lasso path on ``CAL_LASSO_TARGETS`` synthetic targets with the study's mask matrix shape."""
    from datamodels.attribution.regression import DatamodelsRegression

    rng = np.random.default_rng(0)
    masks = rng.random((n_models, n_train)) < fraction
    w = rng.normal(size=(n_train, CAL_LASSO_TARGETS)) * (rng.random((n_train, CAL_LASSO_TARGETS)) < 0.02)
    margins = (masks @ w + rng.normal(size=(n_models, CAL_LASSO_TARGETS))).astype(np.float32)
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t:
        DatamodelsRegression(device=torch.device(device), progress=False, n_lambdas=n_lambdas).fit(masks, margins)
    return AttributionCost("datamodels", lasso_per_target=t["seconds"] / CAL_LASSO_TARGETS,
                           growth=max(0, sampler.peak - base))


def predict_attribution(cost: AttributionCost, shape, base_rss: int) -> dict:
    """One algorithm's attribution: seconds, peak memory (TRAK: features held up to TRAK's memory budget and
    one block of scores) and disk (the float32 ``[n_test, n_train]`` influence dataset)."""
    from datamodels.attribution.trak import TrakSettings

    disk = 4 * shape.n_test * shape.n_train
    if cost.method == "datamodels":
        seconds = cost.lasso_per_target * shape.n_test
        return stage(seconds, base_rss + cost.growth + 4 * shape.models * shape.n_train, disk)
    spec, s = shape.cfg.attribution, TrakSettings()
    m, k = min(spec.models, shape.models), spec.proj_dim
    per_model = cost.load + (shape.n_train + shape.n_test) * cost.per_example + shape.n_train * cost.kernel_per_row
    seconds = m * per_model + m * shape.n_test * shape.n_train * k * cost.score_per_mac
    features = min(4 * m * (shape.n_train + shape.n_test) * k, s.memory_budget_bytes)
    block = 2 * 4 * min(s.test_block, shape.n_test) * shape.n_train
    return stage(seconds, base_rss + cost.growth + features + block, disk)
