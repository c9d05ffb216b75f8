"""Run a whole study and summarise it (used by ``modeldiff demo`` and ``modeldiff study``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datamodels.base.atomic import atomic_path, atomic_write_text
from datamodels.base.errors import UserError
from datamodels.base.log import get_logger
from modeldiff.report.verdict import direction_sentences, verdict
from modeldiff.studies.config import StudyConfig
from modeldiff.studies.guards import study_warnings
from modeldiff.studies.hooks import resolve_rows
from modeldiff.studies.pipeline import (
    attribute_stores,
    attribute_with_null,
    calibrate_null,
    compare,
    load_study_data,
    run_counterfactuals,
    run_search,
    train_algorithms,
)

log = get_logger(__name__)


def run_configured(cfg: StudyConfig, out, device: str = "cpu", data_dir: str | None = None,
                   method: str | None = None, allow_changed_code: bool = False) -> dict:
    """The study as its YAML says: its ``runner`` when it names one, else :func:`run_study`
    (``allow_changed_code``: see :func:`run_study`; a runner's own stores are checked by it)."""
    from modeldiff.studies.hooks import resolve_hook

    runner = resolve_hook(cfg, "runner")
    if runner is None:
        return run_study(cfg, out, device, data_dir, method, allow_changed_code=allow_changed_code)
    return runner(cfg, out, device, data_dir, method)


def run_study(cfg: StudyConfig, out, device: str = "cpu", data_dir: str | None = None, method: str | None = None,
              data=None, inputs=None, given=(None, None), allow_changed_code: bool = False) -> dict:
    """Train, attribute, compare both ways, test counterfactuals and write the reports.

    Returns the summary (also written to ``OUT/summary.json``); the HTML reports are in
    ``OUT/report_a_minus_b/report.html`` and ``OUT/report_b_minus_a/report.html``.
    ``data``: the dataset replacing the study's; ``inputs``: a
    :class:`~modeldiff.studies.hooks.StudyInputs` (recipes, extra counterfactual tests, named test-row
    sets, search exclusions) from a runner; the study's own ``setup`` hook, when it names one, runs
    after the settings are checked and adds to it. ``counterfactual.rows`` / ``search.rows`` choose
    the test rows of the counterfactual tests and of the search.
    ``allow_changed_code``: go on when user code changed since the stores were made (else
    refused; when allowed, recorded as a ``code_changed`` warning).
    ``given``: (A, B) ModelSets used instead of training (None: train that algorithm).

    Per direction the summary holds the null-calibrated ``components`` (var_a, var_b, ratio,
    ratio_halves, null_ratio_q95, p_value, beyond_null; with ``calibration.estimator: crossfit``
    signal_quarters, null_signal_q95 in place of the ratios; ``summary["components_estimator"]``
    says which estimator made the components), the search's ``confirmed`` list,
    ``candidates_tested``, ``headline`` and the whole discovery ranking (``search_ranking``, best first, by
    ``search_ranking_rule``; ``search_screening``: what the screening pass kept, see
    :mod:`modeldiff.counterfactual.screen`); ``summary["verdict"]`` states the conclusion.
    """
    from modeldiff.report import write_report
    from modeldiff.studies.validate import validate_study

    out = Path(out).resolve()
    log.info(f"checking the study {cfg.name} (data, settings, transforms) before any training")
    data = data if data is not None else load_study_data(cfg, data_dir)
    log.info(f"  {data.name}: {data.n_train} training / {data.n_test} test examples; checking settings and transforms")
    from modeldiff.studies.hooks import resolve_hook

    setup = resolve_hook(cfg, "setup")  # a bad target is refused before anything is written
    validate_study(cfg, data, out, method)  # seconds: everything that would fail after training
    _check_report_settings(cfg)
    out.mkdir(parents=True, exist_ok=True)
    inputs, data = _setup(cfg, setup, data, inputs, out, device, data_dir, method)
    rows = {key: resolve_rows(getattr(cfg, key).rows, inputs.row_sets, data.n_test, f"{key}.rows")
            for key in ("search", "counterfactual")}
    from modeldiff.studies.match import fit_entries, match_stores, with_checkpoints

    recipes = with_checkpoints(cfg, inputs.recipes or cfg.recipes(data_dir))
    stage = _stages(4 + cfg.calibration.enabled + cfg.search.enabled + (cfg.diagnostics.models > 0))
    stage(f"training both algorithms ({cfg.models} models each)" if given == (None, None) else
          "training the algorithms given as recipes; models given as ModelSets are used as they are")
    stores = train_algorithms(cfg, data, out, device, data_dir, recipes, given, allow_changed_code)
    matched = None
    if cfg.match.active:
        stores, matched = match_stores(cfg, stores, recipes, data, out, device)
        log.info(f"  {matched['statement']}")
    stage(f"attributing both algorithms ({method or cfg.attribution.method})")
    halves = quarters = None
    if cfg.calibration.enabled:
        scores_a, scores_b, halves, quarters = attribute_with_null(cfg, stores, out, device, method)
    else:
        scores_a, scores_b = attribute_stores(cfg, stores, out, device, method)
    estimator = cfg.calibration.estimator
    stage("ModelDiff in both directions" + (" (cross-fitted on halves of each algorithm's models)"
                                            if estimator == "crossfit" else ""))
    directions = compare(cfg, scores_a, scores_b, data, halves)
    if cfg.calibration.enabled:
        stage("null calibration of the components (" + ("quarters" if estimator == "crossfit" else "halves")
              + " of each algorithm against each other)")
    calibration = calibrate_null(cfg, halves, directions, quarters) if cfg.calibration.enabled else None
    if cfg.search.enabled:
        stage("transformation search (discovery halves, then confirmation halves)")
    searched = run_search(cfg, stores, data, directions, device, rows["search"], inputs.search_exclude) \
        if cfg.search.enabled else {}
    diagnostics = None
    if cfg.diagnostics.models > 0:
        from modeldiff.studies.diagnostics import run_diagnostics
        stage(f"sharpness and SGD-noise diagnostics ({cfg.diagnostics.models} models each)")
        diagnostics = run_diagnostics(cfg.diagnostics, stores, cfg.labels(), out, device)
    stage("counterfactual tests and reports")
    label_a, label_b = cfg.labels()
    summary = {"study": cfg.name, "dataset": data.name, "method": method or cfg.attribution.method,
               "components_estimator": estimator, "algorithms": {}, "directions": {}}
    for tag, store, label in (("a", stores[0], label_a), ("b", stores[1], label_b)):
        s = store.summary()
        summary["algorithms"][tag] = {"label": label, "accuracy": s["accuracy_mean"], "accuracy_std": s["accuracy_std"],
                              "noise_temperature": s["noise_temperature"], "models": s["done"],
                              "diverged": s["diverged"], **fit_entries(store, data.y_test.numpy())}
    if matched is not None:
        summary["match"] = matched
    for d in directions:
        summary["directions"][d.name] = direction_summary(d, None, calibration, searched.get(d.name))
    if calibration is not None:
        summary["null"] = {k: v for k, v in calibration.to_dict().items() if k != "directions"}
    summary["verdict"] = verdict(summary)
    summary["warnings"] = study_warnings(summary, data.y_test.numpy(), _attribution_models(cfg, stores, method),
                                         found_warnings(stores, data, (label_a, label_b), matched), calibration)
    if diagnostics is not None:
        from modeldiff.studies.diagnostics import summary_entry
        summary["diagnostics"] = summary_entry(diagnostics)
    extra_a = inputs.extra_counterfactuals
    for d, names, extra in ((directions[0], (label_a, label_b), extra_a), (directions[1], (label_b, label_a), ())):
        log.info(f"  counterfactual tests, {names[0]} − {names[1]}")
        run_counterfactuals(cfg, d, stores, data, device, extra, rows["counterfactual"])
        log.info(f"  writing the report {out / f'report_{d.name}'}")
        image = getattr(data, "is_image", True)  # other data: examples drawn by the report's show_example
        other = "b_minus_a" if d.name == "a_minus_b" else "a_minus_b"
        with atomic_path(out / f"report_{d.name}", directory=True) as tmp:  # a report folder is whole or absent
            write_report(tmp, d.fit, subpops=d.subpops,
                          train_images=data.x_train if image else None,
                          test_images=data.x_test if image else None,
                          train_inputs=None if image else data.x_train.numpy(),
                          test_inputs=None if image else data.x_test.numpy(),
                          show_example=cfg.report.get("show_example"), feature_names=_feature_names(cfg),
                          other_report=f"../report_{other}/report.html", train_labels=data.y_train.numpy(),
                          test_labels=data.y_test.numpy(), class_names=data.class_names,
                          counterfactuals=d.counterfactuals, sweeps=d.sweeps, names=names,
                          title=f"{cfg.name}: {names[0]} minus {names[1]}",
                          meta={"study": cfg.name, "method": summary["method"],
                                **({"components": "cross-fitted"} if estimator == "crossfit" else {})},
                          verdict=[*_as_list(direction_sentences(summary["directions"][d.name], *names)),
                                   *([summary["match"]["statement"]] if matched else [])],
                          algorithms=summary["algorithms"],
                          calibration=summary["directions"][d.name].get("components"),
                          search=searched.get(d.name), direction=d.name, diagnostics=diagnostics,
                          warnings=summary["warnings"])
        report = out / f"report_{d.name}" / "report.html"
        with atomic_path(out / f"components_{d.name}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, d.fit.components_)
        summary["directions"][d.name] = direction_summary(d, report, calibration, searched.get(d.name))
    summary["warnings"] = study_warnings(summary, data.y_test.numpy(), _attribution_models(cfg, stores, method),
                                         found_warnings(stores, data, (label_a, label_b), matched), calibration)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float))
    return summary


