"""Diagnostics as HTML and text: the table, ``DIR/report.html`` with a per-model plot (``modeldiff
diagnose`` and a study's diagnostics stage) and the study report's diagnostics section.

Input: per-algorithm dicts of :func:`modeldiff.studies.diagnostics.run_diagnostics` /
:func:`modeldiff.diagnostics.store.diagnose_store` (``label``, ``store``, ``models``, ``summary``).
"""
from __future__ import annotations

import math

import numpy as np

from modeldiff.report.figures import _figure, _png
from modeldiff.report.html import img, note, page, paragraph, table

# (key, column header, how the cell is shown)
COLUMNS = [
    ("eta_over_b", "η/B", "mean"),
    ("eta_eff_over_b", "mean η/B", "mean"),
    ("train_loss", "train loss", "ci"),
    ("train_accuracy", "train acc", "ci"),
    ("lambda_max", "λ_max", "ci"),
    ("eos_threshold", "2/η", "mean"),
    ("eos_threshold_momentum", "EoS w/ momentum", "mean"),
    ("hessian_fro", "‖H‖_F ± se", "se"),
    ("alignment", "alignment", "ci"),
    ("alignment_mu", "μ", "ci"),
    ("stability_ratio", "‖H‖_F·η/√B", "ci"),
]
PLOT_KEYS = [("lambda_max", "λ_max (top Hessian eigenvalue)"), ("hessian_fro", "‖H‖_F"),
             ("alignment", "alignment tr(ΣH)/(‖Σ‖_F‖H‖_F)"), ("alignment_mu", "μ = tr(ΣH)/(2L‖H‖_F²)"),
             ("stability_ratio", "stability ratio ‖H‖_F·η/√B"), ("train_loss", "training loss")]


def _fmt(x) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.4g}"


