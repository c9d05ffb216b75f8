"""Write the ModelDiff report: report.html (self-contained), figures/*.png and summary.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from modeldiff.diff.subpopulations import subpopulations as find_subpopulations
from modeldiff.report import figures, html


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _caption(i: int, labels, class_names, value: float) -> str:
    name = ""
    if labels is not None:
        lab = int(np.asarray(labels)[i])
        name = str(class_names[lab]) if class_names is not None and lab < len(class_names) else str(lab)
    return f"#{i} {name}\n{value:+.3g}".strip()


THUMBS = 8  # thumbnails per row: legible at the page width

THUMB_LEGEND = ("Under each thumbnail: <b>#index</b> in its split and its <b>true class</b>, then the number that "
                "ranks it: the example's <b>weight</b> in the component (training rows) or its <b>projection</b> on "
                "the component (test row).")


def _component_sections(fit, subpops, pngs, train_images, test_images, train_labels, test_labels,
                        class_names, name_a, name_b, calibration=None, colors=None) -> list[tuple[str, str]]:
    """The explained-variance section and one section per component (figures go into ``pngs``)."""
    var_a, var_b = np.asarray(fit.explained_variance_a_), np.asarray(fit.explained_variance_b_)
    null = None
    if calibration:
        null = [(c["ratio_halves"], c.get("null_ratio_median") or 1.0, c["null_ratio_q95"]) for c in calibration]
    pngs["variance"] = figures.variance_scatter(var_a, var_b, name_a, name_b, null=null,
                                                colors=colors or ("tab:red", "tab:blue"))
    rows = [[j, float(var_a[j]), float(var_b[j]), float(fit.explained_variance_[j]),
             float(var_a[j] / var_b[j]) if var_b[j] > 0 else float("inf")] for j in range(var_a.size)]
    header = ["component", f"var under {name_a}", f"var under {name_b}", "residual var", "ratio"]
    if calibration:
        header += ["half-size ratio", "null q95", "p (adjusted)", "beyond null"]
        for r, c in zip(rows, calibration):
            r += [c["ratio_halves"], c["null_ratio_q95"], c["p_value"], "yes" if c["beyond_null"] else "no"]
    sections = [("Explained variance", html.img(pngs["variance"], "explained variance A vs B") + html.table(header, rows))]
    from datamodels.base.progress import progress_bar  # figures take seconds each on a busy CPU: show them coming

    for sp in progress_bar(subpops, desc="report: figures per component", unit="component", leave=False):
        j = sp.component
        groups = [("train +", train_images, sp.train_positive, sp.train_positive_weights, train_labels),
                  ("train −", train_images, sp.train_negative, sp.train_negative_weights, train_labels),
                  ("test top", test_images, sp.test_top, sp.test_top_projections, test_labels)]
        if train_images is not None and test_images is not None:
            pngs[f"component_{j}"] = figures.image_grid(
                [(t, imgs, list(idx[:THUMBS]), [_caption(i, lab, class_names, v) for i, v in zip(idx[:THUMBS], vals)])
                 for t, imgs, idx, vals, lab in groups])
        else:
            pngs[f"component_{j}"] = figures.weight_bars(
                [(f"{t} (component {j})", vals, [f"#{i}" for i in idx]) for t, _, idx, vals, _ in groups])
        comp = lambda cc: ", ".join(f"{c.name} {c.count}" for c in cc) or "(no labels)"
        inner = html.img(pngs[f"component_{j}"], f"component {j} examples") + html.note(THUMB_LEGEND) + html.table(
            ["group", "class composition"],
            [["train +", comp(sp.train_positive_classes)], ["train −", comp(sp.train_negative_classes)],
             ["test top", comp(sp.test_top_classes)]], left=2)
        sections.append((f"Component {j}: {name_a} {var_a[j]:.3g} vs {name_b} {var_b[j]:.3g}", inner))
    return sections


def write_report(out_dir, fit, *, subpops=None, train_images=None, test_images=None, train_labels=None,
                 test_labels=None, class_names=None, counterfactuals=(), sweeps=(), names=("A", "B"),
                 title: str = "ModelDiff report", meta: dict | None = None, n_top: int = 8,
                 verdict: str | None = None, algorithms: dict | None = None, calibration=None, search=None,
                 direction: str = "a_minus_b", colors=None, diagnostics=None, warnings=()) -> Path:
    """Write the report of a fitted `ModelDiff` into ``out_dir`` (created); returns the HTML path.

    Args:
        fit: a fitted `ModelDiff` (components_, explained variances, test_projections_), or
            None for a counterfactual-only report.
        subpops: `Subpopulation` list (default: computed from ``fit`` with ``n_top`` examples).
        train_images, test_images: ``[n, C, H, W]`` in [0, 1] (numpy or torch); without them
            the examples are shown as bar charts of their weights / projections.
        train_labels, test_labels, class_names: for captions and class compositions.
        counterfactuals: `CounterfactualResult` list; sweeps: `SizeSweep` list.
        names: display names of algorithm A and B.
        verdict, algorithms: the study's verdict paragraph and ``summary["algorithms"]`` (label,
            accuracy, accuracy_std, noise_temperature, models, diverged), shown first.
        calibration: per component the null calibration dicts (modeldiff.diff.null).
        search: the direction's `DirectionSearch` (modeldiff.counterfactual.search).
        direction: ``a_minus_b`` or ``b_minus_a`` (which algorithm is first: its colour is kept).
        diagnostics: per-algorithm results of :func:`modeldiff.studies.diagnostics.run_diagnostics`.
        warnings: the study's sanity warnings (``summary["warnings"]``), shown before everything else.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    name_a, name_b = names
    if colors is None:
        colors = ("tab:red", "tab:blue") if direction == "a_minus_b" else ("tab:blue", "tab:red")
    sections: list[tuple[str, str]] = []
    from modeldiff.report.warnings_block import warnings_section

    if warnings:
        sections.append(warnings_section(list(warnings)))
    if verdict or algorithms:
        sections.append(("Verdict", _verdict_section(verdict, algorithms, direction)))
    if search is not None:
        sections.append(_search_section(search, pngs, name_a, name_b, colors))
    if fit is not None:
        if subpops is None:
            subpops = find_subpopulations(fit, n_train_top=n_top, n_test_top=n_top, train_labels=train_labels,
                                          test_labels=test_labels, class_names=class_names)
        sections += _component_sections(fit, subpops, pngs, train_images, test_images, train_labels,
                                        test_labels, class_names, name_a, name_b, calibration, colors)
    subpops = subpops or []
    if counterfactuals:
        cmp = [r.comparison for r in counterfactuals]
        labels = [f"{i}: {_short(r.transform)} → class {_class_name(r.target_class, class_names)}"
                  for i, r in enumerate(counterfactuals)]
        pngs["effects"] = figures.effect_plot(labels, [(c.a.mean, c.a.ci_low, c.a.ci_high) for c in cmp],
                                              [(c.b.mean, c.b.ci_low, c.b.ci_high) for c in cmp], name_a, name_b,
                                              colors)
        rows = [[f"{i}: {r.transform}", r.target_class, r.n_inputs, c.a.mean, f"[{c.a.ci_low:.3g}, {c.a.ci_high:.3g}]",
                 c.b.mean, f"[{c.b.ci_low:.3g}, {c.b.ci_high:.3g}]", c.diff.mean,
                 f"[{c.diff.ci_low:.3g}, {c.diff.ci_high:.3g}]", c.diff.p_value] for i, (r, c) in
                enumerate(zip(counterfactuals, cmp))]
        lo = [getattr(r, "log_odds", None) for r in counterfactuals]
        extra = []
        if all(x is not None for x in lo):  # the same tests in log-odds (margin) units
            extra = [f"log-odds {name_a}", f"log-odds {name_b}", "p (log-odds)"]
            for row, x in zip(rows, lo):
                row += [x.a.mean, x.b.mean, x.diff.p_value]
        ci = f"{100 * cmp[0].level:g}% CI"
        sections.append(("Counterfactual tests", html.img(pngs["effects"], "treatment effects") + html.table(
            ["transform", "class", "inputs", f"effect {name_a}", ci, f"effect {name_b}", ci,
             f"{name_a}−{name_b}", ci, "p (Welch)", *extra], rows)))
    for i, sw in enumerate(sweeps):
        tab = sw.table()
        pngs[f"sweep_{i}"] = figures.sweep_plot(
            sw.sizes, [(r["effect_a"], *r["ci_a"]) for r in tab], [(r["effect_b"], *r["ci_b"]) for r in tab],
            sw.results[0].transform.replace(f"size={sw.sizes[0]}", "size=*") if sw.results else "", name_a, name_b,
            colors)
        sections.append((f"Patch-size sweep {i}", html.img(pngs[f"sweep_{i}"], f"sweep {i}") + html.table(
            ["size", f"effect {name_a}", f"effect {name_b}", "diff", "p"],
            [[r["size"], r["effect_a"], r["effect_b"], r["diff"], r["p_value"]] for r in tab])))

    if diagnostics:
        from modeldiff.report.diagnostics import diagnostics_section
        sections.append(diagnostics_section(diagnostics))
    for key, png in pngs.items():
        (out / "figures" / f"{key}.png").write_bytes(png)
    meta = dict(meta or {})
    summary = {"title": title, "names": list(names), "meta": meta,
               "solver": getattr(fit, "solver_", None), "excluded_rows": getattr(fit, "excluded_rows_", []),
               "components": [{"index": sp.component,
                               "explained_variance_a": float(fit.explained_variance_a_[sp.component]),
                               "explained_variance_b": float(fit.explained_variance_b_[sp.component]),
                               "residual_variance": float(fit.explained_variance_[sp.component]),
                               "subpopulation": sp.to_dict()} for sp in subpops],
               "counterfactuals": [r.to_dict() for r in counterfactuals],
               "sweeps": [{"transform": sw.results[0].transform if sw.results else "", "table": sw.table()}
                          for sw in sweeps],
               "figures": [f"figures/{k}.png" for k in pngs]}
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=1))
    meta_lines = [f"{k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    page = html.page(title, meta_lines, sections)
    (out / "report.html").write_text(page, encoding="utf-8")
    return out / "report.html"





def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _class_name(c, class_names) -> str:
    return str(class_names[c]) if class_names is not None and 0 <= int(c) < len(class_names) else str(c)


def _verdict_section(verdict: str | None, algorithms: dict | None, direction: str) -> str:
    """The verdict paragraph and the table of both algorithms (first screen of the report)."""
    parts = [html.paragraph(verdict, css="verdict")] if verdict else []
    if algorithms:
        rows = []
        for tag in ("a", "b"):
            a = algorithms.get(tag)
            if a is None:
                continue
            acc = a.get("accuracy")
            sd = a.get("accuracy_std")
            eta = a.get("noise_temperature")
            rows.append([a.get("label", tag.upper()),
                         "n/a" if acc is None else f"{100 * acc:.2f} ± {100 * (sd or 0):.2f} %",
                         "n/a" if eta is None else f"{eta:.3g}", a.get("models", ""), a.get("diverged", "")])
        parts.append(html.table(["algorithm", "test accuracy (mean ± sd over models)", "η/B (noise temperature)",
                                 "models", "diverged"], rows, left=2, css="algorithms"))
    return "".join(parts)


def _search_section(search, pngs, name_a, name_b, colors) -> tuple[str, str]:
    """Headline, effect plot (log-odds) and table of the confirmation stage of the search."""
    d = search.to_dict() if hasattr(search, "to_dict") else search
    tested = d.get("tested") or []
    from modeldiff.report.verdict import confirmed_text

    head = confirmed_text(d["confirmed"][0], name_a, name_b) if d.get("confirmed") else d["headline"]
    inner = html.paragraph(f"{name_a} relies more than {name_b}: {head}", css="headline")
    inner += html.note(f"{d['candidates_tested']} (transform, class) candidates ranked on the first half of each "
                       f"algorithm's models and test inputs; the top {len(tested)} tested on the other halves, "
                       "p-values Holm-adjusted; effects in log-odds (margin) units with 95 % CIs over models.")
    if tested:
        lab = [f"{i}: {_short(r.get('label', r['transform']))} → class {r['target_name']}" for i, r in enumerate(tested)]
        lo = [r["effects"]["log-odds"] for r in tested]
        tri = lambda e: (e["mean"], _nan(e["ci_low"]), _nan(e["ci_high"]))
        pngs["search"] = figures.effect_plot(lab, [tri(e["a"]) for e in lo], [tri(e["b"]) for e in lo], name_a, name_b,
                                             colors, unit="log-odds(class | do(T)) − log-odds(class | control)")
        rows = []
        for i, r in enumerate(tested):
            e, p = r["effects"]["log-odds"], r["effects"]["probability"]
            ci = lambda x: f"[{_nan(x['ci_low']):.3g}, {_nan(x['ci_high']):.3g}]"
            rows.append([f"{i}: {r.get('label', r['transform'])}", r["target_name"], e["a"]["mean"], ci(e["a"]), e["b"]["mean"],
                         ci(e["b"]), p["a"]["mean"], p["b"]["mean"], r["p_adjusted"],
                         "yes" if r["confirmed"] else "no"])
        inner += html.img(pngs["search"], "search effects") + html.table(
            ["transform", "class", f"{name_a} log-odds", "CI", f"{name_b} log-odds", "CI", f"{name_a} Pr",
             f"{name_b} Pr", "p (Holm)", "confirmed"], rows)
    return "Transformation search (confirmatory)", inner


def _nan(v):
    return float("nan") if v is None else float(v)
