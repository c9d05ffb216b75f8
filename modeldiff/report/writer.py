"""Write the ModelDiff report: report.html (self-contained), figures/*.png and summary.json."""
from __future__ import annotations

import json
import math

from pathlib import Path

import numpy as np

from modeldiff.report import figures, html
from modeldiff.diff.subpopulations import subpopulations as find_subpopulations


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


def _component_sections(fit, subpops, pngs, train_images, test_images, train_labels, test_labels,
                        class_names, name_a, name_b) -> list[tuple[str, str]]:
    """The explained-variance section and one section per component (figures go into ``pngs``)."""
    var_a, var_b = np.asarray(fit.explained_variance_a_), np.asarray(fit.explained_variance_b_)
    pngs["variance"] = figures.variance_scatter(var_a, var_b, name_a, name_b)
    rows = [[j, float(var_a[j]), float(var_b[j]), float(fit.explained_variance_[j]),
             float(var_a[j] / var_b[j]) if var_b[j] > 0 else float("inf")] for j in range(var_a.size)]
    sections = [("Explained variance", html.img(pngs["variance"], "explained variance A vs B") + html.table(
        ["component", f"var under {name_a}", f"var under {name_b}", "residual var", "ratio"], rows))]
    for sp in subpops:
        j = sp.component
        groups = [("train +", train_images, sp.train_positive, sp.train_positive_weights, train_labels),
                  ("train −", train_images, sp.train_negative, sp.train_negative_weights, train_labels),
                  ("test top", test_images, sp.test_top, sp.test_top_projections, test_labels)]
        if train_images is not None and test_images is not None:
            pngs[f"component_{j}"] = figures.image_grid(
                [(t, imgs, list(idx), [_caption(i, lab, class_names, v) for i, v in zip(idx, vals)])
                 for t, imgs, idx, vals, lab in groups])
        else:
            pngs[f"component_{j}"] = figures.weight_bars(
                [(f"{t} (component {j})", vals, [f"#{i}" for i in idx]) for t, _, idx, vals, _ in groups])
        comp = lambda cc: ", ".join(f"{c.name} {c.count}" for c in cc) or "(no labels)"
        inner = html.img(pngs[f"component_{j}"], f"component {j} examples") + html.table(
            ["group", "class composition"],
            [["train +", comp(sp.train_positive_classes)], ["train −", comp(sp.train_negative_classes)],
             ["test top", comp(sp.test_top_classes)]], left=2)
        sections.append((f"Component {j}: {name_a} {var_a[j]:.3g} vs {name_b} {var_b[j]:.3g}", inner))
    return sections


def write_report(out_dir, fit, *, subpops=None, train_images=None, test_images=None, train_labels=None,
                 test_labels=None, class_names=None, counterfactuals=(), sweeps=(), names=("A", "B"),
                 title: str = "ModelDiff report", meta: dict | None = None, n_top: int = 8) -> Path:
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
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    name_a, name_b = names
    sections: list[tuple[str, str]] = []
    if fit is not None:
        if subpops is None:
            subpops = find_subpopulations(fit, n_train_top=n_top, n_test_top=n_top, train_labels=train_labels,
                                          test_labels=test_labels, class_names=class_names)
        sections += _component_sections(fit, subpops, pngs, train_images, test_images, train_labels,
                                        test_labels, class_names, name_a, name_b)
    subpops = subpops or []
    if counterfactuals:
        cmp = [r.comparison for r in counterfactuals]
        labels = [f"{i}: {r.transform[:28]}" for i, r in enumerate(counterfactuals)]
        pngs["effects"] = figures.effect_plot(labels, [(c.a.mean, c.a.ci_low, c.a.ci_high) for c in cmp],
                                              [(c.b.mean, c.b.ci_low, c.b.ci_high) for c in cmp], name_a, name_b)
        rows = [[f"{i}: {r.transform}", r.target_class, r.n_inputs, c.a.mean, f"[{c.a.ci_low:.3g}, {c.a.ci_high:.3g}]",
                 c.b.mean, f"[{c.b.ci_low:.3g}, {c.b.ci_high:.3g}]", c.diff.mean,
                 f"[{c.diff.ci_low:.3g}, {c.diff.ci_high:.3g}]", c.diff.p_value] for i, (r, c) in
                enumerate(zip(counterfactuals, cmp))]
        ci = f"{100 * cmp[0].level:g}% CI"
        sections.append(("Counterfactual tests", html.img(pngs["effects"], "treatment effects") + html.table(
            ["transform", "class", "inputs", f"effect {name_a}", ci, f"effect {name_b}", ci,
             f"{name_a}−{name_b}", ci, "p (Welch)"], rows)))
    for i, sw in enumerate(sweeps):
        tab = sw.table()
        pngs[f"sweep_{i}"] = figures.sweep_plot(
            sw.sizes, [(r["effect_a"], *r["ci_a"]) for r in tab], [(r["effect_b"], *r["ci_b"]) for r in tab],
            sw.results[0].transform.replace(f"size={sw.sizes[0]}", "size=*") if sw.results else "", name_a, name_b)
        sections.append((f"Patch-size sweep {i}", html.img(pngs[f"sweep_{i}"], f"sweep {i}") + html.table(
            ["size", f"effect {name_a}", f"effect {name_b}", "diff", "p"],
            [[r["size"], r["effect_a"], r["effect_b"], r["diff"], r["p_value"]] for r in tab])))

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
    meta_lines = [f"{k}: {v}" for k, v in meta.items()]
    page = html.page(title, meta_lines, sections)
    (out / "report.html").write_text(page, encoding="utf-8")
    return out / "report.html"



