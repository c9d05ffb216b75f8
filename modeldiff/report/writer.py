"""Write the ModelDiff report: report.html (self-contained), figures/*.png and summary.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from modeldiff.diff.subpopulations import subpopulations as find_subpopulations
from modeldiff.report import figures, html
from modeldiff.report.numbers import estimate, holm, pvalue, value


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

EXAMPLES_LEGEND = ("The top three inputs of each group, drawn by the report's <code>show_example</code> hook (default: "
                   "feature values labelled with the feature names, or token ids as text).")

BAR_LEGEND = ("One bar per example: its <b>weight</b> in the component (training rows) or its <b>projection</b> on the "
              "component (test row), labelled with its <b>#index</b> in its split and its <b>true class</b>.")

THUMB_LEGEND = ("Under each thumbnail: <b>#index</b> in its split and its <b>true class</b>, then the number that "
                "ranks it: the example's <b>weight</b> in the component (training rows) or its <b>projection</b> on "
                "the component (test row).")


def _component_sections(fit, subpops, pngs, train_images, test_images, train_labels, test_labels,
                        class_names, name_a, name_b, calibration=None, colors=None, examples=None, show_example=None,
                        feature_names=None) -> list[tuple[str, str]]:
    """The explained-variance section and one section per component (figures go into ``pngs``)."""
    var_a, var_b = np.asarray(fit.explained_variance_a_), np.asarray(fit.explained_variance_b_)
    null = None
    crossfit = bool(calibration) and "ratio_halves" not in calibration[0]  # the cross-fitted estimator's null
    if calibration and not crossfit:
        null = [(c["ratio_halves"], c.get("null_ratio_median") or 1.0, c["null_ratio_q95"]) for c in calibration]
    pngs["variance"] = figures.variance_scatter(var_a, var_b, name_a, name_b, null=null,
                                                colors=colors or ("tab:red", "tab:blue"))
    rows = [[j, value(var_a[j]), value(var_b[j]), value(var_a[j] / var_b[j]) if var_b[j] > 0 else "inf"]
            for j in range(var_a.size)]
    header = ["component", f"var under {name_a}", f"var under {name_b}", "ratio"]
    legend = "Explained variance of each residual component under each algorithm's attributions (full models)."
    if crossfit:
        legend = ("Cross-fitted signal variance of each residual component under each algorithm's attributions "
                  "(products of disjoint halves of its models: estimation noise cancels; can be <= 0).")
    if calibration:
        stat, threshold, name = (("signal_quarters", "null_signal_q95", "quarter-size signal") if crossfit
                                 else ("ratio_halves", "null_ratio_q95", "half-size ratio"))
        header += [name, "null q95", "p (adjusted)", "beyond null"]
        for r, c in zip(rows, calibration):
            r += [value(c[stat]), value(c[threshold]), pvalue(c["p_value"]), "yes" if c["beyond_null"] else "no"]
        legend += (" Quarter-size signal: the tested statistic, the cross-fitted signal variance of the residual from "
                   "quarters of each algorithm's models; null q95: the threshold of the same statistic between quarters "
                   "of one algorithm." if crossfit else
                   " Half-size ratio: the tested statistic, from halves of each algorithm's models; null q95: the 95th "
                   "percentile of the same statistic between two halves of one algorithm.")
        legend += " p (adjusted): max-T over the direction's components, family-wise."
    sections = [("Explained variance", html.img(pngs["variance"], "explained variance A vs B")
                 + html.table(header, rows) + html.note(legend))]
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
                [(f"{t} (component {j})", vals, [_caption(i, lab, class_names, v).replace("\n", " ")
                                                 for i, v in zip(idx, vals)]) for t, _, idx, vals, lab in groups])
        extra = ""
        if examples is not None and examples[0] is not None:
            from modeldiff.report.display import example_panels
            xs = {"train +": examples[0], "train −": examples[0], "test top": examples[1]}
            pngs[f"examples_{j}"] = example_panels(
                [(t, xs[t], list(idx), [_caption(i, lab, class_names, v).replace("\n", " ") for i, v in zip(idx, vals)])
                 for t, _, idx, vals, lab in groups], show_example, feature_names)
            extra = html.img(pngs[f"examples_{j}"], f"component {j} example inputs") + html.note(EXAMPLES_LEGEND)
        comp = lambda cc: ", ".join(f"{c.name} {c.count}" for c in cc) or "(no labels)"
        legend = THUMB_LEGEND if train_images is not None else BAR_LEGEND
        inner = html.img(pngs[f"component_{j}"], f"component {j} examples") + html.note(legend) + extra + html.table(
            ["group", "class composition"],
            [["train +", comp(sp.train_positive_classes)], ["train −", comp(sp.train_negative_classes)],
             ["test top", comp(sp.test_top_classes)]], left=2)
        sections.append((f"Component {j}: {name_a} {value(var_a[j])} vs {name_b} {value(var_b[j])}", inner))
    return sections


def write_report(out_dir, fit, *, subpops=None, train_images=None, test_images=None, train_labels=None,
                 test_labels=None, class_names=None, counterfactuals=(), sweeps=(), names=("A", "B"),
                 title: str = "ModelDiff report", meta: dict | None = None, n_top: int = 8,
                 verdict: str | None = None, algorithms: dict | None = None, calibration=None, search=None,
                 direction: str = "a_minus_b", colors=None, diagnostics=None, other_report: str | None = None,
                 train_inputs=None, test_inputs=None, show_example=None, feature_names=None, warnings=()) -> Path:
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
        verdict, algorithms: this direction's verdict (a list of short sentences, or one paragraph)
            and ``summary["algorithms"]`` (label, accuracy, accuracy_std, noise_temperature, models,
            diverged), shown first.
        other_report: relative link to the other direction's report, shown under the verdict.
        train_inputs, test_inputs: non-image inputs ``[n, *input_shape]`` (tabular, tokens): the
            top examples of each component are drawn with ``show_example`` (see
            :mod:`modeldiff.report.display`; a callable or an import target), labelled with
            ``feature_names`` (features of a vector, or the vocabulary of token ids).
        calibration: per component the null calibration dicts (modeldiff.diff.null).
        search: the direction's `DirectionSearch` (modeldiff.counterfactual.search).
        direction: ``a_minus_b`` or ``b_minus_a`` (which algorithm is first: its colour is kept).
        diagnostics: per-algorithm results of :func:`modeldiff.studies.diagnostics.run_diagnostics`.
        warnings: the study's sanity warnings (``summary["warnings"]``), shown right under the verdict.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    name_a, name_b = names
    if colors is None:
        colors = ("tab:red", "tab:blue") if direction == "a_minus_b" else ("tab:blue", "tab:red")
    sections: list[tuple[str, str]] = []
    from modeldiff.report.warnings_block import warnings_section

    if verdict or algorithms:  # the verdict first; what weakens it right under it
        sections.append(("Verdict", _verdict_section(verdict, algorithms, direction, other_report, names)))
    if warnings:
        sections.append(warnings_section(list(warnings)))
    if search is not None:
        sections.append(_search_section(search, pngs, name_a, name_b, colors))
    if fit is not None:
        if subpops is None:
            subpops = find_subpopulations(fit, n_train_top=n_top, n_test_top=n_top, train_labels=train_labels,
                                          test_labels=test_labels, class_names=class_names)
        sections += _component_sections(fit, subpops, pngs, train_images, test_images, train_labels,
                                        test_labels, class_names, name_a, name_b, calibration, colors,
                                        (train_inputs, test_inputs) if train_images is None else None, show_example,
                                        feature_names)
    subpops = subpops or []
    if counterfactuals:
        cmp = [r.comparison for r in counterfactuals]
        labels = [f"{i}: {_short(r.transform)} → class {_class_name(r.target_class, class_names)}"
                  for i, r in enumerate(counterfactuals)]
        pngs["effects"] = figures.effect_plot(labels, [(c.a.mean, c.a.ci_low, c.a.ci_high) for c in cmp],
                                              [(c.b.mean, c.b.ci_low, c.b.ci_high) for c in cmp], name_a, name_b,
                                              colors)
        lo = [getattr(r, "log_odds", None) for r in counterfactuals]
        use_lo = all(x is not None for x in lo)  # the same tests in log-odds (margin) units
        test = [x.diff for x in lo] if use_lo else [c.diff for c in cmp]
        p_adj = holm([t.p_value for t in test])
        ci = f"{100 * cmp[0].level:g}% CI"
        rows = [[f"{i}: {r.transform}", _class_name(r.target_class, class_names), r.n_inputs,
                 estimate(c.a.mean, c.a.ci_low, c.a.ci_high), estimate(c.b.mean, c.b.ci_low, c.b.ci_high),
                 estimate(t.mean, t.ci_low, t.ci_high), pvalue(p)]
                for i, (r, c, t, p) in enumerate(zip(counterfactuals, cmp, test, p_adj))]
        unit = "log-odds" if use_lo else "probability"
        sections.append(("Counterfactual tests", html.img(pngs["effects"], "treatment effects") + html.table(
            ["transform", "class", "inputs", f"Pr effect {name_a} [{ci}]", f"Pr effect {name_b} [{ci}]",
             f"{name_a} − {name_b}, {unit} [{ci}]", "p (Holm)"], rows) + html.note(
            f"Effect: Pr(class | do(T)) − Pr(class | control), mean over each algorithm's models with its {ci}. "
            f"p (Holm): Welch test of the {unit} difference between the algorithms, Holm-adjusted over the "
            f"{len(rows)} tests of this table.")))
    for i, sw in enumerate(sweeps):
        tab = sw.table()
        pngs[f"sweep_{i}"] = figures.sweep_plot(
            sw.sizes, [(r["effect_a"], *r["ci_a"]) for r in tab], [(r["effect_b"], *r["ci_b"]) for r in tab],
            sw.results[0].transform.replace(f"size={sw.sizes[0]}", "size=*") if sw.results else "", name_a, name_b,
            colors)
        sections.append((f"Patch-size sweep {i}", html.img(pngs[f"sweep_{i}"], f"sweep {i}") + html.table(
            ["size", f"effect {name_a}", f"effect {name_b}", "difference", "p (Holm)"],
            [[r["size"], estimate(r["effect_a"], *r["ci_a"]), estimate(r["effect_b"], *r["ci_b"]), value(r["diff"], 2), pvalue(p)]
             for r, p in zip(tab, holm([r["p_value"] for r in tab]))]) + html.note(
            "Effects in probability with 95 % CIs over models; p: Welch test of the difference, Holm-adjusted over the "
            "sizes.")))

    if diagnostics:
        from modeldiff.report.diagnostics import diagnostics_section
        sections.append(diagnostics_section(diagnostics))
    vectors = []
    for key, png in pngs.items():
        (out / "figures" / f"{key}.png").write_bytes(png)
        vectors += [str(Path(f).relative_to(out)) for f in figures.save_vector(png, out / "figures" / key)]
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
               "figures": [f"figures/{k}.png" for k in pngs], "figures_vector": vectors}
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=1))
    meta_lines = [f"{k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    page = html.page(title, meta_lines, sections)
    (out / "report.html").write_text(page, encoding="utf-8")
    return out / "report.html"





def _short(text: str, n: int = 64) -> str:
    """A plot label: an import target loses its module path (``pkg.mod:fn(...)`` -> ``fn(...)``), and a long
    label its middle, so labels that differ only in their arguments stay apart."""
    head, paren, rest = text.partition("(")
    if ":" in head:
        text = head.rsplit(":", 1)[1] + paren + rest
    if len(text) <= n:
        return text
    keep = (n - 1) // 2
    return text[:keep] + "…" + text[len(text) - (n - 1 - keep):]


def _class_name(c, class_names) -> str:
    return str(class_names[c]) if class_names is not None and 0 <= int(c) < len(class_names) else str(c)


def _verdict_section(verdict, algorithms: dict | None, direction: str, other_report: str | None = None,
                     names=("A", "B")) -> str:
    """This direction's verdict in short sentences, the link to the other direction, and the table of both
    algorithms (the first screen of the report)."""
    sentences = [verdict] if isinstance(verdict, str) else list(verdict or [])
    other = f"{names[1]} minus {names[0]}" if other_report else ""
    parts = [html.verdict_block(sentences, other_report, other)] if sentences or other_report else []
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
                         _loss_cell(a.get("train_loss")), _loss_cell(a.get("test_loss")),
                         "n/a" if eta is None else f"{eta:.3g}", a.get("models", ""), a.get("diverged", "")])
        parts.append(html.table(["algorithm", "test accuracy (mean ± sd over models)",
                                 "training loss (mean [95 % CI])", "test loss (mean [95 % CI])",
                                 "η/B (noise temperature)", "models", "diverged"], rows, left=2, css="algorithms"))
    return "".join(parts)


def _loss_cell(entry: dict | None) -> str:
    return "n/a" if not entry else f"{entry['mean']:.4g} [{entry['ci_low']:.4g}, {entry['ci_high']:.4g}]"


def merge_identical(tested: list[dict]) -> list[tuple[list[str], dict]]:
    """Candidates whose transformed inputs give the same predictions (e.g. a solid 3-px patch and a 3-px
    window, which make the same image) carry identical effect estimates: one row listing their names.

    Returns ``(names, first record)`` in the order of first appearance; a merged row is confirmed
    when any of its members is."""
    groups: dict = {}
    for r in tested:
        lo, pr = r["effects"]["log-odds"], r["effects"]["probability"]
        key = (r["target_name"],) + tuple(tuple(e[s][k] for k in ("mean", "ci_low", "ci_high"))
                                          for e in (lo, pr) for s in ("a", "b"))
        name = r.get("label", r["transform"])
        if key in groups:
            names, rec = groups[key]
            if name not in names:
                names.append(name)
            if r["confirmed"] and not rec["confirmed"]:
                groups[key] = (names, {**rec, "confirmed": True})
        else:
            groups[key] = ([name], r)
    return list(groups.values())


def _search_section(search, pngs, name_a, name_b, colors) -> tuple[str, str]:
    """Headline, effect plot (log-odds) and table of the confirmation stage of the search."""
    d = search.to_dict() if hasattr(search, "to_dict") else search
    tested = d.get("tested") or []
    from modeldiff.report.verdict import confirmed_text

    head = confirmed_text(d["confirmed"][0], name_a, name_b) if d.get("confirmed") else d["headline"]
    inner = html.paragraph(f"{name_a} relies more than {name_b}: {head}", css="headline")
    merged = merge_identical(tested)
    if tested:
        lab = [f"{i}: {_short(' = '.join(names))} → class {r['target_name']}" for i, (names, r) in enumerate(merged)]
        lo = [r["effects"]["log-odds"] for _, r in merged]
        tri = lambda e: (e["mean"], _nan(e["ci_low"]), _nan(e["ci_high"]))
        pngs["search"] = figures.effect_plot(lab, [tri(e["a"]) for e in lo], [tri(e["b"]) for e in lo], name_a, name_b,
                                             colors, unit="log-odds(class | do(T)) − log-odds(class | control)")
        rows = []
        for i, (names, r) in enumerate(merged):
            e, p = r["effects"]["log-odds"], r["effects"]["probability"]
            est = lambda x: estimate(x["mean"], x["ci_low"], x["ci_high"])
            rows.append([f"{i}: " + " = ".join(names), r["target_name"], est(e["a"]), est(e["b"]),
                         f"{p['a']['mean']:+.2g}", f"{p['b']['mean']:+.2g}", pvalue(r["p_adjusted"]),
                         "yes" if r["confirmed"] else "no"])
        inner += html.img(pngs["search"], "search effects") + html.table(
            ["transform", "class", f"{name_a} log-odds [95% CI]", f"{name_b} log-odds [95% CI]", f"{name_a} Pr",
             f"{name_b} Pr", "p (Holm)", "confirmed"], rows)
    merged_note = (f" Candidates whose transformed inputs gave identical predictions are one row ({len(tested)} tested, "
                   f"{len(merged)} rows)." if len(merged) < len(tested) else "")
    inner += html.note(f"{d['candidates_tested']} (transform, class) candidates ranked on the first half of each "
                       f"algorithm's models and test inputs; the top {len(tested)} tested on the other halves. "
                       "Log-odds: the effect on the target class's log-odds (margin), mean over models with a 95 % CI; "
                       "Pr: the effect on its probability. p (Holm): one-sided test that the first algorithm's effect "
                       "exceeds the second's, Holm-adjusted over the candidates tested in both directions. Confirmed: p (Holm) below the "
                       "level and the first algorithm's own CI above 0." + merged_note)
    return "Transformation search (confirmatory)", inner


def _nan(v):
    return float("nan") if v is None else float(v)