def _check_report_settings(cfg: StudyConfig) -> None:
    """Refuse unknown ``report`` keys and unimportable display targets before any training."""
    from modeldiff.report.display import resolve

    unknown = sorted(set(cfg.report) - {"show_example", "feature_names"})
    if unknown:
        raise UserError(f"report: unknown key(s) {', '.join(unknown)}; known: show_example, feature_names")
    resolve(cfg.report.get("show_example"))
    _feature_names(cfg)


def _feature_names(cfg: StudyConfig):
    """The study's ``report.feature_names``: a list, or an import target of a list or of a function returning one."""
    names = cfg.report.get("feature_names")
    if isinstance(names, str):
        from datamodels.registry import resolve_target

        names = resolve_target(names, what="report feature_names", search_path=cfg.folder)
        names = names() if callable(names) else names
    return None if names is None else [str(n) for n in names]


def _attribution_models(cfg, stores, method) -> int:
    """Attribution models per algorithm: the study's ``attribution.models`` or, when unset, the finished models."""
    if (method or cfg.attribution.method) == "trak":
        return int(cfg.attribution.models)
    return int(min(len(s.valid_indices(warn=False)) for s in stores))


def found_warnings(stores, data, labels, match: dict | None = None) -> list[dict]:
    """Warnings known from the stores themselves: changed user code, diverged models and their cause,
    models that reached max_epochs before their until target, and a fit matching outside its band."""
    from modeldiff.studies.guards import code_changed, diverged, fit_not_matched, max_epochs_first

    out = [fit_not_matched(match)]
    for store, label in zip(stores, labels):
        changes = getattr(store, "code_changes", lambda: [])()
        out.append(code_changed(str(getattr(store, "path", label)), changes))
        s = store.summary()
        out.append(diverged(label, s["diverged"], s["models"], None))
        if s.get("fit_hit_max"):
            out.append(max_epochs_first(label, s["fit_hit_max"], s["done"], store.recipe.until.max_epochs))
    return [w for w in out if w]


