"""Run a whole study and summarise it (used by ``modeldiff demo`` and ``modeldiff study``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modeldiff.studies.pipeline import (attribute_stores, compare, load_study_data, run_counterfactuals,
                                   train_algorithms)
from modeldiff.studies.config import StudyConfig


def run_study(cfg: StudyConfig, out, device: str = "cpu", data_dir: str | None = None, method: str | None = None,
              data=None, extra_counterfactuals=(), counterfactual_rows=None, recipes=None) -> dict:
    """Train, attribute, compare both ways, test counterfactuals and write the reports.

    Returns the summary (also written to ``OUT/summary.json``); the HTML reports are in
    ``OUT/report_a_minus_b/report.html`` and ``OUT/report_b_minus_a/report.html``.
    ``counterfactual_rows``: the test rows counterfactual transforms are applied to (default all);
    ``recipes``: (A, B) recipes replacing the study's.
    """
    from modeldiff.report import write_report

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else load_study_data(cfg, data_dir)
    stores = train_algorithms(cfg, data, out, device, data_dir, recipes)
    scores_a, scores_b = attribute_stores(cfg, stores, out, device, method)
    directions = compare(cfg, scores_a, scores_b, data)
    label_a, label_b = cfg.labels()
    summary = {"study": cfg.name, "dataset": data.name, "method": method or cfg.attribution.method,
               "algorithms": {}, "directions": {}}
    for tag, store, label in (("a", stores[0], label_a), ("b", stores[1], label_b)):
        s = store.summary()
        summary["algorithms"][tag] = {"label": label, "accuracy": s["accuracy_mean"], "accuracy_std": s["accuracy_std"],
                                      "noise_temperature": s["noise_temperature"], "models": s["done"],
                                      "diverged": s["diverged"]}
    for d, names, extra in ((directions[0], (label_a, label_b), extra_counterfactuals), (directions[1], (label_b, label_a), ())):
        run_counterfactuals(cfg, d, stores, data, device, extra, counterfactual_rows)
        report = write_report(out / f"report_{d.name}", d.fit, subpops=d.subpops, train_images=data.x_train,
                              test_images=data.x_test, train_labels=data.y_train.numpy(),
                              test_labels=data.y_test.numpy(), class_names=data.class_names,
                              counterfactuals=d.counterfactuals, sweeps=d.sweeps, names=names,
                              title=f"{cfg.name}: {names[0]} minus {names[1]}",
                              meta={"study": cfg.to_dict(), "summary": summary["algorithms"]})
        np.save(out / f"components_{d.name}.npy", d.fit.components_)
        summary["directions"][d.name] = direction_summary(d, report)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def direction_summary(d, report: Path) -> dict:
    fit = d.fit
    effects = [r.to_dict() for r in d.counterfactuals]
    for e in effects:
        e.pop("effects_a", None), e.pop("effects_b", None)
    best = max(effects, key=lambda e: abs(e["diff"]["mean"]) if e["diff"]["mean"] is not None else -1, default=None)
    return {
        "explained_variance_a": fit.explained_variance_a_.tolist(),
        "explained_variance_b": fit.explained_variance_b_.tolist(),
        "top_classes": [sp.train_positive_classes[0].name if sp.train_positive_classes else None for sp in d.subpops],
        "counterfactuals": effects, "strongest": best, "report": str(report),
    }


def format_summary(summary: dict) -> str:
    """A short human-readable summary."""
    a, b = summary["algorithms"]["a"], summary["algorithms"]["b"]
    lines = [f"study {summary['study']} on {summary['dataset']} ({summary['method']} attributions)"]
    for alg in (a, b):
        lines.append(f"  {alg['label']:>12s}: accuracy {100 * alg['accuracy']:.2f} ± {100 * alg['accuracy_std']:.2f} % "
                     f"over {alg['models']} models, eta/B = {alg['noise_temperature']:.3g}")
    for name, (x, y) in (("a_minus_b", (a, b)), ("b_minus_a", (b, a))):
        d = summary["directions"][name]
        lines.append(f"  {x['label']} − {y['label']}: top components (explained variance {x['label']} vs {y['label']}):")
        for j, (va, vb) in enumerate(zip(d["explained_variance_a"][:3], d["explained_variance_b"][:3])):
            lines.append(f"    #{j}: {va:.4f} vs {vb:.4f}   top training class {d['top_classes'][j]}")
        s = d["strongest"]
        if s:
            lines.append(f"    strongest counterfactual: {s['transform']} -> class {s['target_class']}: "
                         f"effect {x['label']} {s['a']['mean']:+.4f} [{s['a']['ci_low']:+.4f}, {s['a']['ci_high']:+.4f}], "
                         f"{y['label']} {s['b']['mean']:+.4f} [{s['b']['ci_low']:+.4f}, {s['b']['ci_high']:+.4f}]")
        lines.append(f"    report: {d['report']}")
    return "\n".join(lines)
