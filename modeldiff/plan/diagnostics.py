"""The diagnostics stage's cost: one real :func:`~modeldiff.diagnostics.model.diagnose_model` run on a calibration
model over ``CAL_DIAG_EXAMPLES`` training examples with the study's settings and mode (one chunk when the study's
subset fits one, several otherwise), split into passes linear in the examples and the per-example-gradient Gram
matrix (``m² d`` multiply-adds, ``m`` as the noise diagnostics choose it)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from modeldiff.plan.measure import PeakSampler, release_memory, rss_bytes, stage, timed

CAL_DIAG_EXAMPLES = 256  # training examples of the calibration model diagnosed


@dataclass
class DiagnosticsCost:
    examples: int  # examples diagnosed in the calibration
    n_params: int
    itemsize: int  # bytes per gradient entry
    linear_seconds: float  # the passes over the examples, at ``examples``
    gram_per_mac: float  # seconds per multiply-add of the Gram matrix's square sums
    activation_bytes: float  # peak growth per example of a pass chunk, above the held gradients


def calibrate_diagnostics(store_path, data, spec, subset_examples: int, device: str) -> DiagnosticsCost:
    from datamodels.store import Store
    from modeldiff.diagnostics.hvp import TrainingLoss
    from modeldiff.diagnostics.model import diagnose_model
    from modeldiff.diagnostics.noise import gram_examples, gram_square_sums
    from modeldiff.diagnostics.store import recipe_loss
    from modeldiff.studies.diagnostics import settings_of

    store = Store.open(store_path, data)
    first = next(int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i)))
    n = min(CAL_DIAG_EXAMPLES, data.n_train)
    batch = n if subset_examples <= spec.batch_size else max(1, n // 2)
    loss = TrainingLoss(store.load_model(first, device), data.x_train[:n], data.y_train[:n],
                        recipe_loss(store.recipe), batch_size=batch, device=device)
    settings = settings_of(spec)
    release_memory()
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t_all:
        diagnose_model(loss, settings, seed=settings.seed)
    d, itemsize = loss.dim, torch.empty(0, dtype=loss.dtype).element_size()
    m = gram_examples(n, d, itemsize)
    with timed() as t_gram:
        gram_square_sums(torch.randn(m, d, dtype=loss.dtype))
    per_mac = t_gram["seconds"] / (m * m * d)
    return DiagnosticsCost(n, d, itemsize, max(0.0, t_all["seconds"] - per_mac * m * m * d), per_mac,
                           max(0, sampler.peak - base - m * d * itemsize) / batch)


def predict_diagnostics(costs: dict, shape, base_rss: int) -> dict:
    """``costs``: tag -> DiagnosticsCost; the study's ``diagnostics.models`` per algorithm, each on its subset."""
    from modeldiff.diagnostics.noise import gram_examples

    n, spec = max(1, round(shape.subset_fraction * shape.n_train)), shape.cfg.diagnostics
    seconds, peak = 0.0, 0
    for c in costs.values():
        m = gram_examples(n, c.n_params, c.itemsize)
        per_model = c.linear_seconds * n / c.examples + m * m * c.n_params * c.gram_per_mac
        seconds += min(spec.models, shape.models) * per_model
        peak = max(peak, int(base_rss + c.activation_bytes * min(spec.batch_size, n) + m * c.n_params
                             * c.itemsize))
    return stage(seconds, peak)
