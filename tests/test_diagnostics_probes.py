"""The default tr(ΣH) estimator (out-of-basis part from Hutchinson's deflated probes, no extra HVP)
against the closed forms of tests/test_diagnostics_closed_form.py (float64, tiny models)."""
import numpy as np
import torch
from test_diagnostics_closed_form import DT, _cases

from modeldiff.diagnostics.hutchinson import frobenius_squared
from modeldiff.diagnostics.lanczos import lanczos
from modeldiff.diagnostics.model import DiagnosticSettings, diagnose_model
from modeldiff.diagnostics.noise import noise_diagnostics


def _probe_estimate(loss, g, lz, dense, probes, seed):
    fro = frobenius_squared(lambda v: v @ dense, loss.dim, probes=probes, basis=lz["basis"],
                            basis_h_norm2=lz["h_basis_norm2"], seed=seed, dtype=DT, return_probes=True)
    return noise_diagnostics(loss, g, lanczos_result=lz, seed=seed,
                             probe_pairs=(fro["probe_vectors"], fro["probe_products"]))


def test_probe_trace_sigma_h_is_unbiased_and_covers_at_nominal_rate():
    """Over 100 seeds: the mean is the truth to 1e-2 relative, 95 % intervals cover in 85–100 runs."""
    for kind in ("logistic", "random_features"):
        _, loss, h, sigma, _ = next(_cases([kind]))
        truth = float(np.trace(sigma @ h))
        g = loss.grad()
        lz = lanczos(loss.hvp, loss.dim, steps=2, tol=0.0, seed=7, dtype=DT)
        dense = torch.as_tensor(h)
        values, covered = [], 0
        for seed in range(100):
            out = _probe_estimate(loss, g, lz, dense, 20, seed)
            assert out["trace_sigma_h_method"] == "probes" and out["trace_sigma_h_se"] > 0
            values.append(out["trace_sigma_h"])
            covered += abs(out["trace_sigma_h"] - truth) <= 1.96 * out["trace_sigma_h_se"]
        assert 85 <= covered <= 100, (kind, covered)
        se_of_mean = np.std(values, ddof=1) / 10
        assert abs(np.mean(values) - truth) <= 4 * se_of_mean, (kind, np.mean(values), truth)


def test_probe_trace_sigma_h_exact_when_basis_spans_everything():
    """With a full Lanczos basis nothing is left outside it: the estimate is exact, se 0."""
    _, loss, h, sigma, loss_value = next(_cases(["logistic"]))
    st = DiagnosticSettings(lanczos_steps=loss.dim, lanczos_tol=0.0, probes=4, seed=0)
    out = diagnose_model(loss, st)
    assert out["trace_sigma_h_method"] == "probes"
    assert abs(out["trace_sigma_h"] - np.trace(sigma @ h)) <= 1e-8 * abs(np.trace(sigma @ h))
    assert abs(out["trace_sigma_h_se"]) <= 1e-8 * abs(np.trace(sigma @ h))


def test_default_settings_cost_no_hvp_beyond_lanczos_and_probes():
    _, loss, h, sigma, _ = next(_cases(["random_features"]))
    st = DiagnosticSettings(lanczos_steps=5, lanczos_tol=0.0, probes=6)
    out = diagnose_model(loss, st)
    assert out["hvps"] == 5 + 6
    truth = float(np.trace(sigma @ h))
    assert abs(out["trace_sigma_h"] - truth) <= 5 * out["trace_sigma_h_se"] + 1e-9 * abs(truth)
