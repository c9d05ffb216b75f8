"""The search stage alone, under each ranking, on finished runs: a planted grid (which ranking finds
the plant?), null runs (does any ranking confirm a difference between a recipe and itself?) or a
study (what does each ranking confirm?).

Training and attribution are deterministic and do not depend on the search, so the models of a grid
run (``benchmarks/planted_grid.py``) are exactly those a rerun would train; only the search differs.
For every variant this reruns the study's search (the planted study's settings: generic library less
the plant's own paste, ``search.rows``, screening, pairs, Holm over both directions) on the planted
run and on its twins, once per ranking, with the library's own functions: one screening pass, the
full discovery pass on the union of what each ranking's screening keeps, then each ranking's
confirmation. ``case_studies.planted.match`` judges each against the plant (headline / top 3 at the
planted place and class; the twin confirming anything there).

    python benchmarks/rerun_search.py --grid runs/grid_s1 --variants 12 --seed 1 --rankings effect,exclusive
    python benchmarks/rerun_search.py --grid runs/grid_s1 --variants 12 --seed 1 --only 0,1,2   # a shard
    python benchmarks/rerun_search.py --null runs/nulls --rankings effect,exclusive   # benchmarks/null_calibration.py runs
    python benchmarks/rerun_search.py --study-run runs/sgd_noise --study sgd_noise   # a finished `modeldiff study`

Writes ``GRID/rerun_search.json`` (one record per variant, merged with the records of other shards)
and prints, per variant and ranking, the top 3 confirmed with the match, and at the end the rates.
The rerun under the ranking a grid was run with reproduces its recorded verdicts (printed beside
each variant as ``recorded``). With ``--null`` it reruns the search of each ``seed_*`` folder of a null
calibration (its study's candidates, with the overlays of the stored components) and writes
``DIR/rerun_search_null.json``: per seed and ranking what is confirmed in either direction, and the runs
with any confirmed transform. With ``--study-run`` it reruns a finished study's search (the study's
own candidates, rows and settings; ``--study`` names its YAML) and writes ``DIR/rerun_search.json``:
per ranking the top confirmed of each direction.
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

TWINS = ("twin", "twin_exposure")
DIRECTIONS = ("a_minus_b", "b_minus_a")


def search_rankings(folder: Path, cfg, data, rows, exclude: str, rankings) -> dict:
    """``{ranking: {direction: DirectionSearch.to_dict()}}`` of the study's search on the stores in ``folder``."""
    from types import SimpleNamespace

    from datamodels.store.store import Store
    from modeldiff.counterfactual.ranking import ranking_ratio
    from modeldiff.counterfactual.screen import Discovery, allowed_classes, kept_indices
    from modeldiff.counterfactual.search import SearchSettings, _discover, confirm, store_halves
    from modeldiff.studies.pipeline import search_candidates

    sp = cfg.search
    # the study's candidates, with the overlays of its stored top components
    fits = {d: SimpleNamespace(components_=np.load(folder / f"components_{d}.npy")) for d in DIRECTIONS}
    cands = search_candidates(cfg, data, fits, [exclude] if exclude else [])
    stores = [Store.open(str(folder / f"store_{t}"), data) for t in "ab"]
    halves = store_halves(*stores, data, n_inputs=sp.n_inputs, seed=sp.seed, rows=rows, max_models=sp.models,
                          screen_models=sp.screen_models)
    xd, yd = halves.x[0], np.asarray(halves.y[0])
    first = _discover(tuple(halves.screen), xd, yd, cands, None, "screening")[0]
    allowed = allowed_classes(cands, first[0][0].shape[-1])
    kept = {r: kept_indices(first, allowed, sp.screen_keep, ranking_ratio(r)) for r in rankings}
    union = sorted(set().union(*(set(k.tolist()) for k in kept.values())))
    full = dict(zip(union, _discover((halves.predict_a[0], halves.predict_b[0]), xd, yd, [cands[i] for i in union],
                                     None)[0]))
    out = {}
    for r in rankings:
        keep = set(kept[r].tolist())
        disc = Discovery([full[i] if i in keep else first[i] for i in range(len(cands))],
                         screened_out=sorted(set(range(len(cands))) - keep))
        s = SearchSettings(n_confirm=sp.n_confirm, alpha=sp.alpha, n_inputs=sp.n_inputs, ranking=r,
                           n_resamples=sp.n_resamples, seed=sp.seed, screen_keep=sp.screen_keep,
                           classes_per_transform=sp.classes_per_transform, distinct=sp.distinct)
        res = confirm(halves, cands, disc, s, class_names=list(data.class_names))
        out[r] = {d: v.to_dict() for d, v in res.items()}
    return out


