"""Discovery on the seeded planted grid: classic vs cross-fitted components, and the search's "t" vs
"effect" ranking, with and without component-proposed candidates, each planted run beside its twin.

Per variant (drawn by case_studies/planted/grid.py, as benchmarks/planted_grid.py draws them) the
planted run and its no-plant twin go through the real study pipeline with the search stage off;
then, per run folder, ONE discovery pass over the union of the candidates (generic library with
strokes, plus the library transforms and overlays proposed by the top components of the classic
and the cross-fitted estimator) is ranked both ways and confirmed (Holm, disjoint halves), and
``case_studies.planted.match`` decides whether the headline / one of the top 3 confirmed is the plant
(place and class) and whether the twin confirms anything there.

    python benchmarks/discovery_grid.py --variants 4 --seed 0 --models 32 --out runs/discovery_grid

Writes ``OUT/discovery_grid.json`` (one record per variant, rewritten after each) and prints a line
per variant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RANKINGS = ("t", "effect")
SETS = ("library", "library+components")


def _fits(folder: Path, splits: int) -> dict:
    """Component sets (as objects with ``components_``) of both estimators, both directions."""
    from types import SimpleNamespace

    from modeldiff.diff.crossfit import CrossFitModelDiff
    from modeldiff.diff.null import TrakGroups, trak_halves

    ga, gb = (TrakGroups.load(folder / f"trak_groups_{t}.npz") for t in "ab")
    halves = list(trak_halves(ga, gb, n_splits=splits))
    swapped = [(b1, b2, a1, a2) for a1, a2, b1, b2 in halves]
    out = {f"classic {d}": SimpleNamespace(components_=np.load(folder / f"components_{d}.npy"))
           for d in ("a_minus_b", "b_minus_a")}
    out["crossfit a_minus_b"] = CrossFitModelDiff(3).fit(halves)
    out["crossfit b_minus_a"] = CrossFitModelDiff(3).fit(swapped)
    return out


def search_folder(folder: Path, cfg, data, rows, region, target: int, splits: int) -> dict:
    """Discovery once, confirmation per (ranking, candidate set); matches against the plant."""
    from case_studies.planted import match as matching
    from datamodels.store.store import Store
    from modeldiff.counterfactual.library import generic_candidates
    from modeldiff.counterfactual.search import (
        SearchSettings,
        confirm,
        discover,
        overlay_candidates,
        store_halves,
    )

    sp = cfg.search
    library = [(t, None) for t in generic_candidates(data.x_test.shape[1:], families=sp.families or None, seed=sp.seed)]
    proposed = overlay_candidates(_fits(folder, splits), data.x_train, data.y_train, 3, cfg.counterfactual.top_k,
                                  library=[t for t, _ in library])
    cands = library + proposed
    stores = [Store.open(str(folder / f"store_{t}")) for t in "ab"]
    halves = store_halves(*stores, data, n_inputs=sp.n_inputs, seed=sp.seed, rows=rows, max_models=sp.models)
    t0 = time.perf_counter()
    disc = discover(halves, cands)
    out = {"candidates": {"library": len(library), "proposed": len(proposed)},
           "discovery_seconds": round(time.perf_counter() - t0, 1)}
    hw = data.x_test.shape[-2:]
    for which in SETS:
        keep = len(library) if which == "library" else len(cands)
        for ranking in RANKINGS:
            s = SearchSettings(n_confirm=sp.n_confirm, alpha=sp.alpha, n_inputs=sp.n_inputs, ranking=ranking,
                               n_resamples=sp.n_resamples, seed=sp.seed)
            res = confirm(halves, cands[:keep], disc[:keep], s, class_names=list(data.class_names))
            d = res["a_minus_b"].to_dict()
            first = next((r["rank"] for r in d["ranking"]
                          if matching.match({"params": _params(cands[r["index"]][0]), "target_class": r["target_class"]},
                                            region, target, hw)["match"]), None)
            out[f"{which}/{ranking}"] = {
                "match": matching.direction_matches(d, region, target, hw),
                "any_at_place": matching.twin_confirms_place(d, region, target, hw),
                "first_matching_discovery_rank": first, "headline": d["headline"],
                "negligible": [bool(r["practical"]["negligible"]) for r in d["confirmed"]]}
    return out


def _params(t) -> dict:
    from modeldiff.counterfactual.search import _params as params

    return params(t)


def run_variant(base, variant: dict, out: Path, models: int, device: str, splits: int) -> dict:
    from discovery_components import evaluate

    from case_studies.planted.grid import variant_config
    from case_studies.planted.plant import plant as make_plant
    from modeldiff.studies.pipeline import load_study_data
    from modeldiff.studies.run import run_configured

    cfg = variant_config(base, variant, models)
    cfg.search.enabled = False  # searched below: one discovery pass, both rankings
    t0 = time.perf_counter()
    summary = run_configured(cfg, out, device)
    study_s = time.perf_counter() - t0
    plant_args = cfg.runner["kwargs"]["plant"]
    data = load_study_data(cfg)
    planted = make_plant(data, **plant_args)
    region, target = list(planted.region), int(planted.target_class)
    rec = {**variant, "models": models, "study_seconds": round(study_s, 1),
           "reliance": summary["planted"]["reliance"], "chance": summary["planted"]["chance"]}
    rec["components"] = evaluate(out, np.asarray(planted.planted_train), splits, None)["curve"][0]
    rec["planted"] = search_folder(out, cfg, planted.data, planted.clean_test_rows, region, target, splits)
    rec["twin"] = search_folder(out / "twin", cfg, data, np.arange(data.n_test), region, target, splits)
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first variant to run (earlier ones are kept from OUT)")
    p.add_argument("--models", type=int, default=32, help="models per algorithm")
    p.add_argument("--splits", type=int, default=8, help="half splits averaged by the cross-fitted estimator")
    p.add_argument("--study", default="planted")
    p.add_argument("--out", default="runs/discovery_grid")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from case_studies.planted.grid import draw_variants
    from modeldiff.studies.config import load_study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "discovery_grid.json"
    records = json.loads(path.read_text())["records"] if path.is_file() else []
    records = [r for r in records if r["variant"] < args.start]
    base = load_study(args.study)
    for v in draw_variants(args.variants, args.seed)[args.start:]:
        rec = run_variant(base, v, out / f"variant_{v['variant']}", args.models, args.device, args.splits)
        records.append(rec)
        path.write_text(json.dumps({"settings": vars(args), "records": records}, indent=1, default=float))
        c, x = rec["components"]["classic"], rec["components"]["crossfit"]
        line = [f"v{v['variant']} {v['pattern']} {v['region']} -> {v['target_class']}: A {rec['reliance']['a']['mean']:+.2f} "
                f"B {rec['reliance']['b']['mean']:+.2f}; p@100 chance {rec['chance']:.3f} classic {c['a_minus_b']:.2f}/"
                f"{c['b_minus_a']:.2f}/{c['b_own']:.2f} crossfit {x['a_minus_b']:.2f}/{x['b_minus_a']:.2f}/{x['b_own']:.2f}"]
        for key in (f"{s}/{r}" for s in SETS for r in RANKINGS):
            m, t = rec["planted"][key], rec["twin"][key]
            line.append(f"  {key}: headline {m['match']['headline']} top3 {m['match']['top']} first-rank "
                        f"{m['first_matching_discovery_rank']} | twin at plant {t['any_at_place']}")
        print("\n".join(line) + f"\n  ({rec['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
