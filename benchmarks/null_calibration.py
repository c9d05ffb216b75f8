"""Null study over seeds: the same recipe against itself must rarely look different.

Runs ``case_studies/null/digits.yaml`` (the high-noise digits recipe vs itself) for seeds
s = 0..N-1, algorithm A with run seed 2s and B with 2s+1 (independent masks and model seeds),
and counts the runs that report any component beyond null (either direction) and the runs
that confirm any transformation. Acceptance: at most 1 of 10 for each.

    python benchmarks/null_calibration.py --out runs/null_bench            # the shipped sizes
    python benchmarks/null_calibration.py --out runs/null_bench --models 16 --trak-models 8  # CPU-cheap

Writes ``OUT/null_calibration.json`` and prints one line per seed and the totals.
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


def null_config(seed: int, models: int | None = None, trak_models: int | None = None, epochs: int | None = None):
    """The null study with A at run seed 2·seed and B at 2·seed + 1 (optionally cheaper)."""
    from modeldiff.studies.config import load_study

    cfg = load_study("null")
    cfg.algorithm_a.seed, cfg.algorithm_b.seed = 2 * seed, 2 * seed + 1
    cfg.seed = seed
    cfg.search.seed = seed
    if models:
        cfg.models = models
        cfg.ensemble_size = min(cfg.ensemble_size, models)
    if trak_models:
        cfg.attribution.models = trak_models
        cfg.search.models = min(cfg.search.models, cfg.models // 2)
    if epochs:
        for spec in (cfg.algorithm_a, cfg.algorithm_b):
            spec.recipe = {**_recipe_dict(cfg, spec), "epochs": epochs}
    return cfg


def _recipe_dict(cfg, spec) -> dict:
    import yaml
    return yaml.safe_load((Path(cfg.folder) / spec.recipe).read_text())


def outcome(summary: dict) -> dict:
    dirs = summary["directions"]
    beyond = {d: [c["rank"] for c in v.get("components", []) if c["beyond_null"]] for d, v in dirs.items()}
    confirmed = {d: [c["transform"] + f" -> {c['target_name']}" for c in v.get("confirmed", [])] for d, v in dirs.items()}
    return {"beyond_null": beyond, "confirmed": confirmed,
            "any_beyond": any(beyond.values()), "any_confirmed": any(confirmed.values()),
            "top_ratio_halves": {d: _tested(v["components"][0]) for d, v in dirs.items() if v.get("components")},
            "top_null_q95": {d: _tested(v["components"][0], "q95") for d, v in dirs.items() if v.get("components")},
            "top_p": {d: v["components"][0]["p_value"] for d, v in dirs.items() if v.get("components")},
            "candidates_tested": {d: v.get("candidates_tested") for d, v in dirs.items()}}


def _tested(c: dict, what: str = "stat"):
    """A component's tested statistic (``what="stat"``) or its null threshold: the classic half-size
    ratio, or the cross-fitted estimator's quarter-size signal."""
    if "signal_quarters" in c:
        return c["signal_quarters"] if what == "stat" else c["null_signal_q95"]
    return c["ratio_halves"] if what == "stat" else c["null_ratio_q95"]


def main(argv=None) -> int:
    from modeldiff.studies.run import run_study

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--models", type=int, default=None, help="models per algorithm (default: the study's 64)")
    p.add_argument("--trak-models", type=int, default=None, help="TRAK models (default: the study's 32)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (cheaper runs)")
    p.add_argument("--estimator", default="classic", choices=("classic", "crossfit"),
                   help="calibration.estimator of the components (default classic)")
    p.add_argument("--no-search", action="store_true", help="components only: skip the transformation search")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(args.first_seed, args.first_seed + args.seeds):
        t = time.time()
        cfg = null_config(s, args.models, args.trak_models, args.epochs)
        cfg.calibration.estimator = args.estimator
        cfg.search.enabled = cfg.search.enabled and not args.no_search
        summary = run_study(cfg, out / f"seed_{s}", args.device)
        row = {"seed": s, **outcome(summary), "seconds": round(time.time() - t)}
        rows.append(row)
        print(f"seed {s}: beyond null {row['beyond_null']}, confirmed {row['confirmed']}, "
              f"top tested statistic {row['top_ratio_halves']} vs q95 {row['top_null_q95']} ({row['seconds']} s)",
              flush=True)
        (out / "null_calibration.json").write_text(json.dumps({"args": vars(args), "runs": rows}, indent=1))
    nb = sum(r["any_beyond"] for r in rows)
    nc = sum(r["any_confirmed"] for r in rows)
    print(f"runs with any component beyond null: {nb}/{len(rows)}; runs confirming any transformation: {nc}/{len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
