"""The seeded planted grid: variants drawn from fixed lists, one record per variant, the acceptance rates.

A variant is a plant (class, place, pattern, size, amplitude, fraction) drawn by the grid's seed;
:func:`variant_config` turns the shipped planted study into that variant's study (planted run and
no-plant twin through the real pipeline, :func:`case_studies.planted.study.run_planted`);
:func:`variant_record` reads its summary into one flat record and :func:`rates` computes, over the
records, what the acceptance asks for (see ``benchmarks/planted_grid.py``).
"""
from __future__ import annotations

import copy

import numpy as np

# The fixed lists a variant is drawn from (digits: 8x8 images; a region is [row, row + size) x [col, col + size)).
CLASSES = list(range(10))
PLACES = [(0, 0), (0, 5), (5, 0), (5, 5), (1, 3), (3, 1), (3, 5), (5, 3), (2, 2)]  # top-left corners (row, col)
PATTERNS = ["solid", "checker", "bar", "vbar", "ring", "cross"]
SIZES = [2, 3]
AMPLITUDES = [0.5, 0.75, 1.0]
FRACTIONS = [0.25, 0.5, 0.75]
LEVELS = {"precision_top": 3.0, "precision_controls": 2.0}  # x chance: the top A−B end, B−A and B's own


def draw_variants(n: int, seed: int) -> list[dict]:
    """``n`` plants drawn from the fixed lists with ``seed`` (same seed, same variants; variant ``k``
    of ``n`` is the same for any ``n > k``). Ring and cross need 3 pixels a side: drawn at size 3."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        pattern = str(rng.choice(PATTERNS))
        size = int(rng.choice(SIZES))
        if pattern in ("ring", "cross"):
            size = 3
        r, c = PLACES[int(rng.integers(len(PLACES)))]
        r, c = min(r, 8 - size), min(c, 8 - size)
        out.append({"variant": k, "target_class": int(rng.choice(CLASSES)), "region": [r, r + size, c, c + size],
                    "pattern": pattern, "amplitude": float(rng.choice(AMPLITUDES)),
                    "fraction": float(rng.choice(FRACTIONS)), "seed": int(seed * 1000 + k)})
    return out


def variant_config(base, variant: dict, models: int | None = None, small: bool = False):
    """The shipped planted study ``base`` (a StudyConfig) planted as ``variant``; ``models`` per
    algorithm; ``small``: the CI size (fewer candidates, inputs and resamples)."""
    cfg = copy.deepcopy(base)
    plant = {k: variant[k] for k in ("target_class", "region", "pattern", "amplitude", "fraction", "seed")}
    kwargs = cfg.runner.get("kwargs", {})
    plant = {**kwargs.get("plant", {}), **plant, "test_copies": True}  # the base's other keys (background) kept
    cfg.runner = {**cfg.runner, "kwargs": {**kwargs, "plant": plant, "twin": True}}
    cfg.name = f"planted-v{variant['variant']}"
    if models is not None:
        cfg.with_models(models)
    if small:
        cfg.search.families = ["patch"]
        cfg.search.n_inputs, cfg.search.n_resamples = 60, 200
        cfg.calibration.splits, cfg.calibration.groups = 5, 4
        cfg.counterfactual.n_test, cfg.counterfactual.bootstrap = 100, 200
        cfg.ensemble_size = min(cfg.ensemble_size, cfg.models)
    return cfg


def _at(d: dict, k: int):
    return d[k] if k in d else d[str(k)]


def variant_record(variant: dict, summary: dict) -> dict:
    """One flat record of a variant's planted run and twin (``summary`` as run_planted returns or
    summary.json holds)."""
    p, t = summary["planted"], summary.get("twin") or {}
    r = p["reliance"]
    s = p.get("search") or {}
    ts = t.get("search") or {}
    chance = p["chance"]
    return {
        **{k: variant[k] for k in ("variant", "target_class", "region", "pattern", "amplitude", "fraction")},
        "a_reliance": r["a"], "b_reliance": r["b"], "b_over_a": r["b_over_a"],
        "twin_a_reliance": (t.get("reliance") or {}).get("a"), "twin_b_reliance": (t.get("reliance") or {}).get("b"),
        "a_relies": bool(r["a_relies"]), "b_third": bool(r["b_third"]),
        "a_relies_beyond_twin": _beyond(r["a"], (t.get("reliance") or {}).get("a")),
        "headline_match": bool(s.get("headline")), "top3_match": bool(s.get("top")), "match_rank": s.get("rank"),
        "twin_match": bool(t.get("confirms_at_plant")), "twin_top3_match": bool(ts.get("top")),
        "counted_headline": bool(s.get("headline")) and not bool(t.get("confirms_at_plant")),
        "counted_top3": bool(s.get("top")) and not bool(t.get("confirms_at_plant")),
        "chance": chance,
        "precision_a_minus_b": _at(p["precision_a_minus_b"], 100),
        "precision_b_minus_a": _at(p["precision_b_minus_a"], 100),
        "precision_b_own": _at(p["precision_b_own"], 100),
        "precision_a_own": _at(p["precision_a_own"], 100),
        "twin_precision_a_minus_b": _at(t["precision_a_minus_b"], 100) if "precision_a_minus_b" in t else None,
        "headline": summary["directions"]["a_minus_b"].get("headline"), "twin_headline": t.get("headline"),
        **_exposure_fields(s, summary.get("twin_exposure")),
    }


def _exposure_fields(search: dict, exposure: dict | None) -> dict:
    """The exposure-matched twin's verdict at the plant and the finding counted against it (when run)."""
    if exposure is None:
        return {}
    at = bool(exposure.get("confirms_at_plant"))
    return {"exposure_twin_match": at, "counted_top3_exposure": bool(search.get("top")) and not at,
            "exposure_twin_a_reliance": (exposure.get("reliance") or {}).get("a")}


