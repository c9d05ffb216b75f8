"""The planted study: does ModelDiff find a feature that algorithm A relies on and B does not?

Named as the study's runner in its YAML (``runner: {target: case_studies.planted.study:run_planted,
kwargs: {plant: {...}, twin: true}}``). See :mod:`case_studies.planted.plant` for the construction:
correctly labelled images of one class carry a pattern; B sees every pixel but its recipe pastes the
same pattern at the same place on a label-independent share of its inputs (``augment.paste``), so
the pattern tells B nothing about the label. A may occlude the same place without the pattern
(``augment.paste.erase``: the runner then sets its place and weight to the plant's). The runner

* runs the study on the planted data, and its **no-plant twin** (same recipes, nothing planted:
  ``OUT/twin``; the label-independent ``background`` images, if any, are in both), with the plant's
  own paste test on clean test images of the other classes in both;
* optionally (``exposure_twin: true``) its **exposure-matched twin** (``OUT/twin_exposure``): the
  same recipes on the unplanted data with the pattern written on as many training images as the
  plant has, drawn from every class. The no-plant twin differs from the planted run in two ways
  (A never meets the pattern, and the pattern is not tied to the class); this one keeps A's exposure
  and removes only the tie, so a reaction of A to a pattern it has never met is not read as the
  plant's. Both twins are reported, and a finding is counted under each;
* measures A's and B's reliance on the plant (log-odds effect with CIs; B's must stay <= A's / 3);
* checks whether the A−B headline, or one of the top 3 confirmed transforms, is a local transform at
  the planted place towards the planted class, and whether the twin confirms anything at that
  (place, class): a finding counts only with the plant and not in the twin (:mod:`.match`);
* reports precision@k at the positive end of the top A−B component and of the controls (top B−A
  component, A's and B's own top component), against chance, and the planted direction's share of
  the residual variance (:mod:`.metrics`).

``summary["planted"]``, ``summary["twin"]`` and ``summary["twin_exposure"]`` (when run) are written
into ``OUT/summary.json``.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
from pathlib import Path

import numpy as np

from case_studies.planted import match as matching
from case_studies.planted.metrics import PRECISION_AT, own_top_component, planted_signal, precision_at, reliance
from case_studies.planted.plant import plant as make_plant
from datamodels.base.atomic import atomic_write_text
from datamodels.base.errors import UserError
from modeldiff.studies.config import StudyConfig
from modeldiff.studies.hooks import StudyInputs
from modeldiff.studies.pipeline import load_study_data
from modeldiff.studies.run import run_study

log = logging.getLogger(__name__)


def planted_recipes(cfg: StudyConfig, planted, data_dir=None):
    """The study's recipes with B's paste augmentation set to exactly the plant, and A's occlusion
    (``augment.paste.erase: true``, if A has one) to the same place and blend weight. A must never
    write the pattern: no paste, or an occluding one."""
    a, b = cfg.recipes(data_dir)
    if a.augment.paste.share > 0 and not a.augment.paste.erase:
        raise UserError(f"algorithm A's recipe ({a.name}) must not paste the pattern: set augment.paste.share: 0, "
                        "or augment.paste.erase: true (occlude the place without the pattern)")
    if b.augment.paste.erase:
        raise UserError(f"algorithm B's recipe ({b.name}) must paste the pattern itself: remove augment.paste.erase")
    if b.augment.paste.share <= 0:
        raise UserError(f"algorithm B's recipe ({b.name}) must paste the planted pattern on a share of its inputs: "
                        "set augment.paste.share (e.g. 0.5)")
    if b.model.blind_region is not None or a.model.blind_region is not None:
        raise UserError("the planted study's algorithms must see every pixel: remove model.blind_region")
    want = {"augment.paste.region": list(planted.region), "augment.paste.pattern": planted.pattern,
            "augment.paste.amplitude": planted.amplitude}
    if [b.augment.paste.region, b.augment.paste.pattern, b.augment.paste.amplitude] != list(want.values()):
        log.info("planted study: algorithm B's augment.paste set to the plant %s", want)
    return (a.replace(**want) if a.augment.paste.share > 0 else a), b.replace(**want)


def _plant_args(plant: dict | None) -> dict:
    known = set(inspect.signature(make_plant).parameters) - {"data"}
    args = dict(plant or {})
    if set(args) - known:
        raise UserError(f"unknown plant key(s) {sorted(set(args) - known)}: use {sorted(known)}")
    return args


def run_planted(cfg: StudyConfig, out, device: str = "cpu", data_dir: str | None = None, method: str | None = None,
                plant: dict | None = None, twin: bool = True, exposure_twin: bool = False) -> dict:
    """Run the planted study, (``twin``) its no-plant twin in ``OUT/twin`` and (``exposure_twin``) its
    exposure-matched twin in ``OUT/twin_exposure``; returns the planted run's summary with
    ``summary["planted"]``, ``summary["twin"]`` and ``summary["twin_exposure"]`` (also in
    ``OUT/summary.json``). ``summary["planted"]["counted"]`` judges the finding against the no-plant
    twin, ``["counted_exposure"]`` against the exposure-matched one."""
    out = Path(out)
    base = load_study_data(cfg, data_dir)
    plant_args = _plant_args(plant)
    planted = make_plant(base, **plant_args)
    recipes = planted_recipes(cfg, planted, data_dir)
    method = method or cfg.attribution.method
    paste = planted.transform()
    rows = {"clean": planted.clean_test_rows}
    if planted.pasted_test is not None:
        rows["pasted"] = planted.pasted_test
    inputs = StudyInputs(recipes=recipes, extra_counterfactuals=[(paste, planted.target_class)], row_sets=rows,
                         search_exclude=[paste])
    summary = run_study(cfg, out, device, data_dir, method, data=planted.data, inputs=inputs)
    summary["planted"] = planted_entry(summary, planted, out, method)
    if twin:
        summary["twin"] = run_twin(cfg, planted, recipes, planted.twin or base, out / "twin", "no-plant twin",
                                   device, data_dir, method)
    if exposure_twin:
        exposed = exposure_matched(base, plant_args, planted)
        summary["twin_exposure"] = run_twin(cfg, planted, recipes, exposed.twin, out / "twin_exposure",
                                            "exposure-matched twin", device, data_dir, method)
        summary["twin_exposure"]["n_exposed_train"] = int(len(exposed.background_train))
    p = summary["planted"]
    for key, which in (("counted", "twin"), ("counted_exposure", "twin_exposure")):
        at_twin = summary.get(which, {}).get("confirms_at_plant", False)
        p[key] = matching.counted(p["search"], at_twin) if which in summary and p["search"] is not None else None
    summary["notes"] = format_planted(summary).splitlines()
    text = json.dumps(summary, indent=1, default=float)
    atomic_write_text(out / "summary.json", text)
    atomic_write_text(out / f"summary_{method}.json", text)
    _report_section(out, summary)
    return summary


def exposure_matched(base, plant_args: dict, planted):
    """The plant of ``base`` with a label-independent ``background`` share raised by the planted share:
    its ``.twin`` carries the pattern on as many training images as ``planted`` does beyond its own
    background, drawn from every class (the exposure-matched twin's data)."""
    share = plant_args.get("background", 0.0) + len(planted.planted_train) / len(base.y_train)
    if share >= 1:
        raise UserError(f"the exposure-matched twin needs a pattern share below 1, got {share:.2f}: "
                        "lower plant.fraction or plant.background")
    return make_plant(base, **{**plant_args, "background": share})


def run_twin(cfg: StudyConfig, planted, recipes, data, out: Path, label: str, device: str = "cpu",
             data_dir: str | None = None, method: str | None = None) -> dict:
    """Run a twin of the planted study — the same recipes on ``data`` (unplanted, ``n_test`` clean test
    rows) with the plant's paste test and without the plant in the search — into ``out``; returns its
    :func:`twin_entry`."""
    method = method or cfg.attribution.method
    paste = planted.transform()
    twin_cfg = copy.deepcopy(cfg)
    twin_cfg.name = f"{cfg.name} ({label})"
    inputs = StudyInputs(recipes=recipes, extra_counterfactuals=[(paste, planted.target_class)],
                         row_sets={"clean": np.arange(data.n_test)}, search_exclude=[paste])
    summary = run_study(twin_cfg, out, device, data_dir, method, data=data, inputs=inputs)
    return twin_entry(summary, planted, out, method, data.x_test.shape[-2:])


def planted_entry(summary: dict, planted, out: Path, method: str) -> dict:
    """``summary["planted"]``: the plant, reliance, the search against the plant, precision@k."""
    from datamodels.attribution.influence_io import read_influence

    weights = np.load(out / "components_a_minus_b.npy")[0]
    reverse = np.load(out / "components_b_minus_a.npy")[0]
    scores = {tag: read_influence(out / f"scores_{tag}_{method}.h5").scores for tag in "ab"}
    own = {tag: own_top_component(scores[tag]) for tag in "ab"}
    paste = summary["directions"]["a_minus_b"]["counterfactuals"][0]
    n_train, n_planted = len(planted.data.y_train), len(planted.planted_train)
    hw = planted.data.x_test.shape[-2:]
    d = summary["directions"]
    return {
        "n_planted_train": n_planted, "n_train": n_train, "target_class": planted.target_class,
        "region": list(planted.region), "pattern": planted.pattern, "amplitude": planted.amplitude,
        "n_pasted_test": 0 if planted.pasted_test is None else len(planted.pasted_test),
        "chance": n_planted / n_train, "best_possible": {k: min(1.0, n_planted / k) for k in PRECISION_AT},
        "precision_a_minus_b": precision_at(weights, planted.planted_train),
        "precision_b_minus_a": precision_at(reverse, planted.planted_train),
        "precision_a_own": precision_at(own["a"], planted.planted_train),
        "precision_b_own": precision_at(own["b"], planted.planted_train),
        "paste_effect": {"transform": paste["transform"], "a": paste["a"], "b": paste["b"], "diff": paste["diff"]},
        "reliance": reliance(paste),
        "search": matching.direction_matches(d["a_minus_b"], planted.region, planted.target_class, hw)
        if "confirmed" in d["a_minus_b"] else None,
        "search_b_minus_a": matching.direction_matches(d["b_minus_a"], planted.region, planted.target_class, hw)
        if "confirmed" in d["b_minus_a"] else None,
        "signal": planted_signal(scores["a"], scores["b"], planted.planted_train, weights),
    }


def twin_entry(twin: dict, planted, out: Path, method: str, image_hw) -> dict:
    """``summary["twin"]``: what the no-plant twin confirms (at the planted place and class or not),
    the paste test's reliance, components beyond null, and precision@k of its top A−B component
    against the same (here unplanted) training images — the ranking's own chance level."""
    d = twin["directions"]["a_minus_b"]
    weights = np.load(out / "components_a_minus_b.npy")[0]
    comps = d.get("components") or []
    return {"out": str(out), "headline": d.get("headline"),
            "confirmed": [{k: r.get(k) for k in ("label", "transform", "target_class", "params", "p_adjusted")}
                          for r in d.get("confirmed") or []],
            "confirms_at_plant": matching.twin_confirms_place(d, planted.region, planted.target_class, image_hw)
            if "confirmed" in d else False,
            "search": matching.direction_matches(d, planted.region, planted.target_class, image_hw)
            if "confirmed" in d else None,
            "reliance": reliance(d["counterfactuals"][0]),
            "beyond_null": [bool(c.get("beyond_null")) for c in comps],
            "precision_a_minus_b": precision_at(weights, planted.planted_train),
            "verdict": twin.get("verdict")}


def _ci(e: dict) -> str:
    f = lambda v: "nan" if v is None else f"{v:+.2f}"
    return f"{e['mean']:+.2f} [{f(e['ci_low'])}, {f(e['ci_high'])}]"


def format_planted(summary: dict) -> str:
    """Reliance, the search against the plant (planted run and twin), precision@k against chance."""
    p = summary["planted"]
    prec = lambda d: ", ".join(f"@{k} {v:.2f}" for k, v in d.items())
    r = p["reliance"]
    lines = [f"  planted: {p['pattern']} at {p['region']} -> class {p['target_class']} "
             f"({p['n_planted_train']} of {p['n_train']} training images, chance {p['chance']:.3f})",
             f"    reliance ({r['unit']}): A {_ci(r['a'])}, B {_ci(r['b'])}, B/A {r['b_over_a']:.2f} "
             f"(B <= A/3 by the CIs: {'yes' if r['b_third'] else 'NO'})"]
    s = p.get("search")
    if s is not None:
        lines.append(f"    search A−B: plant matched at rank {s['rank']} of {s['n_confirmed']} confirmed "
                     f"(headline {'yes' if s['headline'] else 'no'}, top {matching.TOP} {'yes' if s['top'] else 'no'})")
    for key, counted, label in (("twin", "counted", "no-plant twin"),
                                ("twin_exposure", "counted_exposure", "exposure-matched twin")):
        t = summary.get(key)
        if t is None:
            continue
        tr = t["reliance"]
        lines.append(f"    {label}: confirms at the planted place/class: {'YES' if t['confirms_at_plant'] else 'no'}; "
                     f"headline {t['headline']}; paste reliance A {_ci(tr['a'])}, B {_ci(tr['b'])}")
        c = p.get(counted) or {}
        lines.append(f"    counted (with the plant, not in the {label}): headline {'yes' if c.get('headline') else 'no'}, "
                     f"top {matching.TOP} {'yes' if c.get('top') else 'no'}")
    lines += [f"    precision at the positive end: A−B {prec(p['precision_a_minus_b'])}",
              f"      controls: B−A {prec(p['precision_b_minus_a'])}; A own {prec(p['precision_a_own'])}; "
              f"B own {prec(p['precision_b_own'])}"]
    return "\n".join(lines)


def _report_section(out: Path, summary: dict) -> None:
    """The planted run beside its twin, as a section of the A−B report (when the report exists)."""
    from modeldiff.report.extra_section import append_section

    report = out / "report_a_minus_b" / "report.html"
    if report.is_file():
        append_section(report, "Planted ground truth and its twins", format_planted(summary))
