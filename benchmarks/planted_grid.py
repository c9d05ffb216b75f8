"""The seeded planted grid: does the search find a planted feature nobody tuned to, and not in the twin?

Each variant plants a pattern drawn by ``--seed`` from fixed lists (class, place, pattern, size,
amplitude, fraction: case_studies/planted/grid.py) and runs the shipped planted study
(case_studies/planted/digits.yaml: B pastes the same pattern on half of its inputs) with its
no-plant twin through the real study pipeline. Per variant it prints A's and B's reliance on the
plant (log-odds effect of pasting it on clean other-class test images, 95 % CIs), whether the A−B
headline / one of the top 3 confirmed is a local transform at the planted place towards the planted
class, whether the twin confirms anything there, and precision@100 of the top A−B component, B−A
and B's own top component against chance; then the acceptance rates.

    python benchmarks/planted_grid.py --variants 4 --seed 0 --out runs/planted_grid
    python benchmarks/planted_grid.py --variants 2 --seed 0 --models 8 --small --out runs/grid_ci   # the CI size
    python benchmarks/planted_grid.py --variants 6 --seed 0 --only 4,5 --out runs/planted_grid     # a shard
    python benchmarks/planted_grid.py --variants 12 --seed 1 --exposure-twin --out runs/grid_s1     # both twins

Writes ``OUT/planted_grid.json`` (variants, records, rates, settings) and resumes: a variant whose
folder already holds a finished run is read, not rerun.
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


def run_variant(base, variant: dict, out: Path, models, small: bool, device: str,
                exposure_twin: bool = False) -> tuple[dict, float]:
    """``(summary, seconds)`` of one variant (read back when its folder holds a finished run)."""
    from case_studies.planted.grid import variant_config
    from modeldiff.studies.run import run_configured

    done = out / "summary.json"
    if done.is_file():
        summary = json.loads(done.read_text())
        if _finished(summary, variant, exposure_twin):
            return summary, 0.0
    start = time.time()
    cfg = variant_config(base, variant, models, small)
    if exposure_twin:
        cfg.runner["kwargs"]["exposure_twin"] = True
    summary = run_configured(cfg, out, device)
    return summary, time.time() - start


def main(argv=None) -> int:
    from case_studies.planted.grid import draw_variants, format_table, rates
    from modeldiff.studies.config import load_study

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=int, default=4, help="variants drawn from the fixed lists")
    p.add_argument("--seed", type=int, default=0, help="the grid's seed (same seed, same variants)")
    p.add_argument("--models", type=int, default=None, help="models per algorithm (default: the study's, 64)")
    p.add_argument("--small", action="store_true", help="CI size: patch candidates only, fewer inputs and resamples")
    p.add_argument("--study", default="planted", help="the planted study the variants start from")
    p.add_argument("--out", default="runs/planted_grid")
    p.add_argument("--only", default=None, help="comma-separated variant numbers to run (a shard: several "
                   "processes may share OUT; the JSON and table hold every finished variant of the N drawn)")
    p.add_argument("--classes-per-transform", type=int, default=None,
                   help="the search's (transform, class) pairs per transform (default: the study's)")
    p.add_argument("--background", type=float, default=None,
                   help="share of all training images carrying the pattern in both worlds (default: the study's)")
    p.add_argument("--distinct", action="store_true", help="the search confirms distinct findings only")
    p.add_argument("--exposure-twin", action="store_true",
                   help="also run each variant's exposure-matched twin (OUT/variant_K/twin_exposure)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.variants < 1:
        print("error: --variants must be at least 1", file=sys.stderr)
        return 2
    base = load_study(args.study)
    if args.classes_per_transform is not None:
        base.search.classes_per_transform = args.classes_per_transform
    if args.distinct:
        base.search.distinct = True
    if args.background is not None:
        plant = base.runner.setdefault("kwargs", {}).setdefault("plant", {})
        plant["background"] = args.background
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = draw_variants(args.variants, args.seed)
    only = None if args.only is None else {int(k) for k in args.only.split(",")}
    seconds = {}
    for v in variants:
        if only is not None and v["variant"] not in only:
            continue
        print(f"variant {v['variant']}: {v}", file=sys.stderr, flush=True)
        _, seconds[v["variant"]] = run_variant(base, v, out / f"variant_{v['variant']}", args.models, args.small,
                                               args.device, args.exposure_twin)
        records = finished(variants, out, seconds, args.exposure_twin)
        result = {"settings": vars(args), "variants": [v for v in variants if v["variant"] in
                                                       {r["variant"] for r in records}],
                  "records": records, "rates": rates(records)}
        (out / "planted_grid.json").write_text(json.dumps(result, indent=1, default=float))
    records = finished(variants, out, seconds, args.exposure_twin)
    print(format_table(records))
    print(f"wall time per variant (planted run + twin, this process; 0 = read back): "
          f"{', '.join(f'v{k} {s:.0f} s' for k, s in seconds.items())}")
    return 0


def _finished(summary: dict, variant: dict, exposure_twin: bool) -> bool:
    return (summary.get("planted", {}).get("region") == variant["region"] and "twin" in summary
            and (not exposure_twin or "twin_exposure" in summary))


def finished(variants: list[dict], out: Path, seconds: dict, exposure_twin: bool = False) -> list[dict]:
    """Records of every variant whose folder holds a finished run (from any process)."""
    from case_studies.planted.grid import variant_record

    records = []
    for v in variants:
        done = out / f"variant_{v['variant']}" / "summary.json"
        if done.is_file():
            summary = json.loads(done.read_text())
            if _finished(summary, v, exposure_twin):
                records.append({**variant_record(v, summary), "seconds": round(seconds.get(v["variant"], 0.0), 1)})
    return records


if __name__ == "__main__":
    sys.exit(main())