def _beyond(planted: dict, twin: dict | None) -> bool:
    """A's paste effect with the plant exceeds the twin's (CIs apart): the reliance is the plant's,
    not a reaction to a pattern written over the image that any model would have."""
    if twin is None or planted["ci_low"] is None or twin["ci_high"] is None:
        return bool(planted["ci_low"] is not None and planted["ci_low"] > 0)
    return bool(planted["ci_low"] > max(twin["ci_high"], 0.0))


def rates(records: list[dict]) -> dict:
    """The acceptance's rates over the variants where A relies on the plant (its paste effect's CI
    above 0 and above the twin's CI: ``a_relies_beyond_twin``):
    counted discovery (headline / top 3, with the plant and not in the twin), twin confirmations at
    the planted (place, class), precision@100 of the top A−B end >= 3x chance, of B−A and B's own
    <= 2x chance, and B's reliance <= A's / 3."""
    rel = [r for r in records if r["a_relies"] and r.get("a_relies_beyond_twin", True)]
    share = lambda key: (float(np.mean([bool(key(r)) for r in rel])) if rel else float("nan"))
    return {"variants": len(records), "a_relies": len(rel), "a_relies_in_planted_run": sum(r["a_relies"] for r in records),
            "counted_headline": share(lambda r: r["counted_headline"]),
            "counted_top3": share(lambda r: r["counted_top3"]),
            "planted_top3_any": share(lambda r: r["top3_match"]),
            "twin_at_place": share(lambda r: r["twin_match"]),
            "precision_top_3x": share(lambda r: r["precision_a_minus_b"] >= LEVELS["precision_top"] * r["chance"]),
            "precision_b_minus_a_2x": share(lambda r: r["precision_b_minus_a"] <= LEVELS["precision_controls"] * r["chance"]),
            "precision_b_own_2x": share(lambda r: r["precision_b_own"] <= LEVELS["precision_controls"] * r["chance"]),
            "b_third": share(lambda r: r["b_third"]),
            **({"counted_top3_exposure": share(lambda r: r["counted_top3_exposure"]),
                "exposure_twin_at_place": share(lambda r: r["exposure_twin_match"]),
                "counted_top3_both": share(lambda r: r["counted_top3"] and r["counted_top3_exposure"])}
               if rel and all("exposure_twin_match" in r for r in rel) else {})}


def _ci(e: dict) -> str:
    f = lambda v: "nan" if v is None else f"{v:+.2f}"
    return f"{e['mean']:+.2f} [{f(e['ci_low'])},{f(e['ci_high'])}]"


def _mean(e) -> str:
    return "-" if not e else f"{e['mean']:+.2f}"


def format_table(records: list[dict]) -> str:
    """One line per variant and the rates (``twin A``: A's paste effect in the no-plant twin, what
    pasting the pattern does to A without any plant)."""
    yn = lambda v: "yes" if v else "no"
    head = (f"{'v':>2} {'class':>5} {'region':<14} {'pattern':<8} {'amp':>4} {'frac':>4}  {'A reliance':<21} "
            f"{'B reliance':<21} {'twin A':>6} {'B<=A/3':<6} {'head':<4} {'top3':<4} {'twin':<4} {'count':<5}  "
            f"{'P@100 A-B':>9} {'B-A':>5} {'B own':>5} {'chance':>6}")
    lines = [head]
    for r in records:
        lines.append(f"{r['variant']:>2} {r['target_class']:>5} {str(r['region']):<14} {r['pattern']:<8} "
                     f"{r['amplitude']:>4.2f} {r['fraction']:>4.2f}  {_ci(r['a_reliance']):<21} {_ci(r['b_reliance']):<21} "
                     f"{_mean(r.get('twin_a_reliance')):>6} {yn(r['b_third']):<6} {yn(r['headline_match']):<4} {yn(r['top3_match']):<4} "
                     f"{yn(r['twin_match']):<4} {yn(r['counted_top3']):<5}  {r['precision_a_minus_b']:>9.2f} "
                     f"{r['precision_b_minus_a']:>5.2f} {r['precision_b_own']:>5.2f} {r['chance']:>6.3f}")
    rt = rates(records)
    pct = lambda v: "n/a" if v != v else f"{100 * v:.0f} %"
    lines.append(f"over {rt['a_relies']} of {rt['variants']} variants where A relies on the plant beyond the twin "
                 f"({rt['a_relies_in_planted_run']} with A's paste effect above 0): counted (plant, "
                 f"not twin) headline {pct(rt['counted_headline'])}, top 3 {pct(rt['counted_top3'])} (target >= 80 %); "
                 f"twin confirms at the planted place/class {pct(rt['twin_at_place'])} (target <= 10 %); precision@100 "
                 f"A−B >= 3x chance {pct(rt['precision_top_3x'])} (target >= 80 %), B−A <= 2x chance "
                 f"{pct(rt['precision_b_minus_a_2x'])}, B own <= 2x chance {pct(rt['precision_b_own_2x'])}; "
                 f"B reliance <= A/3 {pct(rt['b_third'])}")
    if "counted_top3_exposure" in rt:
        lines.append(f"exposure-matched twin: confirms at the planted place/class {pct(rt['exposure_twin_at_place'])}; "
                     f"counted top 3 against it {pct(rt['counted_top3_exposure'])}, against both twins "
                     f"{pct(rt['counted_top3_both'])}")
    return "\n".join(lines)