def _setup(cfg, setup, data, inputs, out, device, data_dir, method):
    """``(inputs, data)`` after the study's ``setup`` hook (the resolved callable, or None) added to
    the runner's ``inputs``."""
    from modeldiff.studies.hooks import StudyInputs
    from modeldiff.studies.validate import validate_study

    inputs = inputs or StudyInputs()
    if setup is None:
        return inputs, data
    recipes = inputs.recipes or cfg.recipes(data_dir)
    got = setup(cfg, data, recipes, out, device)
    if not isinstance(got, StudyInputs):
        raise UserError(f"study setup {cfg.setup['target']!r} must return a StudyInputs, got {type(got).__name__}")
    if got.data is not None:
        data = got.data
        validate_study(cfg, data, out, method)
    merged = StudyInputs(data=data, recipes=got.recipes or inputs.recipes,
                         extra_counterfactuals=[*inputs.extra_counterfactuals, *got.extra_counterfactuals],
                         row_sets={**inputs.row_sets, **got.row_sets},
                         search_exclude=[*inputs.search_exclude, *got.search_exclude])
    return merged, data


def _stages(total: int):
    """``stage(text)`` prints ``[k/total] text`` on stderr, k counting up: a heading per stage."""
    count = [0]

    def stage(text: str) -> None:
        count[0] += 1
        log.info(f"[{count[0]}/{total}] {text}")

    return stage