def cell(result: dict, key: str, how: str) -> str:
    """One summary cell: ``mean``, ``mean [lo, hi]`` or ``mean ± mean se``."""
    s = result["summary"].get(key)
    if s is None:
        return "-"
    if how == "mean":
        return _fmt(s["mean"])
    if how == "se":
        se = result["summary"].get("hessian_fro_se", {}).get("mean")
        return f"{_fmt(s['mean'])} ± {_fmt(se)}"
    if s["ci_low"] is None:
        return _fmt(s["mean"])
    return f"{_fmt(s['mean'])} [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]"


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and one row per algorithm (label, models, then :data:`COLUMNS`)."""
    header = ["algorithm", "models"] + [h for _, h, _ in COLUMNS]
    rows = [[r["label"], str(len(r["models"]))] + [cell(r, k, how) for k, _, how in COLUMNS] for r in results]
    return header, rows


def text_table(results: list[dict]) -> str:
    """The table as aligned plain text (printed by ``modeldiff diagnose``)."""
    header, rows = table_rows(results)
    widths = [max(len(r[j]) for r in [header] + rows) for j in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines)


def comparison(results: list[dict]) -> str:
    """One sentence: which algorithm has the smaller ‖H‖_F, and whether the CIs separate."""
    if len(results) < 2:
        return ""
    hf = [(r["label"], r["summary"].get("hessian_fro", {}), r["summary"].get("eta_over_b", {})) for r in results]
    hf = [h for h in hf if h[1].get("mean") is not None]
    if len(hf) < 2:
        return ""
    lo = min(hf, key=lambda h: h[1]["mean"])
    hi = max(hf, key=lambda h: h[1]["mean"])
    sep = (lo[1]["ci_high"] is not None and hi[1]["ci_low"] is not None and lo[1]["ci_high"] < hi[1]["ci_low"])
    noisier = max(hf, key=lambda h: h[2].get("mean") or 0)
    verdict = ("as the linear-stability bound ‖H‖_F ≲ √B/η predicts" if noisier[0] == lo[0]
               else "opposite to the linear-stability bound's prediction")
    return (f"{lo[0]} has the smaller ‖H‖_F ({lo[1]['mean']:.4g} vs {hi[1]['mean']:.4g} for {hi[0]}; "
            f"95 % CIs over models {'do not overlap' if sep else 'overlap'}); the noisier algorithm (largest η/B) "
            f"is {noisier[0]}: {verdict}.")


def plot(results: list[dict]) -> bytes:
    """Per-model values (dots) and mean ± 95 % CI (bars) of :data:`PLOT_KEYS`, one colour per algorithm."""
    fig = _figure(11, 6.2)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    rng = np.random.default_rng(0)
    for p, (key, title) in enumerate(PLOT_KEYS):
        ax = fig.add_subplot(2, 3, p + 1)
        for j, r in enumerate(results):
            vals = np.array([e.get(key, math.nan) for e in r["models"]], dtype=float)
            c = colors[j % len(colors)]
            ax.scatter(j + rng.uniform(-0.15, 0.15, len(vals)), vals, s=10, color=c, alpha=0.5)
            s = r["summary"].get(key, {})
            if s.get("mean") is not None:
                lo = s["ci_low"] if s["ci_low"] is not None else s["mean"]
                hi = s["ci_high"] if s["ci_high"] is not None else s["mean"]
                ax.errorbar([j + 0.3], [s["mean"]], yerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="o",
                            color=c, capsize=4)
            if key == "lambda_max" and r["summary"].get("eos_threshold", {}).get("mean") is not None:
                ax.hlines(r["summary"]["eos_threshold"]["mean"], j - 0.3, j + 0.4, color=c, ls="--", lw=1)
        every = np.array([e.get(key, math.nan) for r in results for e in r["models"]], dtype=float)
        every = every[np.isfinite(every)]
        if key in ("lambda_max", "hessian_fro") and len(every) and every.min() > 0 and every.max() > 20 * every.min():
            ax.set_yscale("log")  # algorithms differing by orders of magnitude
        ax.set_xticks(range(len(results)), [r["label"] for r in results], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig)


def report_html(results: list[dict], settings: dict, command: str = "") -> str:
    """The whole ``report.html`` page."""
    header, rows = table_rows(results)
    sections = [("Summary", table(header, rows, left=1) + paragraph(comparison(results), "verdict")
                 + note("Means over models with 95 % Student-t intervals. ‖H‖_F ± se: mean estimate ± the mean "
                        "standard error of its (deflated Hutchinson) estimator. Dashed lines in the λ_max panel: "
                        "2/η (edge of stability of gradient descent at the peak learning rate); with momentum β "
                        "the threshold is lower (column EoS w/ momentum). Hessian and Σ: the eval-mode "
                        "training loss (batch norm frozen at its running "
                        "statistics) on each model's own training subset, no weight decay.")),
                ("Per-model values", img(plot(results), "diagnostics per model"))]
    for r in results:
        keys = ["model", "train_loss", "train_accuracy", "lambda_max", "hessian_fro", "hessian_fro_se",
                "trace_sigma_h", "trace_sigma_h_se", "sigma_fro", "alignment", "alignment_mu", "stability_ratio"]
        sections.append((f"Models of {r['label']}", table(keys, [[e.get(k) for k in keys] for e in r["models"]])))
    meta = [f"{r['label']}: {r['store']}" for r in results] + [f"settings: {settings}"]
    if command:
        meta.append(f"command: {command}")
    return page("Sharpness and SGD-noise diagnostics", meta, sections)


# the study report's section: (key, column header, how the cell is shown), as cell() shows it
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
        results: per-algorithm dicts of :func:`modeldiff.studies.diagnostics.run_diagnostics`
            (``label``, ``models``, ``summary``).
    """
    header = ["algorithm", "models"] + [h for _, h, _ in SECTION_COLUMNS]
    rows = [[r["label"], str(len(r["models"]))] + [cell(r, k, how) for k, _, how in SECTION_COLUMNS] for r in results]
    inner = paragraph(comparison(results), "verdict") if len(results) > 1 else ""
    inner += table(header, rows, left=1) + note(NOTE)
    inner += img(plot(results), "diagnostics per model")
    return "Sharpness and SGD-noise diagnostics", inner
