"""Sanity guards: conditions under which a study's numbers look normal and are not.

One mechanism: each guard returns warnings ``{"code", "message", "detail"}``; a study collects
them in ``summary.json["warnings"]``, prints them on stderr (:func:`format_warnings`) and shows
them at the top of each report. Codes and thresholds (stated in docs/warnings.md):

- ``near_chance``: an algorithm's mean test accuracy is below ``chance + NEAR_CHANCE_SHARE ×
  (1 − chance)``, where chance is the share of the most frequent test class.
- ``null_uninformative``: the null cannot flag anything. Either (a) it has too few distinct fits:
  the smallest p-value it can give, ``1 / (1 + distinct null fits)``, is above ``1 − level`` (few
  attribution models have few distinct splits into halves: 4 models have 3), or (b) the null
  threshold of the top component, ``null_ratio_q95``, exceeds ``NULL_UNINFORMATIVE_RATIO``, a
  ratio of explained variances no real difference reaches. ``detail["models_needed"]`` is the
  number of attribution models per algorithm that would fix it: for (a) the fewest whose distinct
  splits give a smallest p-value of at most half of ``1 − level``; for (b) an estimate taking the
  null's log-width to shrink as ``1 / sqrt(models)``.
- ``unit_disagreement``: a confirmed transform (what the verdict reports) whose A − B effect
  difference has confidence intervals in log-odds and in probability that both exclude zero, with
  opposite signs: the conclusion reverses with the unit. (A difference significant in log-odds
  only is the usual case for confident models, whose probabilities saturate, and is not flagged;
  the exploratory counterfactual tests show both units in the report's table.)
- ``code_changed``: a user module a store imported has changed since the store was made.
- ``diverged``: models whose loss or weights became NaN/inf (left out of the analysis), with the
  cause when it is known (non-finite inputs).
- ``max_epochs_first``: models of a recipe with ``until`` that reached ``max_epochs`` before the target
  (kept, and counted here).
- ``fit_not_matched``: a study with ``match`` whose two mean training losses are not within 5 % of each
  other (the 95 % CI of their relative difference is not inside ±5 %).
"""
from __future__ import annotations

import math

import numpy as np

NEAR_CHANCE_SHARE = 1 / 3          # fraction of the way from chance to perfect accuracy
NULL_UNINFORMATIVE_RATIO = 20.0    # null q95 of the half-size explained-variance ratio (unitless)


def warning(code: str, message: str, **detail) -> dict:
    """One warning entry as it appears in summary.json."""
    return {"code": code, "message": message, "detail": detail}


def near_chance(label: str, accuracy: float, chance: float) -> dict | None:
    """``near_chance`` when ``accuracy`` (mean test accuracy, 0..1) is close to ``chance`` (0..1)."""
    bound = chance + NEAR_CHANCE_SHARE * (1 - chance)
    if accuracy is None or not math.isfinite(accuracy) or accuracy >= bound:
        return None
    return warning("near_chance", f"{label}'s models reach {100 * accuracy:.1f} % test accuracy, close to chance "
                   f"({100 * chance:.1f} %, the most frequent class): their attributions describe noise more than "
                   f"learned features; train longer or fix the recipe before reading the components",
                   algorithm=label, accuracy=accuracy, chance=chance, bound=bound)


def chance_accuracy(y_test) -> float:
    """Accuracy of always predicting the most frequent test class (``y_test[n]`` integer labels)."""
    y = np.asarray(y_test).astype(np.int64)
    return float(np.bincount(y).max() / max(1, len(y)))