def direction_summary(d, report: Path | None, calibration=None, searched=None) -> dict:
    """One direction's part of summary.json (see :func:`run_study`)."""
    fit = d.fit
    effects = [r.to_dict() for r in d.counterfactuals]
    for e in effects:
        e.pop("effects_a", None), e.pop("effects_b", None)
    out = {
        "explained_variance_a": fit.explained_variance_a_.tolist(),
        "explained_variance_b": fit.explained_variance_b_.tolist(),
        "top_classes": [sp.train_positive_classes[0].name if sp.train_positive_classes else None for sp in d.subpops],
        "counterfactuals": effects, "report": None if report is None else str(report),
    }
    if calibration is not None:
        out["components"] = calibration.to_dict()["directions"][d.name]
    if searched is not None:
        s = searched.to_dict()
        out.update({"headline": s["headline"], "confirmed": s["confirmed"], "candidates_tested": s["candidates_tested"],
                    "search_unit": s["unit"], "search_tested": s["tested"], "search_ranking_rule": s["ranking_rule"],
                    "search_ranking": s["ranking"], "search_screening": s["screening"]})
    return out


def _as_list(sentences) -> list:
    return [sentences] if isinstance(sentences, str) else list(sentences or [])


def _losses(alg: dict) -> str:
    """``, training loss L [lo, hi], test loss ...`` of one algorithm's summary entry (empty when unknown)."""
    out = ""
    for key, name in (("train_loss", "training loss"), ("test_loss", "test loss")):
        e = alg.get(key)
        if e:
            out += f", {name} {e['mean']:.4g} [{e['ci_low']:.4g}, {e['ci_high']:.4g}]"
    return out


def format_summary(summary: dict) -> str:
    """A short human-readable summary."""
    a, b = summary["algorithms"]["a"], summary["algorithms"]["b"]
    lines = [f"study {summary['study']} on {summary['dataset']} ({summary['method']} attributions"
             + (", cross-fitted components)" if summary.get("components_estimator") == "crossfit" else ")")]
    for alg in (a, b):
        lines.append(f"  {alg['label']:>12s}: accuracy {100 * alg['accuracy']:.2f} ± {100 * alg['accuracy_std']:.2f} % "
                     f"over {alg['models']} models, eta/B = {alg['noise_temperature']:.3g}{_losses(alg)}")
    if summary.get("match"):
        lines.append("  " + summary["match"]["statement"])
    for name, (x, y) in (("a_minus_b", (a, b)), ("b_minus_a", (b, a))):
        d = summary["directions"][name]
        lines.append(f"  {x['label']} − {y['label']}: top components (explained variance {x['label']} vs {y['label']}):")
        comps = d.get("components")
        for j, (va, vb) in enumerate(zip(d["explained_variance_a"][:3], d["explained_variance_b"][:3])):
            line = f"    #{j}: {va:.4f} vs {vb:.4f}   top training class {d['top_classes'][j]}"
            if comps:
                c = comps[j]
                line += (f"   half-size ratio {c['ratio_halves']:.2f} vs null q95 {c['null_ratio_q95']:.2f}, "
                         if "ratio_halves" in c else
                         f"   quarter-size signal {_g(c['signal_quarters'])} vs null q95 {_g(c['null_signal_q95'])}, ")
                line += f"p = {c['p_value']:.3g}: {'BEYOND NULL' if c['beyond_null'] else 'within null'}"
            lines.append(line)
        if "headline" in d:
            lines.append(f"    search ({d['candidates_tested']} candidates, {d['search_unit']} units): {d['headline']}")
        lines.append(f"    report: {d['report']}")
    if "verdict" in summary:
        lines.append("  verdict: " + summary["verdict"])
    for w in summary.get("warnings") or []:
        lines.append(f"  warning [{w['code']}]: {w['message']}")
    lines.extend(summary.get("notes") or [])  # a study runner's own lines
    return "\n".join(lines)


def _g(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"
