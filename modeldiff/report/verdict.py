"""The study's verdict in plain words, from its summary (used by the console and the report)."""
from __future__ import annotations

DIRECTION_NAMES = {"a_minus_b": ("a", "b"), "b_minus_a": ("b", "a")}
_NEGLIGIBLE = ", negligible in probability (under 1 point and under 1 % of predictions flipped)"


def direction_verdict(d: dict, first: str, second: str) -> str:
    """One sentence pair for one direction of a study summary."""
    comps = d.get("components") or []
    beyond = [c for c in comps if c.get("beyond_null")]
    if not comps:
        parts = [f"{first} vs {second}: components not null-calibrated."]
    elif beyond:
        listed = "; ".join(f"#{c.get('rank', '?')} {_tested(c)} (p = {_num(c.get('p_value'), '.3g')})" for c in beyond)
        parts = [f"{len(beyond)} component(s) of {first} − {second} beyond null ({listed})."]
    else:
        top = comps[0]
        parts = [f"No component of {first} − {second} is beyond null (top {_tested(top, True)}, "
                 f"p = {_num(top.get('p_value'), '.3g')})."]
    if "confirmed" in d:
        if d["confirmed"]:
            parts.append(f"Confirmed: {first} relies more than {second} on {confirmed_text(d['confirmed'][0], first, second)} "
                         f"({d.get('candidates_tested', 0)} candidates searched).")
        else:
            parts.append(f"No distinguishing transformation confirmed for {first} over {second} "
                         f"({d.get('candidates_tested', 0)} candidates searched).")
    return " ".join(parts)


def confirmed_text(rec: dict, first: str, second: str) -> str:
    """One confirmed transformation with both algorithms' log-odds effects (CIs) and Holm p, rounded to
    what the CIs support (:mod:`modeldiff.report.numbers`)."""
    from modeldiff.report.numbers import estimate, pvalue

    lo, pr = rec["effects"]["log-odds"], rec["effects"]["probability"]
    ci = lambda e: estimate(e["mean"], e.get("ci_low"), e.get("ci_high"))
    return (f"{rec.get('label', rec['transform'])} -> class {rec['target_name']} (log-odds effect {first} "
            f"{ci(lo['a'])} vs {second} {ci(lo['b'])}; probability {ci(pr['a'])} vs {ci(pr['b'])}; "
            f"Holm-adjusted p = {pvalue(rec['p_adjusted'])})"
            f"{_NEGLIGIBLE if rec.get('practical', {}).get('negligible') else ''}")


def _tested(c: dict, size: bool = False) -> str:
    """A component's tested statistic against its null threshold: the classic half-size variance ratio,
    or the cross-fitted estimator's quarter-size residual signal variance."""
    if "signal_quarters" in c:
        return f"signal {_num(c.get('signal_quarters'), '.3g')} vs null {_num(c.get('null_signal_q95'), '.3g')}"
    return (f"ratio {_num(c.get('ratio_halves'))}{' at half size' if size else ''} vs null "
            f"{_num(c.get('null_ratio_q95'))}")


def _num(v, fmt: str = ".2f") -> str:
    """A number for the verdict text; "n/a" for a missing or non-finite one (e.g. a null quantile
    that too few calibration splits leave undefined)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, fmt) if v == v and abs(v) != float("inf") else "n/a"


def verdict(summary: dict) -> str:
    """The verdict paragraph of a study summary (``run_study``'s)."""
    algs = summary["algorithms"]
    out = []
    for name, (x, y) in DIRECTION_NAMES.items():
        d = summary["directions"].get(name)
        if d is not None:
            out.append(direction_verdict(d, algs[x]["label"], algs[y]["label"]))
    out.append("Effects are compared in log-odds (margin) units of the target class, which do not depend on "
               "how confident (calibrated) each algorithm's models are; probabilities are shown beside them.")
    return " ".join(out)


def direction_sentences(d: dict, first: str, second: str) -> list[str]:
    """The verdict of one direction (``first`` − ``second``) in short sentences, for the top of its report.

    Numbers are rounded to what their CIs support (:mod:`modeldiff.report.numbers`); effects are
    in log-odds of the target class, the unit the verdict uses.
    """
    from modeldiff.report.numbers import estimate, pvalue, value

    comps = d.get("components") or []
    beyond = [c for c in comps if c.get("beyond_null")]
    out = []
    if not comps:
        out.append(f"Components of {first} − {second} were not calibrated against a null.")
    elif beyond:
        best = min((c.get("p_value") for c in beyond if c.get("p_value") is not None), default=None)
        out.append(f"{len(beyond)} of {len(comps)} components of {first} − {second} are beyond the null "
                   f"(smallest adjusted p = {pvalue(best)}).")
    else:
        top = comps[0]
        tested = (f"top quarter-size signal {value(top.get('signal_quarters'))} vs null "
                  f"{value(top.get('null_signal_q95'))}" if "signal_quarters" in top else
                  f"top half-size ratio {value(top.get('ratio_halves'))} vs null {value(top.get('null_ratio_q95'))}")
        out.append(f"No component of {first} − {second} is beyond the null ({tested}, "
                   f"adjusted p = {pvalue(top.get('p_value'))}).")
    if "confirmed" in d:
        tested = d.get("candidates_tested", 0)
        if d["confirmed"]:
            rec = d["confirmed"][0]
            lo, pr = rec["effects"]["log-odds"], rec["effects"]["probability"]
            out.append(f"Confirmed: {first} relies more than {second} on {rec.get('label', rec['transform'])} "
                       f"→ class {rec['target_name']}.")
            out.append(f"Log-odds effect: {first} {estimate(lo['a']['mean'], lo['a']['ci_low'], lo['a']['ci_high'])}, "
                       f"{second} {estimate(lo['b']['mean'], lo['b']['ci_low'], lo['b']['ci_high'])} "
                       f"(Holm-adjusted p = {pvalue(rec['p_adjusted'])}).")
            out.append(f"Probability effect: {first} {estimate(pr['a']['mean'], pr['a'].get('ci_low'), pr['a'].get('ci_high'))}, "
                       f"{second} {estimate(pr['b']['mean'], pr['b'].get('ci_low'), pr['b'].get('ci_high'))}.")
            n_tested = len(d.get("search_tested") or d.get("tested") or []) or len(d["confirmed"])
            out.append(f"{len(d['confirmed'])} of {n_tested} candidates tested on held-out models were confirmed "
                       f"({tested} searched).")
        else:
            out.append(f"No distinguishing transformation confirmed for {first} over {second} "
                       f"({tested} candidates searched).")
    return out
