"""Calibration of the diagnostics stage: one real :func:`~modeldiff.diagnostics.model.diagnose_model`
run on a calibration model (:mod:`modeldiff.plan.calibrate` trains it), split into the parts that
scale with the examples and the Gram matrix's part that scales with their square."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from modeldiff.plan.memory import PeakSampler, release_memory, rss_bytes, timed

CAL_DIAG_EXAMPLES = 256  # training examples of the calibration model diagnosed (the study's settings otherwise)


@dataclass
class DiagnosticsCalibration:
    """One real :func:`~modeldiff.diagnostics.model.diagnose_model` run on a calibration model.

    Its time splits into passes over the examples (HVPs, gradients, per-example gradients: linear
    in the examples, ``linear_seconds`` at ``examples``) and the Gram matrix of the per-example
    gradients for ‖Σ‖_F (``m² d`` multiply-adds at ``gram_seconds_per_mac``). ``hvps`` of them were
    Hessian-vector products (``lanczos_used`` Lanczos steps): the study's models may need between
    ``lanczos_min`` and ``lanczos_max`` steps, each at ``hvp_seconds`` (at ``examples``).
    """

    examples: int
    n_params: int
    linear_seconds: float
    gram_seconds_per_mac: float
    hvps: int
    lanczos_used: int
    lanczos_min: int
    lanczos_max: int
    hvp_seconds: float
    activation_bytes: float  # peak growth per example of a pass chunk (activations), above gradients and Gram
    chunk_examples: int  # examples per pass chunk in the calibration
    seconds: float = 0.0
    gram_entry_bytes: float = 8.0  # bytes held per entry of the m x m Gram matrix (0: computed in blocks)


def calibrate_diagnostics(store_path, data, spec, subset_examples: int, device: str,
                          on_hvp=None) -> DiagnosticsCalibration:
    """Diagnose the calibration store's first model on ``CAL_DIAG_EXAMPLES`` training examples with the
    study's ``diagnostics`` settings (same HVP mode: one cached graph when the study's subset fits one
    chunk, chunked forward-over-reverse otherwise)."""
    from datamodels.store import Store
    from modeldiff.diagnostics.hvp import TrainingLoss
    from modeldiff.diagnostics.model import DiagnosticSettings, diagnose_model
    from modeldiff.diagnostics.noise import gram_square_sums
    from modeldiff.diagnostics.store import recipe_loss
    from modeldiff.studies.diagnostics import settings_of

    start = time.perf_counter()
    store = Store.open(store_path, data)
    first = next(int(i) for i in store.valid_indices(warn=False) if store.has_weights(int(i)))
    model = store.load_model(first, device)
    n = min(CAL_DIAG_EXAMPLES, data.n_train)
    one_chunk = subset_examples <= spec.batch_size
    batch = n if one_chunk else max(1, n // 2)  # the study's mode: one chunk, or several
    loss = TrainingLoss(model, data.x_train[:n], data.y_train[:n], recipe_loss(store.recipe), batch_size=batch,
                        device=device)
    loss.on_hvp = on_hvp  # progress: called with the count after each batch of products
    settings = settings_of(spec)
    release_memory()
    base = rss_bytes()
    with PeakSampler() as sampler, timed() as t_all:
        entry = diagnose_model(loss, settings, seed=settings.seed)
    d = loss.dim
    v = torch.randn(d, device=loss.device, dtype=loss.dtype)
    with timed() as t_hvp:
        loss.hvp(v)
    m = int(entry.get("noise_examples", n))
    g = torch.randn(m, d, dtype=loss.dtype)
    gram_entry_bytes = 0.0  # the Gram matrix's square sums are computed in blocks: nothing of size m x m held
    with timed() as t_gram:
        gram_square_sums(g)
    per_mac = t_gram["seconds"] / max(1, m * m * d)
    itemsize = torch.empty(0, dtype=loss.dtype).element_size()
    held = m * d * itemsize + gram_entry_bytes * m * m  # the gradients and the Gram matrix
    return DiagnosticsCalibration(
        examples=n, n_params=d, linear_seconds=max(0.0, t_all["seconds"] - per_mac * m * m * d),
        gram_seconds_per_mac=per_mac, hvps=int(entry.get("hvps", 0)), lanczos_used=int(entry.get("lanczos_steps", 0)),
        lanczos_min=min(DiagnosticSettings().lanczos_min_steps, settings.lanczos_steps),
        lanczos_max=settings.lanczos_steps, hvp_seconds=t_hvp["seconds"],
        activation_bytes=max(0, sampler.peak - base - held) / max(1, batch), chunk_examples=batch,
        seconds=time.perf_counter() - start, gram_entry_bytes=gram_entry_bytes)
