"""Re-apply the search's confirmation rule (:func:`modeldiff.counterfactual.search.judge`: Holm over both
directions' tests) to finished runs, from the confirmation tests their summary.json keep.

The confirmation p-values and CIs of the tested candidates do not depend on the adjustment, so a run
searched under an earlier rule (Holm within each direction) is re-judged exactly, without retraining
or re-searching.

    python benchmarks/rejudge.py --null DIR [DIR ...]          # null runs: seeds with any confirmed transform
    python benchmarks/rejudge.py --grid GRID_DIR [--seed 0]    # planted grid: counted / twin at the plant
    python benchmarks/rejudge.py --study RUN_DIR [...]         # a study's confirmed transforms, both directions
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeldiff.counterfactual.search import DIRECTIONS, judge  # noqa: E402


def rejudged(summary: dict, alpha: float = 0.05) -> dict:
    """``{direction: confirmed records}`` of a summary under the current rule (records copied), ordered
    as its ranking orders them."""
    tested = {d: copy.deepcopy(summary["directions"][d].get("search_tested") or []) for d in DIRECTIONS}
    rule = summary["directions"]["a_minus_b"].get("search_ranking_rule")
    return judge(tested, alpha, "confirmation_score" if rule == "exclusive" else "diff")


def _label(r: dict) -> str:
    lo = r["effects"]["log-odds"]
    return (f"{r.get('label', r['transform'])} -> {r['target_name']} (A {lo['a']['mean']:+.2f} vs B {lo['b']['mean']:+.2f}, "
            f"Holm p {r['p_adjusted']:.2g})")


def null_runs(folders: list[Path]) -> int:
    by_seed = {}
    for f in folders:  # shards may overlap: a seed counts once
        for path in sorted(f.glob("seed_*/summary.json")):
            by_seed.setdefault(path.parent.name, path)
    seeds = [by_seed[k] for k in sorted(by_seed, key=lambda name: int(name.split("_")[1]))]
    hits = 0
    for path in seeds:
        s = json.loads(path.read_text())
        old = any(s["directions"][d].get("confirmed") for d in DIRECTIONS)
        new = rejudged(s)
        hit = any(new.values())
        hits += hit
        print(f"{path.parent.name}: confirmed before {'yes' if old else 'no'}, now "
              f"{'; '.join(_label(r) for d in DIRECTIONS for r in new[d]) if hit else 'nothing'}")
    print(f"runs with a confirmed transform: {hits} of {len(seeds)}")
    return 0


def grid(folder: Path, seed: int) -> int:
    from case_studies.planted.grid import draw_variants
    from case_studies.planted.match import direction_matches, twin_confirms_place

    variants = {v["variant"]: v for v in draw_variants(100, seed)}
    counted = twin_hits = found = n = 0
    for path in sorted(folder.glob("variant_*/summary.json"), key=lambda p: int(p.parent.name.split("_")[1])):
        k = int(path.parent.name.split("_")[1])
        v, s = variants[k], json.loads(path.read_text())
        twin = json.loads((path.parent / "twin" / "summary.json").read_text())
        hw = (8, 8)
        planted = direction_matches({"confirmed": rejudged(s)["a_minus_b"]}, v["region"], v["target_class"], hw)
        at_place = twin_confirms_place({"confirmed": rejudged(twin)["a_minus_b"]}, v["region"], v["target_class"], hw)
        n += 1
        found += planted["top"]
        twin_hits += at_place
        counted += planted["top"] and not at_place
        print(f"v{k}: plant in the top 3 {planted['top']} (rank {planted['rank']}), twin at the plant {at_place}")
    print(f"counted {counted} of {n}; plant in the top 3 {found} of {n}; twin confirms at the plant {twin_hits} of {n}")
    return 0


def studies(folders: list[Path]) -> int:
    for f in folders:
        s = json.loads((f / "summary.json").read_text())
        for d, recs in rejudged(s).items():
            print(f"{f.name} {d}: " + ("; ".join(_label(r) for r in recs) or "nothing confirmed"))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--null", nargs="+", type=Path)
    g.add_argument("--grid", type=Path)
    g.add_argument("--study", nargs="+", type=Path)
    p.add_argument("--seed", type=int, default=0, help="the grid's seed")
    args = p.parse_args(argv)
    if args.null:
        return null_runs(args.null)
    if args.grid:
        return grid(args.grid, args.seed)
    return studies(args.study)


if __name__ == "__main__":
    sys.exit(main())
