"""The exposure-matched twin of a finished planted grid: does the twin's finding at the plant come from
A never having met the pattern?

The no-plant twin (same recipes, nothing planted) differs from the planted run in two ways: the
pattern is not correlated with the planted class, and A never meets the pattern at all while B's
paste augmentation shows it on half of B's inputs. Where the pattern happens to draw part of a digit
at its place, A reacts to it as any reader would and B, trained to ignore it, does not, so the twin
confirms the planted (place, class) without a plant. This twin keeps the exposure and removes only
the correlation: the same recipes on the unplanted data with the pattern written on as many training
images as the plant has, drawn from every class (``plant.background``). Per variant of a grid run by
``benchmarks/planted_grid.py`` it runs that twin into ``DIR/variant_K/twin_exposure`` with the grid's
own search settings and reports whether it confirms anything at the planted (place, class), beside
the no-plant twin, and the counted rate under each.

    python benchmarks/exposure_twin.py --grid runs/planted_grid --variants 12 --seed 0
    python benchmarks/exposure_twin.py --grid runs/planted_grid --variants 12 --seed 0 --only 1,3   # a shard

Writes ``DIR/exposure_twin.json`` (records of every variant with a finished exposure twin, rates);
resumes like the grid (a finished twin is read back).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def grid_config(settings: dict, variant: dict):
    """The variant's study exactly as the grid ran it (its search and plant settings)."""
    from case_studies.planted.grid import variant_config
    from modeldiff.studies.config import load_study

    base = load_study(settings.get("study", "planted"))
    if settings.get("classes_per_transform") is not None:
        base.search.classes_per_transform = settings["classes_per_transform"]
    if settings.get("distinct"):
        base.search.distinct = True
    if settings.get("background") is not None:
        base.runner.setdefault("kwargs", {}).setdefault("plant", {})["background"] = settings["background"]
    return variant_config(base, variant, settings.get("models"), bool(settings.get("small")))


def run_exposure_twin(cfg, out: Path) -> dict:
    """``twin_entry`` of the exposure-matched twin of ``cfg``'s plant, run into ``out``
    (:func:`case_studies.planted.study.exposure_matched`: the runner's ``exposure_twin: true``)."""
    from case_studies.planted.plant import plant as make_plant
    from case_studies.planted.study import _plant_args, exposure_matched, planted_recipes, run_twin
    from modeldiff.studies.pipeline import load_study_data

    args = _plant_args(cfg.runner["kwargs"]["plant"])
    base = load_study_data(cfg, None)
    planted = make_plant(base, **args)
    exposed = exposure_matched(base, args, planted)
    entry = run_twin(cfg, planted, planted_recipes(cfg, planted), exposed.twin, out, "exposure-matched twin")
    entry["n_exposed_train"] = int(len(exposed.background_train))
    return entry


def record(variant: dict, planted_summary: dict, exposure: dict) -> dict:
    """The variant's match and both twins' verdicts at the plant."""
    p, t = planted_summary["planted"], planted_summary["twin"]
    top = bool((p.get("search") or {}).get("top"))
    return {"variant": variant["variant"], "pattern": variant["pattern"], "region": variant["region"],
            "target_class": variant["target_class"], "top3_match": top,
            "twin_match": bool(t["confirms_at_plant"]), "exposure_twin_match": bool(exposure["confirms_at_plant"]),
            "counted_top3": top and not t["confirms_at_plant"],
            "counted_top3_exposure": top and not exposure["confirms_at_plant"],
            "twin_a_reliance": t["reliance"]["a"]["mean"], "exposure_twin_a_reliance": exposure["reliance"]["a"]["mean"],
            "exposure_twin_confirmed": [[c["label"], c["target_class"]] for c in exposure["confirmed"]],
            "n_exposed_train": exposure["n_exposed_train"]}


def main(argv=None) -> int:
    from case_studies.planted.grid import draw_variants

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="a finished planted grid (benchmarks/planted_grid.py --out)")
    p.add_argument("--variants", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help="comma-separated variant numbers (a shard)")
    args = p.parse_args(argv)
    grid = Path(args.grid)
    if not (grid / "planted_grid.json").is_file():
        print(f"error: {grid} holds no planted_grid.json: run benchmarks/planted_grid.py --out {grid} first",
              file=sys.stderr)
        return 2
    settings = json.loads((grid / "planted_grid.json").read_text())["settings"]
    only = None if args.only is None else {int(k) for k in args.only.split(",")}
    for v in draw_variants(args.variants, args.seed):
        folder = grid / f"variant_{v['variant']}"
        done = folder / "twin_exposure" / "entry.json"
        if (only is not None and v["variant"] not in only) or done.is_file() or not (folder / "summary.json").is_file():
            continue
        start = time.time()
        entry = run_exposure_twin(grid_config(settings, v), folder / "twin_exposure")
        entry["seconds"] = round(time.time() - start, 1)
        done.write_text(json.dumps(entry, indent=1, default=float))
    records = []
    for v in draw_variants(args.variants, args.seed):
        done = grid / f"variant_{v['variant']}" / "twin_exposure" / "entry.json"
        if done.is_file():
            summary = json.loads((grid / f"variant_{v['variant']}" / "summary.json").read_text())
            records.append(record(v, summary, json.loads(done.read_text())))
    share = lambda key: sum(r[key] for r in records) / len(records) if records else float("nan")
    rates = {"variants": len(records), "counted_top3": share("counted_top3"),
             "counted_top3_exposure": share("counted_top3_exposure"), "twin_at_place": share("twin_match"),
             "exposure_twin_at_place": share("exposure_twin_match")}
    (grid / "exposure_twin.json").write_text(json.dumps({"settings": settings, "records": records, "rates": rates},
                                                        indent=1, default=float))
    for r in records:
        print(f"v{r['variant']:>2} {r['pattern']:<8} {str(r['region']):<14} -> {r['target_class']}  top3 "
              f"{'yes' if r['top3_match'] else 'no ':<3}  twin at plant {'YES' if r['twin_match'] else 'no ':<3} "
              f"(A {r['twin_a_reliance']:+.2f})  exposure twin at plant {'YES' if r['exposure_twin_match'] else 'no ':<3} "
              f"(A {r['exposure_twin_a_reliance']:+.2f})")
    pct = lambda v: "n/a" if v != v else f"{100 * v:.0f} %"
    print(f"over {rates['variants']} variants: counted (top 3, twin clean) {pct(rates['counted_top3'])} with the "
          f"no-plant twin, {pct(rates['counted_top3_exposure'])} with the exposure-matched twin; twin at the plant "
          f"{pct(rates['twin_at_place'])} vs {pct(rates['exposure_twin_at_place'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