def _distinct_splits(n: int) -> int:
    return math.comb(n, n // 2) // (2 if n % 2 == 0 else 1)


def null_uninformative(components: dict, n_models: int, distinct_fits: int | None = None,
                       level: float = 0.95) -> dict | None:
    """``null_uninformative`` from ``{direction: [component dicts with null_ratio_q95]}``, the number of
    attribution models per algorithm ``n_models`` and the null's number of distinct fits (None: unknown)."""
    if distinct_fits is not None and 1 / (1 + distinct_fits) > 1 - level:
        needed = next(u for u in range(2, 64) if 1 / (1 + 4 * _distinct_splits(u)) <= (1 - level) / 2)
        needed = max(needed, n_models + 1)
        return warning("null_uninformative", f"the null has only {distinct_fits} distinct fits with {n_models} "
                       f"attribution models per algorithm, so its smallest p-value is {1 / (1 + distinct_fits):.3f}, "
                       f"above {1 - level:g}: no component could ever be beyond it and 'within null' says nothing; "
                       f"use at least {needed} attribution models per algorithm", distinct_fits=distinct_fits,
                       n_models=n_models, models_needed=needed, level=level)
    q95 = [c["null_ratio_q95"] for cs in components.values() for c in cs[:1] if c.get("null_ratio_q95")]
    if not q95:
        return None
    worst = max(q95)
    if not math.isfinite(worst):
        worst = float("inf")
    if worst <= NULL_UNINFORMATIVE_RATIO:
        return None
    factor = (math.log(worst) / math.log(NULL_UNINFORMATIVE_RATIO)) ** 2 if math.isfinite(worst) else float("inf")
    needed = int(math.ceil(n_models * factor)) if math.isfinite(factor) else None
    more = f"about {needed} attribution models per algorithm" if needed else "many more attribution models"
    return warning("null_uninformative", f"the null threshold of the top component is a variance ratio of "
                   f"{worst:.3g} (above {NULL_UNINFORMATIVE_RATIO:g}) with {n_models} attribution models per "
                   f"algorithm: no component could ever be beyond it, so 'within null' says nothing; use {more}",
                   null_ratio_q95=worst, bound=NULL_UNINFORMATIVE_RATIO, n_models=n_models, models_needed=needed)


def _excludes_zero(stat: dict) -> int:
    """+1 / −1 when the interval ``stat`` (ci_low, ci_high) lies above / below zero, else 0."""
    lo, hi = stat.get("ci_low"), stat.get("ci_high")
    if lo is None or hi is None:
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def unit_disagreement(direction: str, confirmed: list[dict]) -> list[dict]:
    """``unit_disagreement`` for one direction's confirmed search records (``effects`` in both units)."""
    out, seen = [], set()
    for rec in confirmed:
        eff = rec.get("effects") or {}
        lo, pr = (eff.get("log-odds") or {}).get("diff") or {}, (eff.get("probability") or {}).get("diff") or {}
        lo_sign, pr_sign = _excludes_zero(lo), _excludes_zero(pr)
        key = (rec.get("label"), rec.get("target_class"))
        if lo_sign and pr_sign and lo_sign != pr_sign and key not in seen:
            seen.add(key)
            out.append(warning("unit_disagreement", f"{direction}: the confirmed transform {rec.get('label')} moves "
                               f"class {rec.get('target_name', rec.get('target_class'))} more for the first algorithm "
                               f"in log-odds ({lo['mean']:+.3g}) but less in probability ({pr['mean']:+.3g}), both "
                               f"intervals excluding 0: the models are calibrated differently, so the conclusion "
                               f"holds in log-odds (margin) units only", direction=direction,
                               transform=rec.get("label"), log_odds=lo, probability=pr))
    return out


def diverged(label: str, n_diverged: int, n_models: int, cause: str | None = None) -> dict | None:
    """``diverged`` when ``n_diverged`` of ``n_models`` models of ``label`` diverged (``cause``: why, if known)."""
    if not n_diverged:
        return None
    why = cause or "the training loss or the weights became NaN or infinite (learning rate too high?)"
    return warning("diverged", f"{n_diverged} of {n_models} models of {label} diverged and are left out: {why}",
                   algorithm=label, diverged=int(n_diverged), models=int(n_models), cause=why)


def max_epochs_first(label: str, n_hit: int, n_models: int, max_epochs: int) -> dict | None:
    """``max_epochs_first`` when ``n_hit`` of ``n_models`` models of ``label`` reached ``max_epochs`` before their target."""
    if not n_hit:
        return None
    return warning("max_epochs_first", f"{n_hit} of {n_models} models of {label} reached max_epochs {max_epochs} "
                   f"before their until target: they are kept, less fitted than the target; raise max_epochs",
                   algorithm=label, models=int(n_models), hit_max=int(n_hit), max_epochs=int(max_epochs))


def fit_not_matched(match: dict | None) -> dict | None:
    """``fit_not_matched`` for a matched study whose mean training losses are not within 5 % (CI over models)."""
    if not match or match["within_5_percent"]:
        return None
    return warning("fit_not_matched", f"the fit matching failed its 5 % band: {match['statement']}; the algorithms "
                   f"are compared at unequal fit", method=match["method"], relative_difference=match[
                       "relative_difference"])


def code_changed(where: str, changes: list[dict]) -> dict | None:
    """``code_changed`` for a store at ``where`` whose recorded user modules differ now (``changes``:
    ``{"module", "file", "recorded", "now"}``)."""
    if not changes:
        return None
    names = ", ".join(c["module"] for c in changes)
    return warning("code_changed", f"{where}: user code changed since its models were trained ({names}); the "
                   f"results mix the old models with the new code", store=where, modules=changes)


def study_warnings(summary: dict, y_test, n_attribution_models: int | None, extra=(), calibration=None) -> list[dict]:
    """Every guard that applies to a finished study's ``summary`` (see :func:`modeldiff.studies.run.run_study`);
    ``extra``: warnings found earlier (code changes, diverged causes); ``calibration``: the
    :class:`~modeldiff.diff.null.NullCalibration` (its null fits are counted)."""
    found = list(extra)
    chance = chance_accuracy(y_test)
    for alg in summary["algorithms"].values():
        found.append(near_chance(alg["label"], alg["accuracy"], chance))
        if not any(w and w["code"] == "diverged" and w["detail"].get("algorithm") == alg["label"] for w in found):
            found.append(diverged(alg["label"], alg.get("diverged", 0), alg["models"] + alg.get("diverged", 0)))
    comps = {name: d["components"] for name, d in summary["directions"].items() if d.get("components")}
    if comps and n_attribution_models:
        distinct, level = None, 0.95
        if calibration is not None:
            distinct = len(np.unique(np.round(np.asarray(calibration.null_log_ratios), 9), axis=0))
            level = calibration.level
        found.append(null_uninformative(comps, n_attribution_models, distinct, level))
    for name, d in summary["directions"].items():
        found += unit_disagreement(name, d.get("confirmed") or [])
    return [w for w in found if w]


def format_warnings(warnings: list[dict]) -> str:
    """Console lines ``warning [code]: message``, one per warning ("" when none)."""
    return "\n".join(f"warning [{w['code']}]: {w['message']}" for w in warnings)


def say(warnings: list[dict]) -> None:
    """Log the warnings (the command line shows them on stderr; nothing when there are none)."""
    if warnings:
        from datamodels.base.log import get_logger

        get_logger(__name__).warning(format_warnings(warnings))