def _brief(rec: dict) -> str:
    lo = rec["effects"]["log-odds"]
    return f"{rec['label']} -> {rec['target_name']} (A {lo['a']['mean']:+.2f} vs B {lo['b']['mean']:+.2f})"


def run_variant(base, variant: dict, grid: Path, rankings) -> dict:
    from case_studies.planted import match as matching
    from case_studies.planted.grid import variant_config
    from case_studies.planted.plant import plant as make_plant
    from case_studies.planted.study import exposure_matched
    from modeldiff.studies.pipeline import load_study_data

    t0 = time.perf_counter()
    cfg = variant_config(base, variant)
    folder = grid / f"variant_{variant['variant']}"
    base_data = load_study_data(cfg)
    plant_args = cfg.runner["kwargs"]["plant"]
    planted = make_plant(base_data, **plant_args)
    region, target, hw = list(planted.region), int(planted.target_class), planted.data.x_test.shape[-2:]
    paste = repr(planted.transform())
    recorded = json.loads((folder / "summary.json").read_text())
    rec = {**variant, "reliance": recorded["planted"]["reliance"], "recorded_ranking":
           recorded["directions"]["a_minus_b"].get("search_ranking_rule"),
           "recorded": {"search": recorded["planted"]["search"],
                        **{t: bool(recorded[t]["confirms_at_plant"]) for t in TWINS if t in recorded}}}
    runs = {"planted": (folder, planted.data, planted.clean_test_rows)}
    twin_data = {"twin": planted.twin or base_data}
    if (folder / "twin_exposure").is_dir():
        twin_data["twin_exposure"] = exposure_matched(base_data, plant_args, planted).twin
    for t, data in twin_data.items():
        if (folder / t).is_dir():
            runs[t] = (folder / t, data, np.arange(data.n_test))
    for which, (path, data, rows) in runs.items():
        found = search_rankings(path, cfg, data, rows, paste, rankings)
        for r, dirs in found.items():
            d = dirs["a_minus_b"]
            rec.setdefault(r, {})[which] = {
                "match": matching.direction_matches(d, region, target, hw),
                "at_plant": matching.twin_confirms_place(d, region, target, hw),
                "top3": [_brief(x) for x in d["confirmed"][:3]],
                "b_minus_a": [_brief(x) for x in dirs["b_minus_a"]["confirmed"][:3]]}
    for r in rankings:
        p = rec[r]
        p["found_top3"] = bool(p["planted"]["match"]["top"])
        p["counted_top3"] = p["found_top3"] and not p.get("twin", {}).get("at_plant", False)
        if "twin_exposure" in p:
            p["counted_top3_exposure"] = p["found_top3"] and not p["twin_exposure"]["at_plant"]
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def rates(records: list[dict], rankings) -> dict:
    """Per ranking: found (top 3), counted against the no-plant twin, the twin at the plant, over the
    variants where A relies on the plant (its paste effect's CI above 0)."""
    rel = [r for r in records if r["reliance"]["a_relies"]]
    out = {}
    for k in rankings:
        share = lambda f, k=k: f"{sum(bool(f(r[k])) for r in rel)} / {len(rel)}"
        out[k] = {"found_top3": share(lambda p: p["found_top3"]), "counted_top3": share(lambda p: p["counted_top3"]),
                  "twin_at_plant": share(lambda p: p.get("twin", {}).get("at_plant"))}
        if rel and all("twin_exposure" in r[k] for r in rel):
            out[k]["exposure_twin_at_plant"] = share(lambda p: p["twin_exposure"]["at_plant"])
    return out


def null_runs(folder: Path, rankings) -> int:
    """Rerun the search of every ``seed_*`` run of a null calibration under each ranking."""
    from null_calibration import null_config

    from datamodels.base.atomic import atomic_write_text
    from modeldiff.studies.pipeline import load_study_data

    made = json.loads((folder / "null_calibration.json").read_text())["args"]  # the sizes the runs were made with
    records = []
    for path in sorted(folder.glob("seed_*"), key=lambda p: int(p.name.split("_")[1])):
        seed = int(path.name.split("_")[1])
        cfg = null_config(seed, made.get("models"), made.get("trak_models"))
        data = load_study_data(cfg)
        t0 = time.perf_counter()
        found = search_rankings(path, cfg, data, None, "", rankings)
        rec = {"seed": seed, **{r: {d: [_brief(x) for x in found[r][d]["confirmed"]] for d in DIRECTIONS}
                                for r in rankings}, "seconds": round(time.perf_counter() - t0, 1)}
        records.append(rec)
        print(f"seed {seed}: " + " | ".join(f"{r} {'; '.join(rec[r]['a_minus_b'] + rec[r]['b_minus_a']) or 'nothing'}"
                                             for r in rankings) + f" ({rec['seconds']} s)", flush=True)
        hits = {r: sum(any(x[r][d] for d in DIRECTIONS) for x in records) for r in rankings}
        atomic_write_text(folder / "rerun_search_null.json", json.dumps(
            {"rankings": rankings, "records": records, "runs_with_a_confirmed_transform": hits}, indent=1))
    print("runs with a confirmed transform: " + ", ".join(f"{r} {n} of {len(records)}" for r, n in hits.items()))
    return 0


