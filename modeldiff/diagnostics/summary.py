"""Per-algorithm summary of per-model diagnostics: mean and Student-t confidence interval over models."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

SUMMARY_KEYS = ("eta_over_b", "eta_eff_over_b", "train_loss", "train_accuracy", "lambda_max", "eos_threshold",
                "eos_threshold_momentum", "sharpness_ratio", "hessian_fro", "hessian_fro_se", "trace_sigma_h",
                "sigma_fro", "alignment", "alignment_mu", "stability_ratio", "stability_ratio_eff",
                "stability_bound", "grad_norm")


def mean_ci(values, confidence: float = 0.95) -> dict:
    """``{mean, ci_low, ci_high, sd, n}`` of the finite values (CI: Student t over models).

    With one value the interval is ``None`` (undefined); with none, everything is ``None``.
    """
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "sd": None, "n": 0}
    mean = float(v.mean())
    if len(v) == 1:
        return {"mean": mean, "ci_low": None, "ci_high": None, "sd": None, "n": 1}
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd, "n": int(len(v))}


def summarize(entries: list[dict], keys=SUMMARY_KEYS, confidence: float = 0.95) -> dict:
    """``{key: mean_ci(...)}`` over the models in ``entries`` for each key present in any entry."""
    present = [k for k in keys if any(k in e for e in entries)]
    return {k: mean_ci([e.get(k) for e in entries], confidence) for k in present}
