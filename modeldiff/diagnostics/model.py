"""All sharpness and noise diagnostics of one model at its final point (no optimiser settings).

Quantities (``L`` the mean training loss on the model's own subset, ``H = ∇²L``, ``Σ`` the
per-example gradient covariance, see :mod:`modeldiff.diagnostics.noise`):
``train_loss``, ``train_accuracy``, ``grad_norm`` (‖∇L‖), ``lambda_max`` (Lanczos),
``hessian_fro`` (‖H‖_F from tr(H²), Lanczos-deflated Hutchinson) with ``hessian_fro_se``,
``trace_sigma_h`` with its se, ``sigma_fro``, ``alignment = tr(ΣH)/(‖Σ‖_F‖H‖_F)`` (cosine of Σ and H
in Frobenius inner product) and ``alignment_mu = tr(ΣH)/(2L‖H‖_F²)`` (Wu et al.'s alignment factor).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from modeldiff.diagnostics.hutchinson import frobenius_squared
from modeldiff.diagnostics.hvp import TrainingLoss
from modeldiff.diagnostics.lanczos import lanczos
from modeldiff.diagnostics.noise import noise_diagnostics


@dataclass
class DiagnosticSettings:
    """Cost knobs (HVPs per model ≈ Lanczos steps used + ``probes`` (+ ``trace_examples`` when set)).

    ``trace_examples``: how the part of ``tr(ΣH)`` outside the Lanczos basis is estimated. ``None``
    (default): from Hutchinson's probes and their HVPs, no extra HVP (standard error over the
    probes); ``0``: exactly, one HVP per training example; ``m > 0``: ``m`` importance-sampled
    examples, one HVP each (see :mod:`modeldiff.diagnostics.noise`).
    """

    lanczos_steps: int = 20  # most Krylov steps (also the deflation basis of both traces)
    lanczos_min_steps: int = 10  # fewest steps: the basis deflates the ~K−1 outlier eigenvalues (K classes)
    lanczos_tol: float = 1e-3  # stop when the top Ritz residual ‖Hy − θy‖ < tol·|θ| (bounds |λ_max − θ|)
    probes: int = 4  # Rademacher probes of Hutchinson on the deflated remainder of tr(H²) (and of tr(ΣH))
    trace_examples: int | None = None  # tr(ΣH) outside the basis: None = from the probes, 0 = exact, m = sampled
    noise_examples: int | None = None  # examples in the Gram matrix for ‖Σ‖_F (None = all, memory-capped)
    hvp_block: int = 8  # HVPs pushed through the data at once (memory: block × batch_size examples)
    seed: int = 0

    def params(self) -> dict:
        return asdict(self)


def diagnose_model(loss: TrainingLoss, settings: DiagnosticSettings | None = None, seed: int | None = None) -> dict:
    """Diagnostics of the model behind ``loss`` (a flat dict of floats and counts)."""
    st = settings or DiagnosticSettings()
    seed = st.seed if seed is None else seed
    if st.trace_examples is None and st.probes < 1:
        raise ValueError("trace_examples=None estimates tr(ΣH) from the Hutchinson probes: probes must be >= 1")
    value, acc, g = loss.first_order()  # also builds the graph the HVPs reuse (one chunk)
    lz = lanczos(loss.hvp, loss.dim, steps=st.lanczos_steps, tol=st.lanczos_tol, seed=seed,
                 min_steps=min(st.lanczos_min_steps, st.lanczos_steps), device=loss.device, dtype=loss.dtype)
    fro = frobenius_squared(lambda v: loss.hvp_blocks(v, st.hvp_block), loss.dim, probes=st.probes,
                            basis=lz["basis"], basis_h_norm2=lz["h_basis_norm2"], seed=seed + 1,
                            device=loss.device, dtype=loss.dtype, return_probes=st.trace_examples is None)
    pairs = (fro["probe_vectors"], fro["probe_products"]) if st.trace_examples is None else None
    noise = noise_diagnostics(loss, g, examples=st.noise_examples, trace_examples=st.trace_examples or None,
                              lanczos_result=lz, seed=seed + 2, block=st.hvp_block, probe_pairs=pairs)
    hf, sf, tsh = fro["hessian_fro"], noise["sigma_fro"], noise["trace_sigma_h"]
    return {
        "n_examples": loss.n, "n_params": loss.dim,
        "train_loss": value, "train_accuracy": acc, "grad_norm": float(g.double().norm()),
        "lambda_max": lz["lambda_max"], "lambda_min_ritz": lz["lambda_min"], "lambda_max_residual": lz["residual"],
        "lanczos_steps": lz["steps"], "lanczos_converged": lz["converged"],
        "hessian_fro": hf, "hessian_fro_se": fro["hessian_fro_se"], "trace_h2": fro["trace_h2"],
        "trace_h2_se": fro["trace_h2_se"], "probes": fro["probes"],
        "trace_sigma_h": tsh, "trace_sigma_h_se": noise["trace_sigma_h_se"], "sigma_fro": sf,
        "trace_sigma": noise["trace_sigma"], "noise_examples": noise["noise_examples"],
        "trace_examples": noise["trace_examples"], "trace_sigma_h_method": noise["trace_sigma_h_method"],
        "alignment": tsh / (sf * hf) if sf > 0 and hf > 0 else math.nan,
        "alignment_mu": tsh / (2 * value * hf ** 2) if value > 0 and hf > 0 else math.nan,
        "hvps": loss.hvp_count,
    }


def optimizer_terms(entry: dict, eta: float, batch_size: int, momentum: float = 0.0, nesterov: bool = False,
                    eta_eff: float | None = None) -> dict:
    """η-dependent quantities for ``entry`` (from :func:`diagnose_model`).

    ``eos_threshold = 2/η`` (gradient descent's edge of stability); with momentum β the
    threshold of SGD's update is ``(2+2β)/η`` (heavy ball) or ``(2+2β)/((1+2β)η)`` (Nesterov, as
    in ``torch.optim.SGD``): ``eos_threshold_momentum``. ``stability_ratio = ‖H‖_F·η/√B``; the
    alignment paper's linear-stability bound reads ``stability_ratio ≲ 1/√μ`` (constants
    dropped): ``stability_bound``. ``*_eff`` use the schedule's mean learning rate.
    """
    b = momentum
    thr = (2 + 2 * b) / ((1 + 2 * b) * eta) if (nesterov and b > 0) else (2 + 2 * b) / eta
    mu = entry.get("alignment_mu", math.nan)
    out = {
        "eta": eta, "batch_size": batch_size, "eta_over_b": eta / batch_size,
        "eos_threshold": 2 / eta, "eos_threshold_momentum": thr,
        "sharpness_ratio": entry["lambda_max"] * eta / 2,
        "stability_ratio": entry["hessian_fro"] * eta / math.sqrt(batch_size),
        "stability_bound": 1 / math.sqrt(mu) if mu and mu > 0 else math.nan,
    }
    if eta_eff is not None:
        out.update({"eta_eff": eta_eff, "eta_eff_over_b": eta_eff / batch_size,
                    "stability_ratio_eff": entry["hessian_fro"] * eta_eff / math.sqrt(batch_size)})
    return out