def study_run(folder: Path, study: str, rankings) -> int:
    """Rerun a finished study's search (its candidates, rows and settings) under each ranking."""
    from datamodels.base.atomic import atomic_write_text
    from modeldiff.studies.config import load_study
    from modeldiff.studies.pipeline import load_study_data

    cfg = load_study(study)
    if cfg.runner or cfg.search.rows != "all":  # a set-up's recipes do not matter here: the stores hold the models
        print(f"rerun_search: study {study!r} has its own runner or search rows; rerun it with "
              "`modeldiff study` instead", file=sys.stderr)
        return 2
    data = load_study_data(cfg)
    recorded = json.loads((folder / "summary.json").read_text())["directions"]
    out = {"study": study, "recorded": {d: recorded[d].get("headline") for d in DIRECTIONS}}
    for r, dirs in search_rankings(folder, cfg, data, None, "", rankings).items():
        out[r] = {d: {"headline": dirs[d]["headline"], "confirmed": [_brief(x) for x in dirs[d]["confirmed"]]}
                  for d in DIRECTIONS}
    atomic_write_text(folder / "rerun_search.json", json.dumps(out, indent=1))
    print(f"{study}: recorded headlines {out['recorded']}")
    for r in rankings:
        for d in DIRECTIONS:
            print(f"  {r:9s} {d}: " + ("; ".join(out[r][d]["confirmed"]) or "nothing confirmed"))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default=None, help="a finished planted grid (benchmarks/planted_grid.py --out)")
    p.add_argument("--null", default=None, help="a finished null calibration (benchmarks/null_calibration.py --out)")
    p.add_argument("--study-run", default=None, help="a finished study's output folder (with --study)")
    p.add_argument("--variants", type=int, default=12)
    p.add_argument("--seed", type=int, default=0, help="the grid's seed")
    p.add_argument("--only", default=None, help="comma-separated variants (a shard)")
    p.add_argument("--rankings", default="effect,exclusive")
    p.add_argument("--study", default="planted")
    args = p.parse_args(argv)
    import torch

    from case_studies.planted.grid import draw_variants
    from datamodels.base.atomic import atomic_write_text
    from modeldiff.counterfactual.ranking import RANKINGS
    from modeldiff.studies.config import load_study

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rankings = args.rankings.split(",")
    if set(rankings) - set(RANKINGS):
        print(f"rerun_search: unknown ranking(s) {sorted(set(rankings) - set(RANKINGS))}; choose from "
              f"{', '.join(RANKINGS)}", file=sys.stderr)
        return 2
    if sum(x is not None for x in (args.grid, args.null, args.study_run)) != 1:
        print("rerun_search: give one of --grid, --null or --study-run", file=sys.stderr)
        return 2
    if args.null:
        return null_runs(Path(args.null), rankings)
    if args.study_run:
        return study_run(Path(args.study_run), args.study, rankings)
    grid = Path(args.grid)
    base = load_study(args.study)
    wanted = None if args.only is None else {int(v) for v in args.only.split(",")}
    path = grid / "rerun_search.json"
    for v in draw_variants(args.variants, args.seed):
        if wanted is not None and v["variant"] not in wanted:
            continue
        rec = run_variant(base, v, grid, rankings)
        done = json.loads(path.read_text())["records"] if path.is_file() else []  # other shards' records kept
        done = [r for r in done if r["variant"] != v["variant"]] + [rec]
        done.sort(key=lambda r: r["variant"])
        atomic_write_text(path, json.dumps({"seed": args.seed, "rankings": rankings, "records": done,
                                            "rates": rates(done, rankings)}, indent=1, default=float))
        print(f"v{v['variant']} {v['pattern']} {v['region']} amp {v['amplitude']} -> {v['target_class']}: "
              f"A relies {rec['reliance']['a']['mean']:+.2f}; recorded ({rec['recorded_ranking']}) top 3 "
              f"{rec['recorded']['search']['top']}, twin {rec['recorded'].get('twin')} ({rec['seconds']} s)")
        for r in rankings:
            x = rec[r]
            print(f"  {r:9s} found {x['found_top3']} counted {x['counted_top3']} twin at plant "
                  f"{x.get('twin', {}).get('at_plant')} | " + "; ".join(x["planted"]["top3"]), flush=True)
    final = json.loads(path.read_text())
    for r, x in final["rates"].items():
        print(f"{r}: " + ", ".join(f"{k} {v}" for k, v in x.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
