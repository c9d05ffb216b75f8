"""The study report's "Sharpness and SGD-noise diagnostics" section (see modeldiff.diagnostics.study)."""
from __future__ import annotations

from modeldiff.report import html

# (key, column header, how the cell is shown): modeldiff.diagnostics.report.cell
SECTION_COLUMNS = [
    ("eta_over_b", "η/B", "mean"),
    ("train_loss", "train loss", "ci"),
    ("lambda_max", "λ_max", "ci"),
    ("eos_threshold", "2/η (edge)", "mean"),
    ("eos_threshold_momentum", "edge w/ momentum", "mean"),
    ("hessian_fro", "‖H‖_F ± se", "se"),
    ("alignment", "alignment tr(ΣH)/(‖Σ‖_F‖H‖_F)", "ci"),
    ("stability_ratio", "stability ‖H‖_F·η/√B", "ci"),
]

NOTE = ("Per algorithm, the first models of its store, each on its own training subset (eval-mode loss, no weight "
        "decay); means with 95 % Student-t intervals over models. λ_max: Lanczos on exact Hessian-vector products "
        "(its residual bound is in diagnostics.json); compare with 2/η, gradient descent's edge of stability at the "
        "peak learning rate (lower with momentum). ‖H‖_F ± se: Lanczos-deflated Hutchinson estimate ± the mean "
        "standard error of the estimator. Alignment: cosine of Σ (per-example gradient-noise covariance) and H; "
        "the alignment paper's linear-stability bound predicts ‖H‖_F ≲ √B/η, i.e. a smaller ‖H‖_F for the "
        "noisier algorithm (larger η/B). Full per-model values: diagnostics/report.html.")


def diagnostics_section(results: list[dict]) -> tuple[str, str]:
    """``(heading, inner HTML)``: the comparison sentence, the table and the per-model plot.

    Args:
        results: per-algorithm dicts of :func:`modeldiff.diagnostics.study.run_diagnostics`
            (``label``, ``models``, ``summary``).
    """
    from modeldiff.diagnostics.report import cell, comparison, plot

    header = ["algorithm", "models"] + [h for _, h, _ in SECTION_COLUMNS]
    rows = [[r["label"], str(len(r["models"]))] + [cell(r, k, how) for k, _, how in SECTION_COLUMNS] for r in results]
    inner = html.paragraph(comparison(results), "verdict") if len(results) > 1 else ""
    inner += html.table(header, rows, left=1) + html.note(NOTE)
    inner += html.img(plot(results), "diagnostics per model")
    return "Sharpness and SGD-noise diagnostics", inner
